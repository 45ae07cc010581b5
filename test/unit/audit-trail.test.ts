// The API the proxies use: recordDecision (OPA event, durable before it resolves), session recordings (asciicast
// v2 and JSON-lines transcripts through the same spool, referenced by session id), replay, tail, the file sink.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import t from "tap";
import { AuditTrail, AuditUnavailableError, sinkName } from "../../src/audit/index.js";
import { spoolRecords } from "../../src/audit/reader.js";
import { parseRecordLine, type SpoolRecord } from "../../src/audit/record.js";
import { loadRecording, playTerminal, recordingFile } from "../../src/audit/replay.js";
import { followSpool, formatRecord, lastRecords } from "../../src/audit/tail.js";
import { verifySpool } from "../../src/audit/verify.js";
import type { Decision, WasmPolicyLike } from "../../src/decision/contract.js";
import { serializeInput } from "../../src/decision/engine.js";
import { ciBotForAlice } from "../../src/demo/samples.js";
import { sampleInput } from "../helpers/bundles.js";

const erasesEmail: WasmPolicyLike = {
  has: () => true,
  evaluate: () => ["/input/identity/email"],
};

function decision(i: number, sessionId = "sess-1"): Decision {
  const input = sampleInput({
    identity: ciBotForAlice,
    session: { id: sessionId, client_addr: "10.1.2.3", approval_id: i === 3 ? "apr-9" : null },
    command: {
      statement: "delete",
      category: "write",
      tables: { read: [], write: ["public.orders"] },
      has_where: false,
    },
  });
  return {
    decision_id: `00000000-0000-4000-8000-${String(i).padStart(12, "0")}`,
    verdict: {
      action: "block",
      reasons: [{ code: "pg.no_where", message: "DELETE without WHERE" }],
      mask: [],
      approval: null,
    },
    revision: "rev-1",
    eval_ns: 1000 + i,
    input_json: serializeInput(input),
    policy: erasesEmail,
  };
}

async function records(dir: string): Promise<SpoolRecord[]> {
  const out: SpoolRecord[] = [];
  for await (const r of spoolRecords(dir)) out.push(r);
  return out;
}

t.test("recordDecision writes the masked OPA event durably and returns its place in the chain", async (t) => {
  const dir = t.testdir();
  const audit = await AuditTrail.open({ dir, labels: { region: "eu" } });
  const receipts = await Promise.all([1, 2, 3].map((i) => audit.recordDecision(decision(i))));
  t.same(
    receipts.map((r) => r.seq),
    [1, 2, 3],
  );
  t.match(receipts[0]?.hash, /^[0-9a-f]{64}$/);
  const [r] = await records(dir);
  const e = JSON.parse(r?.body as string);
  t.equal(e.decision_id, decision(1).decision_id);
  t.same(e.erased, ["/input/identity/email"]);
  t.equal(e.labels.region, "eu");
  t.match(e.labels.id, /^[0-9a-f-]{36}$/);
  t.equal(e.labels.version, JSON.parse(readFileSync("package.json", "utf8")).version);
  t.equal(e.requested_by, "10.1.2.3");
  t.equal(e.session_id, "sess-1");
  const third = JSON.parse(((await records(dir))[2] as SpoolRecord).body);
  t.equal(third.approval_id, "apr-9");
  t.equal(audit.status().spool.last_seq, 3);
  await audit.close();
});

t.test(
  "tail one-liners: time, action, protocol, resource, who (actor chain), command, reasons",
  async (t) => {
    const dir = t.testdir();
    const audit = await AuditTrail.open({ dir });
    await audit.recordDecision(decision(1));
    await audit.close();
    const [r] = await lastRecords(dir, 5);
    t.equal(
      formatRecord(r as SpoolRecord),
      "2026-11-26T08:00:01.123456789Z  BLOCK    postgres    orders-db  alice → ci-bot  DELETE public.orders  [pg.no_where]  #1",
    );
  },
);

