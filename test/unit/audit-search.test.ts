// The web console's data layer over the spool: decision search (every filter, paging by cursor, several spools
// merged, segment rotation, a write in progress, records of other kinds) and session views (a transcript and its
// terminals, a missing chunk, session ids that are prefixes of others, the .cast `pamgate replay --cast` prints).
import { spawnSync } from "node:child_process";
import { appendFileSync, mkdirSync, utimesSync } from "node:fs";
import { join } from "node:path";
import t, { type Test } from "tap";
import { AuditTrail } from "../../src/audit/index.js";
import { fileLines, spoolRecords } from "../../src/audit/reader.js";
import { parseRecordLine, type SpoolRecord } from "../../src/audit/record.js";
import { loadRecording } from "../../src/audit/replay.js";
import {
  commandOf,
  decisionRow,
  findSpoolDirs,
  InvalidSearchError,
  loadCast,
  loadSessionView,
  SpoolDecisionSearch,
} from "../../src/audit/search.js";
import { listSegmentFiles } from "../../src/audit/spool-layout.js";
import { SessionOpener } from "../../src/gateway/sessions.js";
import { packagePath } from "../../src/util/tools.js";
import {
  allPages,
  dateOf,
  expected,
  expectedRow,
  fixtures,
  HOSTILE,
  manyFixtures,
  type Placed,
  queries,
  recordFixtures,
  ts,
} from "../helpers/audit-search.js";

async function spoolWith(t: Test, segmentBytes?: number) {
  const dir = join(t.testdir(), "spool");
  const audit = await AuditTrail.open({
    dir,
    ...(segmentBytes ? { segmentBytes, maxBytes: 64 * segmentBytes } : {}),
    recording: { flushMs: 10_000, chunkBytes: 256 },
  });
  return { dir, audit };
}

t.test("decisionRow: how a record's body maps to a row", async (t) => {
  const { dir, audit } = await spoolWith(t);
  const placed = await recordFixtures(audit, fixtures(), false);
  await audit.close();
  const rows: unknown[] = [];
  for await (const r of spoolRecords(dir)) {
    if (r.kind === "decision") rows.push(decisionRow(JSON.parse(r.body), { spool_id: "S", seq: r.seq }));
  }
  t.same(
    rows,
    placed.map((p) => expectedRow({ ...p, spool_id: "S" })),
  );

  const byId = (n: number) => rows[n] as ReturnType<typeof decisionRow>;
  t.match(
    byId(2),
    { action: "block", verdict: "mask", reasons: [{ code: "pg.mask_unsafe" }] },
    "enforced vs verdict",
  );
  t.match(byId(3), { action: "approve", approval_id: "apr-1" }, "the held request");
  t.match(byId(4), { action: "allow", verdict: "approve", approval_id: "apr-1" }, "the grant it ran under");
  t.same(byId(5)?.identity, { sub: "bob", chain: ["bob", "planner-agent", "ci-bot"] });
  t.same(byId(7)?.identity, { sub: "carol", chain: ["carol"] }, "no actors: the subject alone");
  t.equal(byId(14)?.command, "", "an erased input has no command");
  t.notOk(Object.hasOwn(byId(14) ?? {}, "command_kind"), "nor a kind");

  // Odd and old records never throw; what is not a decision event is not a row.
  const where = { spool_id: "S", seq: 1 };
  for (const odd of [null, 1, "x", [], {}, { decision_id: 5 }, { decision_id: "" }])
    t.equal(decisionRow(odd, where), null, `not a decision: ${JSON.stringify(odd)}`);
  t.same(decisionRow({ decision_id: "d" }, where), {
    decision_id: "d",
    timestamp: "",
    protocol: "",
    resource: "",
    action: "",
    identity: { sub: "", chain: [] },
    command: "",
    reasons: [],
    session_id: null,
    approval_id: null,
    revision: null,
    where,
  });
  const weird = {
    decision_id: "d",
    protocol: "ssh",
    identity: { sub: 7, actors: "no" },
    resource: [],
    input: { command: { request: "constructor", line: 3 } },
    result: { action: "allow", reasons: "none" },
    reason_codes: ["a", 1, null],
    bundles: { x: null, y: { revision: "r" } },
  };
  t.match(decisionRow(weird, where), {
    identity: { sub: "", chain: [] },
    command: "constructor",
    command_kind: "constructor",
    reasons: [{ code: "a" }],
    revision: "r",
  });
  t.same(commandOf({ protocol: "ssh", input: { command: { request: "exec" } } }), { text: "", kind: "exec" });
  t.same(commandOf({ protocol: "mystery", input: { command: { verb: "get" } } }), { text: "" });
});

