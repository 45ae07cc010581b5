// Name resolution in the analysis and the pinned search_path (docs/policy-contract.md, "Name resolution"):
// unqualified names are reported in the session's schema, `pg_` names in pg_catalog too; statements that would
// change search_path carry a refusal; analyses for different schemas never answer for each other; and the startup
// option that pins the upstream session is written so that the server reads back exactly the configured name.
import t from "tap";
import {
  type Analysis,
  type AnalyzedStatement,
  analyzeSql,
  initAnalyzer,
} from "../../src/proxy/postgres/analysis/index.js";
import {
  DEFAULT_SEARCH_PATH,
  FORWARDED_STARTUP_PARAMS,
  pinnedSchema,
  pinnedSearchPath,
  searchPathProblem,
  UpstreamError,
} from "../../src/proxy/postgres/upstream.js";

await initAnalyzer();

function statements(a: Analysis): readonly AnalyzedStatement[] {
  if (!a.ok) throw new Error(a.error);
  return a.statements;
}

function only(sql: string, schema?: string): AnalyzedStatement {
  const s = statements(analyzeSql(sql, schema));
  if (s.length !== 1) throw new Error(`${s.length} statements in ${sql}`);
  return s[0] as AnalyzedStatement;
}

t.test("statements that would change search_path carry pg.search_path_change", async (t) => {
  for (const sql of [
    "SET search_path = secret",
    "SET search_path TO secret, public",
    "SET SESSION search_path = secret",
    "SET LOCAL search_path TO secret",
    "SET SCHEMA 'secret'",
    'SET "SEARCH_PATH" = secret',
    "SET Search_Path = secret",
    "SELECT set_config('search_path', 'secret', false)",
    "SELECT pg_catalog.set_config('SEARCH_PATH', 'secret', true)",
    "SELECT set_config(lower('SEARCH_PATH'), 'secret', false)",
    "SELECT set_config($1, 'secret', false)",
    "SELECT set_config('search_path'::text, 'secret', false)",
    "SELECT * FROM set_config('search_path', 'secret', false)",
    "SELECT id FROM users WHERE set_config('search_path', 'secret', false) IS NOT NULL",
    "PREPARE p AS SELECT set_config('search_path', 'secret', false)",
    "UPDATE pg_settings SET setting = 'secret' WHERE name = 'search_path'",
    "UPDATE pg_catalog.pg_settings SET setting = 'secret' WHERE name = 'search_path'",
    "EXPLAIN ANALYZE UPDATE pg_settings SET setting = 'secret' WHERE name = 'search_path'",
    "PREPARE q AS UPDATE pg_settings SET setting = $1 WHERE name = 'search_path'",
  ]) {
    const s = only(sql);
    t.equal(s.refusal?.code, "pg.search_path_change", sql);
    t.match(s.refusal?.message, /pins search_path to public .*schema-qualify names/, sql);
  }
});

t.test("what returns to the pinned value, or does not touch it, is not refused", async (t) => {
  for (const sql of [
    "RESET search_path",
    "RESET ALL",
    "DISCARD ALL",
    "SET search_path TO DEFAULT",
    "SET search_path = DEFAULT",
    "SHOW search_path",
    "SELECT current_setting('search_path')",
    "SET work_mem = '64MB'",
    "SET LOCAL statement_timeout = 0",
    "SELECT set_config('application_name', 'x', false)",
    "SELECT set_config('work_mem', '64MB', true)",
    // a role's or database's default applies at login only, where pamgate's startup option overrides it
    "ALTER ROLE alice SET search_path = secret",
    "ALTER DATABASE orders SET search_path = secret",
    // the function's own setting, for its own calls
    "CREATE FUNCTION f() RETURNS int LANGUAGE sql SET search_path = secret AS 'SELECT 1'",
    // a user table of that name, explicitly qualified; and EXPLAIN without ANALYZE runs nothing
    "UPDATE public.pg_settings SET setting = 'x' WHERE name = 'search_path'",
    "EXPLAIN UPDATE pg_settings SET setting = 'secret' WHERE name = 'search_path'",
    "SELECT name, setting FROM pg_settings WHERE name = 'search_path'",
    "SET ROLE bob",
  ]) {
    t.equal(only(sql).refusal, undefined, sql);
  }
});