t.test("a terminal recording is asciicast v2, in chunks through the spool, replayable", async (t) => {
  const dir = t.testdir();
  const audit = await AuditTrail.open({ dir, recording: { flushMs: 10_000, chunkBytes: 64 } });
  let clock = 1000;
  const rec = audit.openTerminalRecording("sess-7", {
    width: 100,
    height: 30,
    command: "bash",
    env: { TERM: "xterm-256color" },
    now: () => clock,
  });
  const decisionSeq = (await audit.recordDecision(decision(1, "sess-7"))).seq;
  rec.output("$ ");
  clock += 500;
  rec.input("ls\r");
  clock += 100;
  // A multi-byte character split across two reads is decoded whole (the first part waits for the rest).
  const euro = Buffer.from("€ ok\r\n");
  rec.output(euro.subarray(0, 2));
  rec.output(euro.subarray(2));
  clock += 5000;
  rec.resize(120, 40);
  rec.output("bye\r\n");
  clock += 250;
  await rec.close();
  t.ok(rec.ok);
  await audit.close();

  const all = await records(dir);
  const chunks = all.filter((r) => r.kind === "recording");
  t.ok(chunks.length >= 2, `${chunks.length} chunks (chunkBytes forces several)`);
  const bodies = chunks.map((c) => JSON.parse(c.body));
  t.same(
    bodies.map((b) => b.part),
    bodies.map((_, i) => i),
  );
  t.ok(
    bodies.every((b) => b.session_id === "sess-7"),
    "every chunk names its session",
  );
  t.equal(JSON.parse((all.find((r) => r.seq === decisionSeq) as SpoolRecord).body).session_id, "sess-7");

  const loaded = await loadRecording(spoolRecords(dir), "sess-7");
  t.ok(loaded?.complete);
  t.equal(loaded?.duration, 5.85);
  const cast = recordingFile(loaded as NonNullable<typeof loaded>)
    .trimEnd()
    .split("\n");
  const header = JSON.parse(cast[0] as string);
  t.match(header, { version: 2, width: 100, height: 30, command: "bash", env: { TERM: "xterm-256color" } });
  t.type(header.timestamp, "number");
  t.same(
    cast.slice(1).map((l) => JSON.parse(l)),
    [
      [0, "o", "$ "],
      [0.5, "i", "ls\r"],
      [0.6, "o", "€ ok\r\n"],
      [5.6, "r", "120x40"],
      [5.6, "o", "bye\r\n"],
    ],
  );

  // Playback: output only, with pauses capped at 2 s and divided by the speed.
  const out = new PassThrough();
  let shown = "";
  out.on("data", (c) => {
    shown += c;
  });
  const sleeps: number[] = [];
  await playTerminal(loaded as NonNullable<typeof loaded>, out, {
    speed: 2,
    sleep: async (ms) => {
      sleeps.push(Math.round(ms));
    },
  });
  t.equal(shown, "$ € ok\r\nbye\r\n");
  t.same(sleeps, [300, 1000], "0.6 s / 2, then 5 s capped to 2 s / 2");
});

t.test("a transcript is JSON lines: header, then entries with their time", async (t) => {
  const dir = t.testdir();
  const audit = await AuditTrail.open({ dir });
  let clock = 0;
  const rec = audit.openTranscript("pg-sess", {
    meta: { protocol: "postgres", resource: "orders-db" },
    now: () => clock,
  });
  await rec.flush(); // the header is durable before the first statement
  rec.entry({ type: "statement", decision_id: "d1", action: "allow", statement: "select" });
  clock += 1234.5;
  rec.entry({ type: "statement", decision_id: "d2", action: "block", statement: "delete" });
  await rec.close();
  await audit.close();
  const loaded = await loadRecording(spoolRecords(dir), "pg-sess");
  const lines = recordingFile(loaded as NonNullable<typeof loaded>)
    .trimEnd()
    .split("\n")
    .map((l) => JSON.parse(l));
  t.match(lines[0], { version: 1, session_id: "pg-sess", protocol: "postgres", resource: "orders-db" });
  t.same(lines.slice(1), [
    { t: 0, type: "statement", decision_id: "d1", action: "allow", statement: "select" },
    { t: 1.2345, type: "statement", decision_id: "d2", action: "block", statement: "delete" },
  ]);
  t.equal(await loadRecording(spoolRecords(dir), "other"), null);
});

t.test("a recording whose chunk is refused keeps its events, reports it, and catches up", async (t) => {
  const dir = t.testdir();
  const audit = await AuditTrail.open({ dir, maxBytes: 64 * 1024, recording: { flushMs: 10_000 } });
  const errors: AuditUnavailableError[] = [];
  const rec = audit.openTerminalRecording("s-full", {
    width: 80,
    height: 24,
    onError: (e) => errors.push(e),
  });
  // Fill the spool with other records.
  for (;;) {
    try {
      await audit.record("note", { pad: "x".repeat(10) });
    } catch {
      break;
    }
  }
  rec.output("important output\r\n");
  await t.rejects(rec.flush(), AuditUnavailableError);
  t.equal(rec.ok, false);
  t.match(rec.error?.message, /audit spool full/);
  t.equal(errors.length, 1, "onError once");
  t.equal(rec.output("more\r\n"), false, "output reports the failure");
  // Space returns (a sink has shipped the spool; released here by hand): the recording catches up, no holes.
  await audit.spool.release(audit.spool.lastSeq);
  await rec.close();
  t.equal(rec.ok, true);
  await audit.close();
  const loaded = await loadRecording(spoolRecords(dir), "s-full");
  t.same(
    loaded?.events.map((e) => (e as unknown[])[2]),
    ["important output\r\n", "more\r\n"],
  );
  t.same(loaded?.missing_parts, []);
  t.ok(loaded?.complete);
});