t.test("spool search: every filter alone and combined, newest first, over every page size", async (t) => {
  const { dir, audit } = await spoolWith(t);
  const placed = await recordFixtures(audit, fixtures());
  await audit.close();
  const search = new SpoolDecisionSearch(dir);
  for (const q of queries()) {
    const want = expected(placed, q);
    const one = await search.searchDecisions({ ...q, limit: 500 });
    t.same(one.decisions, want, `${JSON.stringify(q)}: ${want.length} rows`);
    t.equal(one.next_cursor, null, "one page holds them all");
    t.equal(one.source, "spool");
    for (const limit of [1, 2, 3, 7]) {
      const all = await allPages(search, { ...q, limit });
      t.same(all.rows, want, `${JSON.stringify(q)} in pages of ${limit}`);
      t.ok(
        all.sizes.every((n) => n <= limit),
        "no page is over its limit",
      );
    }
  }
  t.same(
    (await search.searchDecisions({ identity: "planner-agent", limit: 500 })).decisions.map(
      (r) => r.decision_id,
    ),
    placed
      .filter((p) => p.fixture.identity.sub === "bob")
      .reverse()
      .map((p) => p.fixture.id),
    "the middle link of a delegation chain finds its decisions",
  );
  const range = await search.searchDecisions({ since: dateOf(4), until: dateOf(8), limit: 500 });
  t.same(
    range.decisions.map((r) => r.timestamp),
    [ts(7), ts(6), ts(5), ts(4), ts(4)],
    "since is inclusive (an event at exactly since), until exclusive (one 456 µs after until is out too)",
  );
});

t.test("paging: each record exactly once, newest first, with a bound on lines per page", async (t) => {
  const { dir, audit } = await spoolWith(t, 16 * 1024);
  const placed = await recordFixtures(audit, manyFixtures(300));
  await audit.close();
  const segments = await listSegmentFiles(dir);
  t.ok(segments.length > 5, `the spool rotated through ${segments.length} segments`);

  for (const chunkBytes of [64, 1000, 1024 * 1024]) {
    const search = new SpoolDecisionSearch(dir, { chunkBytes });
    const all = await allPages(search, { limit: 37 });
    t.same(all.rows, expected(placed, {}), `every record once, newest first (reads of ${chunkBytes} bytes)`);
    t.equal(all.pages, 9);
  }
  const exact = await allPages(new SpoolDecisionSearch(dir), { limit: 30 });
  t.same(exact.sizes, Array(10).fill(30), "a page that takes the last rows says there is no more");
  // The scan bound: a selective filter over a small bound gives short (even empty) pages, and a cursor each time.
  const bounded = new SpoolDecisionSearch(dir, { maxScan: 25 });
  const q = { resource: "analytics-db", action: "block", limit: 4 };
  const all = await allPages(bounded, q);
  t.same(all.rows, expected(placed, q));
  t.ok(
    all.scanned.every((n) => n <= 25),
    "no page looks at more than maxScan lines",
  );
  t.ok(all.sizes.includes(0), "pages that found nothing within the bound still continue");
  t.ok(all.pages > 10);

  const first = await bounded.searchDecisions({ limit: 2 });
  t.ok(first.scanned < 10, `the newest records cost only their own lines (${first.scanned} looked at)`);
});

