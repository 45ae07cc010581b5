// `pamgate audit verify`, `pamgate audit tail [--follow]` and `pamgate replay` as a user runs them: real
// processes against a spool written by the audit trail.
import { spawn, spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import t from "tap";
import { AuditTrail } from "../../src/audit/index.js";
import { listSegmentFiles } from "../../src/audit/spool-layout.js";
import type { Decision } from "../../src/decision/contract.js";
import { serializeInput } from "../../src/decision/engine.js";
import { ciBotForAlice } from "../../src/demo/samples.js";
import { packagePath } from "../../src/util/tools.js";
import { sampleInput } from "../helpers/bundles.js";

const BIN = packagePath("bin", "pamgate.js");

function pamgate(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    cwd: packagePath(),
    encoding: "utf8",
    env: { ...process.env, ...env },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function decision(i: number, session = "cli-sess"): Decision {
  return {
    decision_id: `30000000-0000-4000-8000-${String(i).padStart(12, "0")}`,
    verdict: {
      action: i % 2 ? "allow" : "block",
      reasons: [{ code: i % 2 ? "k8s.read" : "k8s.exec_blocked", message: "m" }],
      mask: [],
      approval: null,
    },
    revision: "rev-cli",
    eval_ns: 1,
    input_json: serializeInput(
      sampleInput({
        protocol: "kubernetes",
        resource: { name: "prod-cluster", kind: "kubernetes", labels: {} },
        identity: ciBotForAlice,
        session: { id: session },
        command: {
          verb: "create",
          resource: "pods",
          subresource: "exec",
          namespace: "shop",
          name: `web-${i}`,
        },
      }),
    ),
    policy: { has: () => true, evaluate: () => ["/input/identity/email"] },
  };
}

t.test("audit CLI", async (t) => {
  const dir = t.testdir();
  const spool = join(dir, "spool");
  const audit = await AuditTrail.open({ dir: spool });
  for (let i = 1; i <= 6; i++) await audit.recordDecision(decision(i));
  const term = audit.openTerminalRecording("term-1", { width: 80, height: 24, now: fakeClock() });
  term.output("$ ");
  term.input("uptime\r");
  term.output("uptime\r\n 10:00 up 3 days\r\n$ ");
  await term.close();
  const tr = audit.openTranscript("pg-1");
  tr.entry({
    event: "statement",
    decision_id: "d-1",
    action: "allow",
    statement: "select",
    text: "SELECT id, ssn FROM users WHERE id < $1",
  });
  tr.entry({
    event: "result",
    decision_id: "d-1",
    tag: "SELECT 3",
    rows: 3,
    columns: ["id", "ssn"],
    sample: [
      ["1", "*******6789"],
      ["2", null],
    ],
    truncated: true,
    duration_ms: 1.25,
  });
  tr.entry({
    event: "statement",
    decision_id: "d-2",
    action: "block",
    statement: "drop",
    text: "DROP TABLE users",
    reasons: ["pg.prod_destructive_needs_approval"],
  });
  await tr.close();
  await audit.close();

  await t.test("verify: ok, then the first bad record named, exit 1", async (t) => {
    const ok = pamgate(["audit", "verify", "--spool", spool]);
    t.equal(ok.code, 0, ok.stderr);
    t.match(ok.stdout, /^ok: .* 8 records \(seq 1–8\), chain intact, last hash [0-9a-f]{64}\n$/);
    const json = JSON.parse(pamgate(["audit", "verify", "--json"], { PAMGATE_AUDIT_DIR: spool }).stdout);
    t.match(json, { ok: true, records: 8, problem: null });

    const copy = join(dir, "tampered");
    const cp = spawnSync("cp", ["-r", spool, copy]);
    t.equal(cp.status, 0);
    const seg = (await listSegmentFiles(copy))[0]?.path as string;
    writeFileSync(seg, readFileSync(seg, "utf8").replace('"action":"block"', '"action":"allow"'));
    const bad = pamgate(["audit", "verify", "--spool", copy]);
    t.equal(bad.code, 1);
    t.match(bad.stdout, /^FAILED: .* first bad record seq 2 at seg-0+1\.jsonl line 2: seq 2 was modified/);

    const none = pamgate(["audit", "verify"], { PAMGATE_AUDIT_DIR: "" });
    t.equal(none.code, 2);
    t.match(none.stderr, /--spool DIR is required/);
  });

  await t.test("tail: one-liners, -n, --kind, --json", async (t) => {
    const r = pamgate(["audit", "tail", "--spool", spool, "-n", "3", "--kind", "decision"]);
    t.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trimEnd().split("\n");
    t.equal(lines.length, 3);
    t.match(
      lines[2],
      /^2026-11-26T08:00:01\.123456789Z {2}BLOCK {4}kubernetes {2}prod-cluster {2}alice → ci-bot {2}create pods\/exec shop\/web-6 {2}\[k8s\.exec_blocked\] {2}#6$/,
    );
    const all = pamgate(["audit", "tail", "--spool", spool]).stdout.trimEnd().split("\n");
    t.equal(all.length, 8);
    t.match(all[6], /REC .*session term-1 part 0: 3 events, final/);
    const raw = pamgate(["audit", "tail", "--spool", spool, "-n", "1", "--json"]).stdout;
    t.match(JSON.parse(raw), { seq: 8, kind: "recording" });
  });

  await t.test("tail --follow prints new records as they are written", async (t) => {
    const child = spawn(process.execPath, [BIN, "audit", "tail", "--spool", spool, "-n", "1", "--follow"], {
      cwd: packagePath(),
    });
    let out = "";
    child.stdout.on("data", (c) => {
      out += c;
    });
    const lines = () => out.trimEnd().split("\n").filter(Boolean);
    const waitFor = async (n: number) => {
      for (let i = 0; i < 300 && lines().length < n; i++) await new Promise((r) => setTimeout(r, 50));
    };
    await waitFor(1); // the newest record: the command is running and at the end of the spool
    const more = await AuditTrail.open({ dir: spool });
    await more.recordDecision(decision(7));
    await more.recordDecision(decision(8));
    await more.close();
    await waitFor(3);
    child.kill("SIGINT");
    await new Promise((r) => child.once("exit", r));
    t.equal(lines().length, 3, out);
    t.match(lines()[0], /#8$/);
    t.match(lines()[1], /ALLOW .*shop\/web-7 .*#9$/);
    t.match(lines()[2], /BLOCK .*shop\/web-8 .*#10$/);
  });

  await t.test("replay: a terminal session with its timing, as .cast, and a transcript", async (t) => {
    const started = Date.now();
    const play = pamgate(["replay", "term-1", "--spool", spool, "--speed", "4"]);
    t.equal(play.code, 0, play.stderr);
    t.equal(play.stdout, "$ uptime\r\n 10:00 up 3 days\r\n$ ", "the output, without the typed input");
    t.ok(Date.now() - started >= 500, "paused: 2 s of recorded time at 4×");

    const cast = pamgate(["replay", "term-1", "--spool", spool, "--cast"]);
    const lines = cast.stdout
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l));
    t.match(lines[0], { version: 2, width: 80, height: 24 });
    t.same(lines.slice(1), [
      [0, "o", "$ "],
      [1.5, "i", "uptime\r"],
      [2, "o", "uptime\r\n 10:00 up 3 days\r\n$ "],
    ]);

    const transcript = pamgate(["replay", "pg-1", "--spool", spool, "--json"]);
    const tl = transcript.stdout
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l));
    t.match(tl[0], { version: 1, session_id: "pg-1" });
    t.match(tl[1], { event: "statement", decision_id: "d-1", action: "allow" });

    const readable = pamgate(["replay", "pg-1", "--spool", spool]);
    t.equal(readable.code, 0, readable.stderr);
    t.equal(
      readable.stdout,
      [
        "-- session pg-1",
        "",
        "=> SELECT id, ssn FROM users WHERE id < $1;",
        " id |     ssn",
        "----+-------------",
        " 1  | *******6789",
        " 2  |",
        "(3 rows) (first 2 shown)",
        "Time: 1.250 ms",
        "",
        "=> DROP TABLE users;",
        "-- pamgate: block (pg.prod_destructive_needs_approval)",
        "",
      ].join("\n"),
      "a psql-like transcript",
    );

    const missing = pamgate(["replay", "nope", "--spool", spool]);
    t.equal(missing.code, 1);
    t.match(missing.stderr, /no recording of session nope/);
    t.equal(pamgate(["replay", "term-1", "--spool", spool, "--speed", "0"]).code, 2);
  });
});

/** A clock for the recording: 0 s, then +1.5 s, then +0.5 s (so replay pauses are known). */
function fakeClock(): () => number {
  const times = [0, 0, 1500, 2000, 2000, 2000, 2000, 2000];
  let i = 0;
  return () => times[Math.min(i++, times.length - 1)] as number;
}