t.test("only the statement that changes search_path in a batch is refused", async (t) => {
  const [first, second] = statements(
    analyzeSql("SELECT id FROM orders WHERE id = 40; SET search_path = secret"),
  );
  t.equal(first?.refusal, undefined);
  t.equal(second?.refusal?.code, "pg.search_path_change");
});

t.test("the literal-shape cache never carries a refusal to another setting, or drops one", async (t) => {
  t.equal(only("SELECT set_config('work_mem', '1MB', false)").refusal, undefined);
  t.equal(only("SELECT set_config('search_path', 'x', false)").refusal?.code, "pg.search_path_change");
  t.equal(only("SELECT set_config('work_mem', '2MB', false)").refusal, undefined);
  t.equal(
    only("UPDATE pg_settings SET setting = '1MB' WHERE name = 'work_mem'").refusal?.code,
    "pg.search_path_change",
    "UPDATE pg_settings is refused whatever setting its WHERE clause selects",
  );
  t.equal(
    only("UPDATE pg_settings SET setting = 'secret' WHERE name = 'search_path'").refusal?.code,
    "pg.search_path_change",
  );
});

t.test("unqualified names are reported in the session's schema", async (t) => {
  const pub = only("SELECT id, ssn FROM users WHERE id = 1").command;
  t.same(pub.tables.read, ["public.users"], "public by default");
  const s = only("SELECT id, ssn FROM users WHERE id = 1", "secret");
  t.same(s.command.tables.read, ["secret.users"]);
  t.same(s.command.columns, ["secret.users.id", "secret.users.ssn"]);
  t.same(s.masking.bare, ["secret.users.id", "secret.users.ssn"]);
  t.same(
    only("SELECT id FROM public.users", "secret").command.tables.read,
    ["public.users"],
    "qualified stays",
  );
  t.same(only("INSERT INTO audit_log (msg) VALUES ('x')", "ops").command.tables.write, ["ops.audit_log"]);
  t.same(only("DROP TABLE old_orders, archive.orders", "ops").command.tables.write, [
    "archive.orders",
    "ops.old_orders",
  ]);
  t.same(only("COPY users (id) TO STDOUT", "secret").command.copy?.table, "secret.users");
  t.match(only("SET search_path = x", "secret").refusal?.message, /pins search_path to secret /);
});

t.test("analyses are cached per schema: one schema's answer is never another's", async (t) => {
  const sql = "SELECT name FROM customers WHERE id = 7";
  t.same(only(sql).command.tables.read, ["public.customers"]);
  t.same(only(sql, "crm").command.tables.read, ["crm.customers"], "same text, other schema");
  t.same(only(sql).command.tables.read, ["public.customers"], "and back");
  // the literal-shape cache too: same shape, other literal, other schema
  t.same(only("SELECT name FROM customers WHERE id = 8", "crm").command.tables.read, ["crm.customers"]);
  t.same(only("SELECT name FROM customers WHERE id = 9").command.tables.read, ["public.customers"]);
  t.same(only("SELECT name FROM customers WHERE id = 10", "billing").command.tables.read, [
    "billing.customers",
  ]);
  t.throws(() => analyzeSql("SELECT 1", ""), /not a schema name/);
});