t.test("since: segments last written before it are not read", async (t) => {
  const { dir, audit } = await spoolWith(t, 16 * 1024);
  const list = manyFixtures(300, 1, 60); // a minute apart: five hours
  const placed = await recordFixtures(audit, list, false);
  await audit.close();
  // Each segment's mtime is when its last record was written: after that record's event.
  let lines = 0;
  for (const seg of await listSegmentFiles(dir)) {
    let last = 0;
    for await (const l of fileLines(seg.path, seg.name)) {
      lines++;
      const body = JSON.parse((parseRecordLine(l.text) as SpoolRecord).body) as { timestamp?: string };
      if (body.timestamp) last = Date.parse(body.timestamp);
    }
    utimesSync(seg.path, new Date(last + 1000), new Date(last + 1000));
  }
  const since = dateOf(250, 60);
  const search = new SpoolDecisionSearch(dir);
  const all = await allPages(search, { since, limit: 500 });
  t.same(all.rows, expected(placed, { since }));
  t.equal(all.rows.length, 51);
  t.ok((all.scanned[0] as number) < lines / 2, `${all.scanned[0]} of ${lines} lines looked at`);
  t.same((await allPages(search, { since, limit: 7 })).rows, expected(placed, { since }), "in pages too");
  t.same(
    (await allPages(new SpoolDecisionSearch(dir), { limit: 500 })).rows,
    expected(placed, {}),
    "without since, everything",
  );
});

t.test("several spools (workers) merged by event time", async (t) => {
  const root = t.testdir();
  const trails = await Promise.all(
    [0, 1, 2].map((i) => AuditTrail.open({ dir: join(root, `worker-${i}`), segmentBytes: 16 * 1024 })),
  );
  const list = manyFixtures(90);
  const placed: Placed[] = [];
  // Worker i gets every third decision: their times interleave.
  for (let w = 0; w < 3; w++) {
    placed.push(
      ...(await recordFixtures(
        trails[w] as AuditTrail,
        list.filter((_, i) => i % 3 === w),
      )),
    );
  }
  await Promise.all(trails.map((a) => a.close()));
  mkdirSync(join(root, "worker-x")); // not a worker directory
  mkdirSync(join(root, "worker-3")); // a worker that has not started yet: no spool

  const dirs = await findSpoolDirs(root);
  t.same(
    dirs,
    [0, 1, 2].map((i) => join(root, `worker-${i}`)),
  );
  t.same(await findSpoolDirs(join(root, "worker-1")), [join(root, "worker-1")], "a spool directory itself");
  const search = new SpoolDecisionSearch([...dirs, join(root, "worker-3"), dirs[0] as string]);
  for (const q of [{}, { identity: "planner-agent" }, { action: "block", q: "T1" }]) {
    for (const limit of [1, 5, 500]) {
      const all = await allPages(search, { ...q, limit });
      t.same(all.rows, expected(placed, q), `${JSON.stringify(q)} in pages of ${limit}`);
    }
  }
  const spoolIds = new Set((await allPages(search, { limit: 500 })).rows.map((r) => r.where.spool_id));
  t.equal(spoolIds.size, 3);
});

