// Masked data and writes reached through server-side objects: views, materialized views, SQL and PL/pgSQL
// functions, functions that run SQL given as a string, DO blocks, sequences and other builtins with side effects,
// and `SELECT *` masked column by column. Real parts: PostgreSQL from the installed binaries seeded with the demo
// schema, the development issuer, the example policies built with opa, psql as the client; decisions are read
// back from the gateway's audit spool.
import pg from "pg";
import t from "tap";
import { spoolRecords } from "../../src/audit/reader.js";
import { recordBody } from "../../src/audit/record.js";
import { startTestGateway, type TestGateway } from "../helpers/gateway.js";

let g: TestGateway;
let alice: string;
let carol: string;
let bot: string;

t.before(async () => {
  g = await startTestGateway();
  const db = await g.direct();
  await db.query(`
    CREATE VIEW public.user_directory AS
      SELECT id, name, ssn AS tax_id, upper(email) AS contact FROM public.users;
    CREATE VIEW public.plain_users AS SELECT id, name, ssn FROM public.users;
    CREATE VIEW public.nested AS SELECT tax_id, id FROM public.user_directory;
    CREATE VIEW public.filtered AS SELECT id, name FROM public.users WHERE ssn LIKE '1%';
    CREATE MATERIALIZED VIEW public.ssn_snapshot AS SELECT id, ssn AS s FROM public.users;
    CREATE FUNCTION public.ssn_of(int) RETURNS text LANGUAGE sql STABLE AS 'SELECT ssn FROM public.users WHERE id = $1';
    CREATE FUNCTION public.ssn_pl(i int) RETURNS text LANGUAGE plpgsql AS $$
      BEGIN RETURN (SELECT ssn FROM public.users WHERE id = i); END $$;
    CREATE FUNCTION public.bump() RETURNS int LANGUAGE sql VOLATILE AS
      'UPDATE public.orders SET total = total + 1 WHERE id = 40 RETURNING 1';
    CREATE VIEW public.renamed AS SELECT id, name AS label FROM public.users;
    CREATE VIEW public.via_function AS SELECT id, public.ssn_of(id) AS x FROM public.users;
    CREATE SEQUENCE public.ticket_seq;
    CREATE FUNCTION public.peek(text, int) RETURNS boolean LANGUAGE sql AS
      'SELECT EXISTS (SELECT 1 FROM public.users WHERE ssn LIKE $1 || ''%'')';
    CREATE OPERATOR public.=== (LEFTARG = text, RIGHTARG = int, FUNCTION = public.peek);
  `);
  await db.end();
  [alice, carol, bot] = await Promise.all([g.tokenFor("alice"), g.tokenFor("carol"), g.botFor("alice")]);
});
t.teardown(() => g?.stop());

type Body = {
  action?: string;
  reason_codes?: string[];
  reasons?: Array<{ code: string; message: string }>;
  input?: { command?: Record<string, unknown> };
};

async function decisions(): Promise<Body[]> {
  const out: Body[] = [];
  for await (const r of spoolRecords(`${g.dir}/audit`))
    if (r.kind === "decision") out.push(recordBody(r) as Body);
  return out;
}

/** Runs one statement through the gateway; returns psql's result and the decision records it made. */
async function run(token: string, sql: string) {
  const before = (await decisions()).length;
  const r = await g.psql(token, sql);
  return { ...r, recs: (await decisions()).slice(before) };
}

const SSNS = /123-45-6789|987-65-4321|555-12-3456/;

t.test("SELECT * and TABLE are masked column by column, not blocked", async (t) => {
  for (const sql of ["SELECT * FROM users ORDER BY id LIMIT 10", "TABLE users"]) {
    const r = await run(alice, sql);
    t.equal(r.code, 0, `${sql}: ${r.stderr}`);
    t.match(r.stdout, /\*{7}6789/, `${sql}: ssn masked`);
    t.match(r.stdout, /Ada Lovelace/, "other columns as they are");
    t.notMatch(r.stdout, SSNS);
    t.notMatch(r.stdout, /ada@example\.com/, "email hashed");
    t.equal(r.recs[0]?.action, "mask");
    const cols = r.recs[0]?.input?.command?.columns as string[];
    t.ok(cols.includes("public.users.ssn") && !cols.includes("public.users.*"), "policy saw every column");
  }
  const joined = await run(alice, "SELECT u.*, o.total FROM users u JOIN orders o ON o.user_id = u.id");
  t.equal(joined.code, 0, joined.stderr);
  t.notMatch(joined.stdout, SSNS);
  t.match(joined.stdout, /\*{7}6789/);
});

t.test("whole-row values of a masked table stay blocked", async (t) => {
  for (const sql of ["SELECT row_to_json(u) FROM users u", "SELECT u FROM users u"]) {
    const r = await run(alice, sql);
    t.not(r.code, 0, sql);
    t.match(r.stderr, /cannot be masked/);
    t.notMatch(r.stdout, SSNS);
    t.same(r.recs[0]?.reason_codes, ["pg.mask_unsafe"]);
  }
});

