// What a PostgreSQL session transcript shows: each statement's text (literals normalized away by default), the
// decision, and what came back — command tag, row count, error, duration and the first rows exactly as the client
// saw them (masked) — and `pamgate replay` printing it like psql. Real parts: PostgreSQL from the installed
// binaries, the development issuer, the example policies, psql and node-postgres as clients; the transcript is
// read back from the gateway's audit spool.
import { execFileSync } from "node:child_process";
import pg from "pg";
import t from "tap";
import { spoolRecords } from "../../src/audit/reader.js";
import { recordBody } from "../../src/audit/record.js";
import { loadRecording } from "../../src/audit/replay.js";
import { packagePath } from "../../src/util/tools.js";
import { startTestGateway, type TestGateway } from "../helpers/gateway.js";

type Entry = Record<string, unknown>;

/** The session id of the newest decision record. */
async function lastSession(g: TestGateway): Promise<string> {
  let id = "";
  for await (const r of spoolRecords(`${g.dir}/audit`))
    if (r.kind === "decision") id = String((recordBody(r) as Entry).session_id);
  return id;
}

/** The transcript entries of a session once it has ended. */
async function transcript(g: TestGateway, session: string): Promise<Entry[]> {
  for (let i = 0; i < 100; i++) {
    const rec = await loadRecording(spoolRecords(`${g.dir}/audit`), session);
    if (rec?.complete) return rec.events as Entry[];
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`no complete transcript for ${session}`);
}

const SSNS = /123-45-6789|987-65-4321|555-12-3456/;

t.test("default transcript: normalized text, masked rows, tags, errors, the cap, replay", async (t) => {
  const g = await startTestGateway();
  t.teardown(() => g.stop());
  const alice = await g.tokenFor("alice");
  const r = await g.psql(
    alice,
    "SELECT id, name, ssn FROM users WHERE id < 3 ORDER BY id; SELECT 1/0; SELECT 'never'",
  );
  t.match(r.stderr, /division by zero/);
  const session = await lastSession(g);
  const events = await transcript(g, session);
  const statements = events.filter((e) => e.event === "statement");
  const results = events.filter((e) => e.event === "result");
  t.same(
    statements.map((s) => s.text),
    ["SELECT id, name, ssn FROM users WHERE id < $1 ORDER BY id", "SELECT $1/$2", "SELECT $1"],
    "literal values are not in the transcript",
  );
  t.equal(results.length, 3, "one result per statement");
  t.match(results[0], {
    decision_id: statements[0]?.decision_id,
    tag: "SELECT 2",
    rows: 2,
    columns: ["id", "name", "ssn"],
    sample: [
      ["1", "Ada Lovelace", "*******6789"],
      ["2", "Grace Hopper", "*******4321"],
    ],
  });
  t.type(results[0]?.duration_ms, "number");
  t.match(results[1], {
    decision_id: statements[1]?.decision_id,
    error: { code: "22012", message: "division by zero" },
  });
  t.match(
    results[2],
    { decision_id: statements[2]?.decision_id, not_run: true },
    "the rest of the string did not run",
  );
  t.notMatch(JSON.stringify(events), SSNS, "no unmasked value anywhere in the transcript");

  // the cap, and the extended protocol
  const c = new pg.Client({ connectionString: g.url(alice) });
  await c.connect();
  await c.query("SELECT g FROM generate_series(1, 50) AS g");
  await c.query("SELECT name, email FROM users WHERE id = $1", [1]);
  await c.query("UPDATE orders SET status = status WHERE id = $1", [40]);
  await c.end();
  const ext = (await transcript(g, await lastSession(g))).filter((e) => e.event === "result");
  t.match(ext[0], { tag: "SELECT 50", rows: 50, truncated: true });
  t.equal((ext[0]?.sample as unknown[] | undefined)?.length, 20, "20 rows kept by default");
  t.match(ext[1], { rows: 1, columns: ["name", "email"], sample: [["Ada Lovelace", /^h:[0-9a-f]{16}$/]] });
  t.match(ext[2], { tag: "UPDATE 1", rows: 1 });
  t.notOk("sample" in (ext[2] as Entry), "a write has no rows");

  const replay = execFileSync(
    process.execPath,
    [packagePath("bin", "pamgate.js"), "replay", session, "--spool", `${g.dir}/audit`],
    { encoding: "utf8" },
  );
  t.match(replay, "=> SELECT id, name, ssn FROM users WHERE id < $1 ORDER BY id;");
  t.match(
    replay,
    / id \| {5}name {5}\| {5}ssn\n----\+--------------\+-------------\n 1 {2}\| Ada Lovelace \| \*{7}6789/,
  );
  t.match(replay, "(2 rows)");
  t.match(replay, "ERROR:  division by zero (SQLSTATE 22012)");
  t.match(replay, "-- not run (an earlier statement failed)");
  t.notMatch(replay, SSNS);
});

t.test(
  "full statement text and a row cap are configurable; the upstream password never appears",
  async (t) => {
    const g = await startTestGateway({
      listeners: {
        postgres: { host: "127.0.0.1", port: 0, transcript: { statement_text: "full", max_rows: 1 } },
      },
    });
    t.teardown(() => g.stop());
    const alice = await g.tokenFor("alice");
    const secret = g.db.password;
    const r = await g.psql(
      alice,
      `SELECT name, '${secret}' AS pw FROM users ORDER BY id; SELECT '${secret}'::int`,
    );
    t.match(r.stdout, secret, "(the client sees what it typed)");
    const events = await transcript(g, await lastSession(g));
    const statements = events.filter((e) => e.event === "statement");
    t.equal(
      statements[0]?.text,
      "SELECT name, '***' AS pw FROM users ORDER BY id",
      "full text, secret withheld",
    );
    const results = events.filter((e) => e.event === "result");
    t.same(results[0]?.sample, [["Ada Lovelace", "***"]], "one row kept, secret withheld");
    t.match(results[0], { rows: 3, truncated: true });
    t.match(results[1], {
      error: { code: "22P02", message: 'invalid input syntax for type integer: "***"' },
    });
    t.notMatch(JSON.stringify(events), secret);
  },
);