t.test("an unqualified pg_ name is reported in pg_catalog and in the session's schema", async (t) => {
  const s = only("SELECT rolname, rolpassword FROM pg_authid");
  t.same(s.command.tables.read, ["pg_catalog.pg_authid", "public.pg_authid"]);
  t.same(s.command.columns, [
    "pg_catalog.pg_authid.rolname",
    "pg_catalog.pg_authid.rolpassword",
    "public.pg_authid.rolname",
    "public.pg_authid.rolpassword",
  ]);
  t.same(s.masking.bare, s.command.columns, "both maskable as themselves");
  const star = only("SELECT * FROM pg_shadow", "ops");
  t.same(star.command.tables.read, ["ops.pg_shadow", "pg_catalog.pg_shadow"]);
  t.same(star.command.columns, ["ops.pg_shadow.*", "pg_catalog.pg_shadow.*"]);
  const computed = only("SELECT upper(usename) FROM pg_user");
  t.same(computed.masking.computed, ["pg_catalog.pg_user.usename", "public.pg_user.usename"]);
  t.same(only("UPDATE pg_mine SET x = 1 WHERE y = 2").command.tables.write, [
    "pg_catalog.pg_mine",
    "public.pg_mine",
  ]);
  t.same(only("DROP TABLE pg_mine").command.tables.write, ["pg_catalog.pg_mine", "public.pg_mine"]);
  t.same(
    only("SELECT * FROM pg_catalog.pg_class").command.tables.read,
    ["pg_catalog.pg_class"],
    "qualified: one",
  );
  t.same(only("SELECT * FROM public.pg_class").command.tables.read, ["public.pg_class"]);
  t.same(only("SELECT users.id FROM users").command.tables.read, ["public.users"], "other names: one");
  t.same(
    only("SELECT relname FROM pg_class", "pg_catalog").command.columns,
    ["pg_catalog.pg_class.relname"],
    "a session pinned to pg_catalog itself reports each once",
  );
});

t.test("the pinned search_path: exactly one schema, written as the server will read it back", async (t) => {
  t.same(DEFAULT_SEARCH_PATH, ["public"]);
  t.equal(pinnedSchema({}), "public");
  t.equal(pinnedSearchPath({}), "-c search_path=public");
  t.equal(pinnedSearchPath({ searchPath: ["analytics_2"] }), "-c search_path=analytics_2");
  t.equal(pinnedSearchPath({ searchPath: ["My Schema"] }), '-c search_path="My\\ Schema"');
  t.equal(pinnedSearchPath({ searchPath: ["$user"] }), '-c search_path="$user"', "$user is only a name");
  t.equal(pinnedSearchPath({ searchPath: ["a,b"] }), '-c search_path="a,b"', "one schema, not two");
  t.equal(pinnedSearchPath({ searchPath: ['we"ird'] }), '-c search_path="we""ird"');
  t.equal(pinnedSearchPath({ searchPath: ["back\\slash"] }), '-c search_path="back\\\\slash"');
  t.equal(pinnedSearchPath({ searchPath: ["tab\there"] }), '-c search_path="tab\\\there"');
  t.equal(pinnedSearchPath({ searchPath: ["Ümlaut"] }), '-c search_path="Ümlaut"');

  t.equal(searchPathProblem(["public"]), null);
  t.match(searchPathProblem(["a", "b"]), /exactly one schema \(got 2\)/);
  t.match(searchPathProblem([]), /exactly one schema \(got 0\)/);
  t.match(searchPathProblem([""]), /cannot be empty/);
  t.match(searchPathProblem(["a\0b"]), /NUL/);
  t.match(searchPathProblem(["x".repeat(64)]), /longer than 63 bytes/);
  t.equal(searchPathProblem(["x".repeat(63)]), null);
  t.match(searchPathProblem(["ü".repeat(32)]), /longer than 63 bytes/, "bytes, not characters");
  t.match(searchPathProblem(["pg_temp"]), /temporary schema/);
  t.match(searchPathProblem(["pg_temp_3"]), /temporary schema/);
  t.throws(() => pinnedSchema({ searchPath: ["a", "b"] }), UpstreamError);
});

t.test("a client's search_path and options never reach the server", async (t) => {
  t.notOk(FORWARDED_STARTUP_PARAMS.has("search_path"));
  t.notOk(FORWARDED_STARTUP_PARAMS.has("options"));
  for (const p of FORWARDED_STARTUP_PARAMS) t.notMatch(p.toLowerCase(), /search_path|options|role/, p);
});