t.test("a view's columns are masked as the table columns they pass through", async (t) => {
  const r = await run(alice, "SELECT id, tax_id FROM user_directory ORDER BY id");
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /1\|\*{7}6789/, "renamed by the view, masked all the same");
  t.notMatch(r.stdout, SSNS);
  const cmd = r.recs[0]?.input?.command as { views: string[]; tables: { read: string[] }; columns: string[] };
  t.same(cmd.views, ["public.user_directory"]);
  t.ok(cmd.tables.read.includes("public.users"), "the base table is in tables.read");
  t.ok(cmd.columns.includes("public.users.ssn"), "and the column it reads in columns");

  for (const sql of [
    "SELECT * FROM plain_users",
    "SELECT tax_id FROM nested",
    "SELECT s FROM ssn_snapshot",
  ]) {
    const v = await run(alice, sql);
    t.equal(v.code, 0, `${sql}: ${v.stderr}`);
    t.match(v.stdout, /\*{7}6789/, `${sql}: masked`);
    t.notMatch(v.stdout, SSNS, sql);
  }
  const nested = await run(alice, "SELECT tax_id FROM nested");
  t.same(
    nested.recs[0]?.input?.command?.views,
    ["public.nested", "public.user_directory"],
    "views over views",
  );

  const filtered = await run(alice, "SELECT * FROM filtered");
  t.equal(filtered.code, 0, "a masked column used only in the view's WHERE does not block it");
  t.match(filtered.stdout, /Ada Lovelace/);
});

t.test("a view column computed from a masked column, or one used in an expression, is blocked", async (t) => {
  const all = await run(alice, "SELECT * FROM user_directory");
  t.not(all.code, 0);
  t.match(
    all.stderr,
    /public\.user_directory\.contact is computed by view public\.user_directory from masked column public\.users\.email/,
  );
  t.same(all.recs[0]?.reason_codes, ["pg.mask_unsafe"]);
  t.notMatch(all.stdout, /ADA@EXAMPLE\.COM/);

  const expr = await run(alice, "SELECT lower(tax_id) FROM user_directory");
  t.not(expr.code, 0);
  t.match(expr.stderr, /masked column public\.users\.ssn \(through view public\.user_directory\)/);
  t.notMatch(expr.stdout, SSNS);

  const ok = await run(alice, "SELECT id, name FROM user_directory");
  t.equal(ok.code, 0, "columns of the view that are not masked are fine");

  const privileged = await run(carol, "SELECT * FROM user_directory ORDER BY id");
  t.equal(privileged.code, 0, privileged.stderr);
  t.match(privileged.stdout, /123-45-6789/, "pii-readers see it unmasked");
});

t.test("user-defined functions are opaque: SQL, PL/pgSQL, and called by a view", async (t) => {
  for (const [sql, fn] of [
    ["SELECT ssn_of(1)", "public.ssn_of (sql, stable)"],
    ["SELECT public.ssn_pl(1)", "public.ssn_pl (plpgsql, volatile)"],
    ["SELECT * FROM via_function", "public.ssn_of (sql, stable)"],
    ["SELECT id FROM orders WHERE status === 1", "public.peek (sql, volatile)"],
    ["SELECT id FROM orders WHERE status OPERATOR(public.===) 1", "public.peek (sql, volatile)"],
  ] as const) {
    const r = await run(alice, sql);
    t.not(r.code, 0, sql);
    t.notMatch(r.stdout, SSNS, sql);
    t.ok(r.recs[0]?.reason_codes?.includes("pg.opaque_function"), `${sql}: ${r.recs[0]?.reason_codes}`);
    t.match(r.stderr, `function ${fn} is user-defined code pamgate cannot see into`);
  }
  const fns = (await run(alice, "SELECT ssn_of(1)")).recs[0]?.input?.command?.user_functions;
  t.match(fns, [{ name: "public.ssn_of", volatility: "stable", language: "sql", kind: "function" }]);
});

t.test("functions that run SQL given as a string, and DO blocks, are blocked with a reason", async (t) => {
  for (const sql of [
    "SELECT query_to_xml('SELECT ssn FROM users', true, false, '')",
    "SELECT table_to_xml('users', true, false, '')",
    "SELECT * FROM ts_stat('SELECT to_tsvector(ssn) FROM users')",
  ]) {
    const r = await run(alice, sql);
    t.not(r.code, 0, sql);
    t.notMatch(r.stdout, SSNS);
    t.ok(r.recs[0]?.reason_codes?.includes("pg.dynamic_sql"), sql);
    t.match(r.stderr, /runs SQL given to it as a string/);
  }
  const d = await run(carol, "DO $$ BEGIN EXECUTE 'UPDATE orders SET total = 0'; END $$");
  t.not(d.code, 0);
  t.same(d.recs[0]?.reason_codes, ["pg.do_block"]);
  t.match(d.stderr, /DO runs procedural code pamgate cannot inspect/);
});

