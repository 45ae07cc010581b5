// The decision search over the PostgreSQL sink's table, against a real server: the same records shipped from two
// spools give the same rows, in the same order and pages, as the spool backend; hostile filter values are only
// ever parameters; session views and .cast files read from the table equal those read from the spool.
import { join } from "node:path";
import pg from "pg";
import t from "tap";
import { AuditTrail } from "../../src/audit/index.js";
import { spoolRecords } from "../../src/audit/reader.js";
import {
  InvalidSearchError,
  loadCast,
  loadSessionView,
  PostgresDecisionSearch,
  postgresSessionRecords,
  SpoolDecisionSearch,
} from "../../src/audit/search.js";
import {
  allPages,
  expected,
  fixtures,
  HOSTILE,
  manyFixtures,
  type Placed,
  queries,
  recordFixtures,
} from "../helpers/audit-search.js";
import { startPostgres } from "../helpers/postgres.js";

t.test("decision search over PostgreSQL", async (t) => {
  const server = await startPostgres();
  const pool = new pg.Pool({ connectionString: server.url, max: 4 });
  t.teardown(async () => {
    await pool.end();
    await server.stop();
  });
  const root = t.testdir();
  const sinks = [{ type: "postgres" as const, url: server.url, table: "audit.pamgate" }];
  await pool.query("CREATE SCHEMA audit");

  // Two gateways (or workers) shipping to one table; their event times interleave.
  const a = await AuditTrail.open({ dir: join(root, "worker-0"), sinks, recording: { chunkBytes: 256 } });
  const b = await AuditTrail.open({ dir: join(root, "worker-1"), sinks });
  const placed: Placed[] = [];
  placed.push(...(await recordFixtures(a, fixtures())));
  const many = manyFixtures(60, 100);
  placed.push(
    ...(await recordFixtures(
      b,
      many.filter((_, i) => i % 2 === 0),
    )),
  );
  placed.push(
    ...(await recordFixtures(
      a,
      many.filter((_, i) => i % 2 === 1),
    )),
  );

  // A session with a transcript and two terminals, in spool a.
  const sid = "5e551011-0000-4000-8000-000000000001";
  const tr = a.openTranscript(sid, { meta: { protocol: "ssh" } });
  tr.entry({ event: "exec", line: "uname -a", action: "allow", decision_id: "d-1" });
  for (const n of [1, 2]) {
    const rec = a.openTerminalRecording(`${sid}/${n}`, {
      width: 80,
      height: 24,
      ...(n === 1 ? { command: "uname -a", title: "web-1 exec (decision d-1)" } : {}),
    });
    tr.entry({ event: "recording", recording_id: `${sid}/${n}`, format: "asciicast-v2" });
    for (let i = 0; i < 10; i++) rec.output(`output line ${i} of terminal ${n}, padded to make chunks\r\n`);
    rec.marker(`typed ${n}`);
    await rec.close();
  }
  await tr.close();
  // A terminal the transcript does not name, past a gap: found by probing numbers.
  const stray = a.openTerminalRecording(`${sid}/7`, { width: 80, height: 24 });
  stray.output("stray\r\n");
  await stray.close();
  // A session whose id is a prefix of the first: not mixed in.
  const prefixed = a.openTerminalRecording(`${sid.slice(0, -1)}/1`, { width: 80, height: 24 });
  prefixed.output("other session\r\n");
  await prefixed.close();

  t.ok(await a.waitForSinks(20_000), "spool a shipped");
  t.ok(await b.waitForSinks(20_000), "spool b shipped");
  await a.close();
  await b.close();

  const spool = new SpoolDecisionSearch([join(root, "worker-0"), join(root, "worker-1")]);
  const fromPool = new PostgresDecisionSearch(pool, { table: "audit.pamgate" });
  const fromUrl = new PostgresDecisionSearch(server.url, { table: "audit.pamgate" });
  t.teardown(() => fromUrl.close());

  await t.test("the same rows as the spool backend, for every query and page size", async (t) => {
    for (const q of queries()) {
      const want = expected(placed, q);
      const one = await fromPool.searchDecisions({ ...q, limit: 500 });
      t.same(one.decisions, want, `${JSON.stringify(q)}: ${want.length} rows`);
      t.equal(one.source, "postgres");
      t.equal(one.next_cursor, null);
      t.same((await spool.searchDecisions({ ...q, limit: 500 })).decisions, want, "spool: the same");
      for (const limit of [1, 4]) {
        const pgPages = await allPages(fromPool, { ...q, limit });
        const spoolPages = await allPages(spool, { ...q, limit });
        t.same(pgPages.rows, want, `pages of ${limit}`);
        t.same(pgPages.sizes, spoolPages.sizes, "the same pages");
        t.ok(pgPages.sizes.every((n) => n === limit || n === pgPages.sizes[pgPages.sizes.length - 1]));
      }
    }
    const viaUrl = await allPages(fromUrl, { limit: 9, identity: "planner-agent" });
    t.same(viaUrl.rows, expected(placed, { identity: "planner-agent" }), "a search made from a URL");
  });

  await t.test("hostile values are parameters: they match nothing and break nothing", async (t) => {
    const before = await pool.query<{ n: string }>("SELECT count(*) AS n FROM audit.pamgate");
    for (const v of HOSTILE) {
      for (const k of ["identity", "resource", "protocol", "action", "reason", "q", "sessionId"]) {
        const r = await fromPool.searchDecisions({ limit: 10, [k]: v });
        t.same(r.decisions, [], `${k} = ${JSON.stringify(v)}`);
      }
    }
    const after = await pool.query<{ n: string }>("SELECT count(*) AS n FROM audit.pamgate");
    t.equal(after.rows[0]?.n, before.rows[0]?.n, "the table is untouched");
    await t.rejects(
      fromPool.searchDecisions({ limit: 5, before: "'; DROP TABLE audit.pamgate; --" }),
      InvalidSearchError,
    );
    const page = await spool.searchDecisions({ limit: 2 });
    await t.rejects(
      fromPool.searchDecisions({ limit: 2, before: page.next_cursor as string }),
      InvalidSearchError,
      "a spool cursor is not a PostgreSQL one",
    );
    const pgPage = await fromPool.searchDecisions({ limit: 2 });
    const forged = JSON.parse(Buffer.from(pgPage.next_cursor as string, "base64url").toString()) as Record<
      string,
      unknown
    >;
    for (const bad of [
      { ts: "2024-06-01'; --" },
      { seq: "1; DROP" },
      { seq: "99999999999999999999" },
      { sp: 5 },
    ]) {
      const cursor = Buffer.from(JSON.stringify({ ...forged, ...bad })).toString("base64url");
      await t.rejects(
        fromPool.searchDecisions({ limit: 2, before: cursor }),
        InvalidSearchError,
        JSON.stringify(bad),
      );
    }
    t.throws(
      () => new PostgresDecisionSearch(pool, { table: 'audit."pamgate"; --' }),
      /invalid audit table name/,
    );
  });

  await t.test("session views and casts from the table equal those from the spool", async (t) => {
    const fromSpool = () => spoolRecords(join(root, "worker-0"));
    const fromTable = () => postgresSessionRecords(pool, "audit.pamgate", sid);
    const viaUrl = () => postgresSessionRecords(server.url, "audit.pamgate", sid);
    const view = await loadSessionView(fromSpool, sid);
    t.same(
      view?.terminals.map((x) => x.id),
      [`${sid}/1`, `${sid}/2`, `${sid}/7`],
    );
    t.same(view?.terminals[0]?.markers, [
      [0, "uname -a"],
      [view?.terminals[0]?.markers[1]?.[0], "typed 1"],
    ]);
    t.same(await loadSessionView(fromTable, sid), view);
    t.same(await loadSessionView(viaUrl, sid), view);
    for (const id of [`${sid}/1`, `${sid}/2`, `${sid}/7`]) {
      const cast = await loadCast(fromSpool, id);
      t.ok(cast);
      t.equal(await loadCast(fromTable, id), cast, id);
    }
    t.equal(
      await loadSessionView(() => postgresSessionRecords(pool, "audit.pamgate", "nothing"), "nothing"),
      null,
    );
  });
});