t.test("the file sink writes JSON lines (records or events) and its cursor survives a restart", async (t) => {
  const dir = t.testdir();
  const file = join(dir, "out.jsonl");
  const stdout = new PassThrough();
  let printed = "";
  stdout.on("data", (c) => {
    printed += c;
  });
  const sinks = [
    { type: "file" as const, path: file },
    { type: "file" as const, path: "-", format: "event" as const },
  ];
  let audit = await AuditTrail.open({ dir: join(dir, "spool"), sinks }, { stdout });
  for (let i = 1; i <= 5; i++) await audit.recordDecision(decision(i));
  await audit.record("note", { hello: "world" });
  t.ok(await audit.waitForSinks(5000));
  await audit.close();
  audit = await AuditTrail.open({ dir: join(dir, "spool"), sinks }, { stdout });
  await audit.recordDecision(decision(6));
  t.ok(await audit.waitForSinks(5000));
  await audit.close();

  const lines = readFileSync(file, "utf8").trimEnd().split("\n");
  t.equal(lines.length, 7, "every record once: nothing re-sent after the restart");
  t.same(
    lines.map((l) => (parseRecordLine(l) as SpoolRecord).seq),
    [1, 2, 3, 4, 5, 6, 7],
  );
  const events = printed
    .trimEnd()
    .split("\n")
    .map((l) => JSON.parse(l));
  t.equal(events.length, 6, "format event: decision events only");
  t.equal(events[5].decision_id, decision(6).decision_id);
  t.match(sinkName(sinks[0] as (typeof sinks)[0]), /^file-[0-9a-f]{12}$/);
  t.throws(() => sinkName({ type: "file", path: "-", name: "../x" }), /invalid audit sink name/);
  const bad = join(dir, "bad");
  await t.rejects(
    AuditTrail.open({ dir: bad, sinks: [{ type: "http", url: "collector:9000" }] }),
    /not an http\(s\) URL/,
  );
  await t.rejects(
    AuditTrail.open({ dir: bad, sinks: [{ type: "postgres", url: "postgres://x", table: "a;drop" }] }),
    /invalid audit table name/,
  );
  await t.rejects(
    AuditTrail.open({
      dir: bad,
      sinks: [
        { type: "file", path: "-" },
        { type: "file", path: "-" },
      ],
    }),
    /two audit sinks are named/,
  );
  t.ok((await verifySpool(join(dir, "spool"))).ok);
});

t.test("follow: new records appear as they are written, across segment rotations", async (t) => {
  const dir = t.testdir();
  const audit = await AuditTrail.open({ dir, segmentBytes: 16 * 1024, maxBytes: 1024 * 1024 });
  await audit.recordDecision(decision(1));
  const controller = new AbortController();
  const seen: SpoolRecord[] = [];
  const last = decision(40).decision_id;
  const following = (async () => {
    for await (const r of followSpool(dir, 1, { pollMs: 20, signal: controller.signal })) {
      seen.push(r);
      if (r.body.includes(last)) controller.abort();
    }
  })();
  for (let i = 2; i <= 40; i++) await audit.recordDecision(decision(i));
  await following;
  await audit.close();
  const end = seen[seen.length - 1]?.seq ?? 0;
  t.ok(end >= 40);
  t.same(
    seen.map((r) => r.seq),
    Array.from({ length: end - 1 }, (_, i) => i + 2),
    "every record after the start, in order",
  );
  t.ok(
    seen.some((r) => r.kind === "seal"),
    "including the seals of rotated segments",
  );
});

t.test(
  "setSinks (a configuration reload): sinks added ship from the start, sinks removed stop",
  async (t) => {
    const dir = t.testdir();
    const a = join(dir, "a.jsonl");
    const b = join(dir, "b.jsonl");
    const audit = await AuditTrail.open({ dir: join(dir, "spool"), sinks: [{ type: "file", path: a }] });
    for (let i = 1; i <= 3; i++) await audit.recordDecision(decision(i));
    t.ok(await audit.waitForSinks(5000));

    await t.rejects(
      audit.setSinks([{ type: "http", url: "collector:9000" }]),
      /is not an http\(s\) URL/,
      "a malformed sink is refused",
    );
    t.same(audit.sinkNames, [sinkName({ type: "file", path: a })], "and nothing changed");

    const added = await audit.setSinks([
      { type: "file", path: a },
      { type: "file", path: b },
    ]);
    t.same(added, { added: [sinkName({ type: "file", path: b })], removed: [] });
    await audit.recordDecision(decision(4));
    t.ok(await audit.waitForSinks(5000));
    const seqs = (file: string) =>
      readFileSync(file, "utf8")
        .trimEnd()
        .split("\n")
        .map((l) => (parseRecordLine(l) as SpoolRecord).seq);
    t.same(seqs(b), [1, 2, 3, 4], "the new sink got what the spool held, then the new record");
    t.same(seqs(a), [1, 2, 3, 4], "the sink that stayed went on where it was");

    const removed = await audit.setSinks([{ type: "file", path: b }]);
    t.same(removed, { added: [], removed: [sinkName({ type: "file", path: a })] });
    await audit.recordDecision(decision(5));
    t.ok(await audit.waitForSinks(5000));
    t.same(seqs(a), [1, 2, 3, 4], "the removed sink gets nothing more");
    t.same(seqs(b), [1, 2, 3, 4, 5]);
    t.equal(audit.status().sinks.length, 1);
    await audit.close();
  },
);