t.test("a machine identity cannot change anything through a SELECT", async (t) => {
  const db = await g.direct();
  t.teardown(() => db.end());
  const before = await db.query("SELECT last_value, is_called FROM ticket_seq");
  const totals = await db.query("SELECT total FROM orders WHERE id = 40");
  for (const [sql, fn] of [
    ["SELECT nextval('ticket_seq')", "nextval"],
    ["SELECT setval('ticket_seq', 100)", "setval"],
    ["SELECT pg_advisory_lock(42)", "pg_advisory_lock"],
    ["SELECT pg_notify('jobs', 'x')", "pg_notify"],
    ["SELECT lo_from_bytea(0, 'x')", "lo_from_bytea"],
    ["SELECT set_config('work_mem', '1GB', false)", "set_config"],
    ["SELECT bump()", "public.bump"],
  ] as const) {
    const r = await run(bot, sql);
    t.not(r.code, 0, sql);
    t.ok(r.recs[0]?.reason_codes?.includes("pg.read_only_machine"), `${sql}: ${r.recs[0]?.reason_codes}`);
    t.match(r.stderr, `which changes state through ${fn}`, sql);
    t.equal(r.recs[0]?.input?.command?.category, "write");
  }
  t.same(
    (await db.query("SELECT last_value, is_called FROM ticket_seq")).rows,
    before.rows,
    "sequence untouched",
  );
  t.same((await db.query("SELECT total FROM orders WHERE id = 40")).rows, totals.rows, "no row changed");
  t.equal((await db.query("SELECT count(*)::int AS n FROM pg_largeobject_metadata")).rows[0].n, 0);

  const read = await run(bot, "SELECT id, total FROM orders WHERE id = 40");
  t.equal(read.code, 0, "plain reads still work");
  const human = await run(alice, "SELECT nextval('ticket_seq')");
  t.equal(human.code, 0, `a human may: ${human.stderr}`);
});

t.test("an error of a masked statement does not echo a masked value", async (t) => {
  const r = await run(alice, "SELECT id FROM users WHERE ssn::int = 1");
  t.not(r.code, 0);
  t.match(r.stderr, /invalid input syntax for type integer/, "the error is still told");
  t.notMatch(r.stderr, SSNS, "without the value");
  t.match(r.stderr, /withheld values/);
  const unmasked = await run(carol, "SELECT id FROM users WHERE ssn::int = 1");
  t.match(unmasked.stderr, SSNS, "(the server's own message, for an identity without masks)");
  const after = await run(alice, "SELECT id FROM orders WHERE id = 40");
  t.equal(after.code, 0, "the session goes on");
});

t.test(
  "a view changed through pamgate is seen at once: the catalog cache is cleared when the change has run",
  async (t) => {
    const before = await run(alice, "SELECT label FROM renamed ORDER BY id");
    t.match(before.stdout, /Ada Lovelace/, "label is the name, unmasked");

    // carol (dba, pii-readers) redefines the view; DDL needs a dba's approval, bob gives it.
    const c = new pg.Client({ connectionString: g.url(carol) });
    await c.connect();
    t.teardown(() => c.end());
    const ddl = "CREATE OR REPLACE VIEW public.renamed AS SELECT id, ssn AS label FROM public.users";
    const held = c.query(ddl);
    let pending: Awaited<ReturnType<typeof g.gw.approvals.list>>[number] | undefined;
    for (let i = 0; i < 200 && !pending; i++) {
      pending = (await g.gw.approvals.list({ status: "pending" }))[0];
      if (!pending) await new Promise((r) => setTimeout(r, 25));
    }
    const bob = (await g.gw.verifier.verify(await g.tokenFor("bob"))).identity;
    await g.gw.approvals.approve((pending as { id: string }).id, bob, { comment: "ok" });
    await held;

    const after = await run(alice, "SELECT label FROM renamed ORDER BY id");
    t.equal(after.code, 0, after.stderr);
    t.notMatch(after.stdout, SSNS, "the new definition's masked column is masked right away");
    t.match(after.stdout, /\*{7}6789/);
  },
);

t.test(
  "reading objects after a schema change in the same message is refused (pg.catalog_changed)",
  async (t) => {
    const r = await run(
      carol,
      "CREATE VIEW public.fresh AS SELECT ssn AS x FROM public.users; SELECT x FROM public.fresh",
    );
    t.not(r.code, 0);
    t.match(r.stderr, /after a schema change in the same message/);
    const codes = r.recs.map((d) => d.reason_codes);
    t.same(codes, [["batch.blocked"], ["pg.catalog_changed"]], "nothing ran, and each record says why");
    const db = await g.direct();
    t.teardown(() => db.end());
    t.equal(
      (await db.query("SELECT to_regclass('public.fresh') AS r")).rows[0].r,
      null,
      "the view was not created",
    );
  },
);