t.test("a write in progress, damaged lines and other kinds of records are skipped", async (t) => {
  const { dir, audit } = await spoolWith(t);
  const placed = await recordFixtures(audit, fixtures());
  await audit.close();
  const segs = await listSegmentFiles(dir);
  const active = (segs[segs.length - 1] as { path: string }).path;
  const search = new SpoolDecisionSearch(dir, { chunkBytes: 100 });
  const want = expected(placed, {});

  // A complete line that is not a record, then half of a decision record: the write in progress.
  appendFileSync(active, "garbage that is not a record\n");
  appendFileSync(
    active,
    `{"seq":999,"kind":"decision","prev":"${"0".repeat(64)}","body":{"decision_id":"torn"`,
  );
  const page = await search.searchDecisions({ limit: 500 });
  t.same(page.decisions, want, "the rows are those of the whole records");
  t.ok(page.scanned > want.length, "other kinds were looked at too");
  const kinds = new Set<string>();
  for await (const r of spoolRecords(dir)) kinds.add(r.kind);
  t.ok(kinds.has("session") && kinds.has("recording") && kinds.has("approval"), "there were others to skip");

  // A decision record with a body that is not JSON, and one that is not an object: skipped as well.
  appendFileSync(active, "\n");
  appendFileSync(
    active,
    `{"seq":1000,"kind":"decision","prev":"${"0".repeat(64)}","body":{nope},"hash":"${"0".repeat(64)}"}\n`,
  );
  appendFileSync(
    active,
    `{"seq":1001,"kind":"decision","prev":"${"0".repeat(64)}","body":[1],"hash":"${"0".repeat(64)}"}\n`,
  );
  t.same((await search.searchDecisions({ limit: 500 })).decisions, want);
  t.same((await allPages(search, { limit: 3 })).rows, want);
});

t.test(
  "queries and cursors that cannot be used are refused; hostile filter values match nothing",
  async (t) => {
    const { dir, audit } = await spoolWith(t);
    await recordFixtures(audit, fixtures());
    await audit.close();
    const search = new SpoolDecisionSearch(dir);
    for (const limit of [0, 501, 1.5, Number.NaN])
      await t.rejects(search.searchDecisions({ limit }), InvalidSearchError, `limit ${limit}`);
    await t.rejects(search.searchDecisions({ limit: 5, since: new Date("nope") }), InvalidSearchError);
    await t.rejects(search.searchDecisions({ limit: 5, q: "x".repeat(5000) }), InvalidSearchError);
    for (const before of [
      "",
      "not a cursor!",
      Buffer.from('{"v":1,"b":"spool","f":"x","p":{}}').toString("base64url"),
      "'; DROP TABLE x; --",
    ])
      await t.rejects(search.searchDecisions({ limit: 5, before }), InvalidSearchError, `cursor ${before}`);
    const page = await search.searchDecisions({ limit: 2, identity: "alice" });
    await t.rejects(
      search.searchDecisions({ limit: 2, identity: "bob", before: page.next_cursor as string }),
      InvalidSearchError,
      "a cursor is for the filters it was made with",
    );
    const forged = JSON.parse(Buffer.from(page.next_cursor as string, "base64url").toString()) as {
      p: object;
    };
    forged.p = { x: [1, -2, 3] };
    await t.rejects(
      search.searchDecisions({
        limit: 2,
        identity: "alice",
        before: Buffer.from(JSON.stringify(forged)).toString("base64url"),
      }),
      InvalidSearchError,
    );
    for (const v of HOSTILE) {
      for (const k of ["identity", "resource", "protocol", "action", "reason", "q", "sessionId"]) {
        const r = await search.searchDecisions({ limit: 10, [k]: v });
        t.same(r.decisions, [], `${k} = ${JSON.stringify(v)}`);
      }
    }
  },
);

