// A writer process killed with SIGKILL: at restart the spool cuts off a torn last record, the chain verifies,
// and every record whose record() had resolved (acknowledged to the writer) is there with the same hash.
import { spawn } from "node:child_process";
import { readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import t, { type Test } from "tap";
import { spoolRecords } from "../../src/audit/reader.js";
import { Spool } from "../../src/audit/spool.js";
import { listSegmentFiles } from "../../src/audit/spool-layout.js";
import { verifySpool } from "../../src/audit/verify.js";
import { packagePath } from "../../src/util/tools.js";

/** The writer: concurrent record() calls; each resolved one is acknowledged on stdout ("seq hash"). */
const WRITER = `
import { writeSync } from "node:fs";
import { nodeIo } from ${JSON.stringify(packagePath("src/audit/io.ts"))};
import { Spool } from ${JSON.stringify(packagePath("src/audit/spool.ts"))};
const [dir, mode] = process.argv.slice(2);
let batches = 0;
const io = mode === "torn"
  ? {
      ...nodeIo,
      async writeAll(fd, buf, position) {
        // The 20th batch: half of it reaches the file, then the process dies mid-write.
        if (++batches === 20) {
          await nodeIo.writeAll(fd, buf.subarray(0, Math.floor(buf.length / 2)), position);
          process.kill(process.pid, "SIGKILL");
          await new Promise(() => {});
        }
        return nodeIo.writeAll(fd, buf, position);
      },
    }
  : nodeIo;
const spool = await Spool.open({ dir, segmentBytes: 256 * 1024, maxBytes: 256 * 1024 * 1024, io });
if (!spool.status().available) throw new Error(spool.status().reason);
writeSync(1, "ready\\n");
let i = 0;
async function writer() {
  for (;;) {
    const n = i++;
    const body = JSON.stringify({ n, pad: "x".repeat(500 + ((n * 7919) % 20000)) });
    // "written": durability level write — acknowledged once in the OS, before its fdatasync.
    const r = mode === "written" ? await spool.recordWritten("decision", body) : await spool.record("decision", body);
    writeSync(1, r.seq + " " + r.hash + "\\n");
  }
}
for (let w = 0; w < 32; w++) void writer();
`;

interface Run {
  acks: Map<number, string>;
  signal: NodeJS.Signals | null;
}

async function runWriter(
  dir: string,
  script: string,
  mode: "busy" | "torn" | "written",
  killAfterAcks: number,
): Promise<Run> {
  const child = spawn(process.execPath, ["--import", "tsx", script, dir, mode], {
    cwd: packagePath(),
    stdio: ["ignore", "pipe", "pipe"],
  });
  const acks = new Map<number, string>();
  let buffered = "";
  let stderr = "";
  child.stderr.on("data", (c) => {
    stderr += c;
  });
  const exited = new Promise<NodeJS.Signals | null>((resolve) =>
    child.once("exit", (_code, sig) => resolve(sig)),
  );
  child.stdout.on("data", (c: Buffer) => {
    buffered += c.toString();
    const lines = buffered.split("\n");
    buffered = lines.pop() ?? "";
    for (const l of lines) {
      const [seq, hash] = l.split(" ");
      if (hash) acks.set(Number(seq), hash);
    }
    if (acks.size >= killAfterAcks && child.exitCode === null && !child.killed) child.kill("SIGKILL");
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
  const signal = await exited;
  clearTimeout(timer);
  if (signal !== "SIGKILL") throw new Error(`writer exited on its own (${signal}): ${stderr}`);
  return { acks, signal };
}

async function checkAfterCrash(t: Test, dir: string, acks: Map<number, string>): Promise<void> {
  const spool = await Spool.open({ dir, segmentBytes: 256 * 1024, maxBytes: 256 * 1024 * 1024 });
  t.equal(spool.status().available, true, "the spool opens after the crash");
  const maxAck = Math.max(...acks.keys());
  t.ok(spool.lastSeq >= maxAck, `last seq ${spool.lastSeq} ≥ last acknowledged ${maxAck}`);
  // It keeps going: the chain continues from the last good record.
  const r = await spool.record("decision", '{"after":"crash"}');
  t.equal(r.seq, spool.lastSeq);
  await spool.close();

  const v = await verifySpool(dir);
  t.ok(v.ok, v.problem ? `${v.problem.where}: ${v.problem.problem}` : "the chain verifies");
  const stored = new Map<number, string>();
  for await (const rec of spoolRecords(dir)) stored.set(rec.seq, rec.hash);
  let missing = 0;
  for (const [seq, hash] of acks) if (stored.get(seq) !== hash) missing++;
  t.equal(missing, 0, `all ${acks.size} acknowledged records are there, unchanged`);
}

t.test("SIGKILL at a random moment under load", async (t) => {
  const dir = t.testdir();
  const script = join(dir, "writer.mts");
  writeFileSync(script, WRITER);
  const spoolDir = join(dir, "spool");
  const { acks } = await runWriter(spoolDir, script, "busy", 3000);
  t.ok(acks.size >= 3000, `${acks.size} records acknowledged before the kill`);
  t.ok((await listSegmentFiles(spoolDir)).length > 3, "several segments were written");
  await checkAfterCrash(t, spoolDir, acks);
});

t.test(
  "durability write: SIGKILL under load loses none of the records acknowledged before their fdatasync",
  async (t) => {
    // What `write` promises: a record acknowledged once written (its command forwarded) survives the gateway
    // process dying, because the kernel has it. (A machine crash is another matter: docs/audit.md, Durability.)
    const dir = t.testdir();
    const script = join(dir, "writer.mts");
    writeFileSync(script, WRITER);
    const spoolDir = join(dir, "spool");
    const { acks } = await runWriter(spoolDir, script, "written", 3000);
    t.ok(acks.size >= 3000, `${acks.size} records acknowledged at write before the kill`);
    await checkAfterCrash(t, spoolDir, acks);
  },
);

t.test("SIGKILL in the middle of a write: the torn record is cut off and kept aside", async (t) => {
  const dir = t.testdir();
  const script = join(dir, "writer.mts");
  writeFileSync(script, WRITER);
  const spoolDir = join(dir, "spool");
  const { acks } = await runWriter(spoolDir, script, "torn", Number.POSITIVE_INFINITY);
  const files = await listSegmentFiles(spoolDir);
  const last = files[files.length - 1] as (typeof files)[number];
  const tornSize = statSync(last.path).size;
  await checkAfterCrash(t, spoolDir, acks);
  const torn = readdirSync(join(spoolDir, "torn"));
  t.equal(torn.length, 1, "the torn bytes are kept under torn/");
  t.ok(statSync(join(spoolDir, "torn", torn[0] as string)).size > 0);
  t.ok(statSync(last.path).size - tornSize < 1000, "the segment was cut back (then one record appended)");
});