/** A session as the gateway writes one (src/gateway/sessions.ts, the SSH channel's calls), with fixed clocks. */
async function sshSession(audit: AuditTrail) {
  const opener = new SessionOpener({
    auth: { verify: async () => Promise.reject(new Error("unused")) },
    audit,
  });
  const open = await opener.open({
    protocol: "ssh",
    resource: { name: "web-1", kind: "ssh", labels: {} },
    identity: {
      sub: "alice",
      iss: "https://idp",
      email: null,
      groups: [],
      client_id: null,
      actors: [{ sub: "alice" }],
    },
    expiresAt: new Date(Date.now() + 60_000),
    transport: { remoteAddress: "127.0.0.1", tls: false },
  });
  const sid = open.ctx.id;
  // An exec: its transcript entry, then its terminal (as session-channel.ts onExec/relay do).
  open.transcript({
    event: "exec",
    line: "tail -n 3 /var/log/syslog",
    programs: ["tail"],
    action: "allow",
    decision_id: "dec-exec",
  });
  let clock = 0;
  const exec = open.terminal({
    width: 80,
    height: 24,
    command: "tail -n 3 /var/log/syslog",
    title: "web-1 exec (decision dec-exec)",
    now: () => clock,
  });
  for (let i = 0; i < 12; i++) {
    clock += 100;
    exec?.output(`line ${i} of the log, long enough to fill a chunk or two\r\n`);
  }
  await exec?.close();
  open.transcript({ event: "exit", decision_id: "dec-exec", code: 0 });
  // A shell: typed lines are transcript entries and markers in the recording.
  open.transcript({ event: "shell", pty: true, action: "allow", decision_id: "dec-shell" });
  let c2 = 0;
  const shell = open.terminal({
    width: 100,
    height: 30,
    title: "web-1 shell (decision dec-shell)",
    now: () => c2,
  });
  shell?.output("$ ");
  c2 += 1500;
  shell?.input("uptime\r");
  open.transcript({ event: "typed", line: "uptime" });
  shell?.marker("uptime");
  shell?.output("up 3 days\r\n$ ");
  c2 += 2250;
  shell?.input("exit\r");
  shell?.marker("exit");
  await shell?.close();
  open.end("client closed the connection");
  return sid;
}

t.test("session view: the transcript and both terminals, with their command index", async (t) => {
  const { dir, audit } = await spoolWith(t);
  const sid = await sshSession(audit);
  await recordFixtures(audit, fixtures());
  await audit.close();
  await new Promise((r) => setTimeout(r, 50)); // the transcript's last chunk is written after end()

  let passes = 0;
  const records = () => {
    passes++;
    return spoolRecords(dir);
  };
  const view = await loadSessionView(records, sid);
  t.equal(passes, 1, "one pass over the records");
  t.ok(view);
  if (!view) return;
  t.equal(view.session_id, sid);
  t.match(view.transcript, {
    format: "jsonl",
    header: { session_id: sid, protocol: "ssh" },
    complete: true,
    missing_parts: [],
  });
  t.same(
    view.transcript?.entries.map((e) => e.event),
    ["start", "exec", "recording", "exit", "shell", "recording", "typed", "end"],
  );
  t.same(
    view.terminals.map((x) => x.id),
    [`${sid}/1`, `${sid}/2`],
  );
  const [exec, shell] = view.terminals;
  t.match(exec, {
    header: { version: 2, width: 80, height: 24, command: "tail -n 3 /var/log/syslog" },
    complete: true,
    missing_parts: [],
    events: 12,
    duration: 1.2,
    markers: [[0, "tail -n 3 /var/log/syslog"]],
  });
  t.match(shell, {
    header: { width: 100, height: 30 },
    complete: true,
    events: 6,
    duration: 3.75,
    markers: [
      [1.5, "uptime"],
      [3.75, "exit"],
    ],
  });
  t.type(exec?.header.timestamp, "number", "the asciicast header, as recorded");

  // A chunk missing (deleted, or not shipped yet) is reported.
  const chunks: SpoolRecord[] = [];
  for await (const r of spoolRecords(dir))
    if (r.kind === "recording" && r.body.startsWith(`{"session_id":"${sid}/1"`)) chunks.push(r);
  t.ok(chunks.length >= 3, `${chunks.length} chunks of the exec terminal`);
  const dropped = chunks[1] as SpoolRecord;
  const without = async function* () {
    for await (const r of spoolRecords(dir)) if (r.seq !== dropped.seq) yield r;
  };
  const partial = await loadSessionView(without, sid);
  t.match(partial?.terminals[0], { missing_parts: [1], complete: true });
  t.ok((partial?.terminals[0]?.events ?? 0) < 12);
  t.same(partial?.transcript?.missing_parts, []);

  t.equal(await loadSessionView(records, "no-such-session"), null);
  t.equal(
    await loadSessionView(records, sid.slice(0, 8)),
    null,
    "a prefix of a session id is not that session",
  );
});

t.test("session ids that are prefixes of others are not mixed up", async (t) => {
  const { dir, audit } = await spoolWith(t);
  const terminal = async (id: string, text: string) => {
    const rec = audit.openTerminalRecording(id, { width: 80, height: 24 });
    rec.output(text);
    rec.marker(`marker of ${id}`);
    await rec.close();
  };
  for (const id of ["abc", "abcd"]) {
    const tr = audit.openTranscript(id, { meta: { protocol: "kubernetes" } });
    tr.entry({ event: "request", verb: "get", path: `/api/v1/${id}` });
    await tr.close();
  }
  await terminal("abc/1", "one");
  await terminal("abcd/1", "other one");
  await terminal("abc/2", "two");
  await terminal("abc/10", "ten");
  await terminal("abc/1x", "not a terminal of abc");
  await terminal("abc/", "not a terminal either");
  await terminal("abc/1/2", "nor this");
  await audit.close();
  const records = () => spoolRecords(dir);

  const abc = await loadSessionView(records, "abc");
  t.same(
    abc?.transcript?.entries.map((e) => e.path),
    ["/api/v1/abc"],
  );
  t.same(
    abc?.terminals.map((x) => x.id),
    ["abc/1", "abc/2", "abc/10"],
    "numbered terminals of abc, in number order",
  );
  t.same(
    abc?.terminals.map((x) => x.markers.map(([, label]) => label)),
    [["marker of abc/1"], ["marker of abc/2"], ["marker of abc/10"]],
  );
  const abcd = await loadSessionView(records, "abcd");
  t.same(
    abcd?.terminals.map((x) => x.id),
    ["abcd/1"],
  );
  t.same(
    abcd?.transcript?.entries.map((e) => e.path),
    ["/api/v1/abcd"],
  );
  // A recording that is a terminal under its own id (not a gateway session) is shown as one, with its own
  // numbered terminals.
  const own = await loadSessionView(records, "abc/1");
  t.equal(own?.transcript, null);
  t.same(
    own?.terminals.map((x) => x.id),
    ["abc/1", "abc/1/2"],
  );
});

t.test("loadCast gives what `pamgate replay --cast` prints", async (t) => {
  const { dir, audit } = await spoolWith(t);
  const sid = await sshSession(audit);
  await audit.close();
  await new Promise((r) => setTimeout(r, 50));
  const records = () => spoolRecords(dir);
  // The shell: output, input and markers (one CLI run: starting the CLI through tsx takes seconds).
  const id = `${sid}/2`;
  const cast = await loadCast(records, id);
  const cli = spawnSync(
    process.execPath,
    [packagePath("bin", "pamgate.js"), "replay", id, "--cast", "--spool", dir],
    {
      cwd: packagePath(),
      encoding: "utf8",
    },
  );
  t.equal(cli.status, 0, cli.stderr);
  t.equal(cast, cli.stdout, "the same text");
  const lines = (cast as string).trimEnd().split("\n");
  t.match(JSON.parse(lines[0] as string), { version: 2, width: 100, height: 30 });
  t.same(
    lines.slice(1).map((l) => (JSON.parse(l) as unknown[])[1]),
    ["o", "i", "m", "o", "i", "m"],
  );
  const exec = await loadRecording(records(), `${sid}/1`);
  t.equal(
    (await loadCast(records, `${sid}/1`))?.trimEnd().split("\n").length,
    1 + (exec?.events.length ?? 0),
  );
  t.equal(await loadCast(records, sid), null, "a transcript is not a terminal");
  t.equal(await loadCast(records, `${sid}/9`), null);
});
