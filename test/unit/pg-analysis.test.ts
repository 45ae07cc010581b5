// Statement analysis (src/proxy/postgres/analysis/): SQL text → the policy's `command` per statement, with the
// real PostgreSQL parser. A table of statements checks every field of the contract; then multi-statement strings,
// fingerprints, masking, the cache, and bad input (syntax errors, empty and comment-only text, oversized and
// deeply nested statements, NUL characters), including that the parser stays healthy after the worst input the
// guard lets through.
import t, { type Test } from "tap";
import { depthExceededAt } from "../../src/proxy/postgres/analysis/guard.js";
import {
  type AnalyzedStatement,
  analyzerCacheStats,
  analyzerFailure,
  analyzeSql,
  initAnalyzer,
  type StatementCommand,
} from "../../src/proxy/postgres/analysis/index.js";

await initAnalyzer();

/** The one statement of `sql`; fails the test when the analysis is not ok or has another count. */
function one(t: Test, sql: string): AnalyzedStatement {
  const a = analyzeSql(sql);
  if (!a.ok) {
    t.fail(`analysis failed: ${a.error}`);
    throw new Error(a.error);
  }
  t.equal(a.statements.length, 1, "one statement");
  return a.statements[0] as AnalyzedStatement;
}

interface Expect {
  statement?: string;
  category?: StatementCommand["category"];
  read?: string[];
  write?: string[];
  columns?: string[];
  functions?: string[];
  has_where?: boolean;
  copy?: StatementCommand["copy"] | null;
  param_count?: number;
  bare?: string[];
  computed?: string[];
  side_effects?: string[];
  dynamic_sql?: string[];
  calls?: string[][];
  operators?: string[][];
}

/** [sql, expected fields]; a field not given is not checked. */
const CASES: Array<[string, Expect]> = [
  // --- SELECT: joins, aliases, sub-selects, CTEs ---------------------------------------------------------
  [
    "SELECT u.id, o.total FROM users u JOIN orders o ON o.user_id = u.id WHERE u.created_at > now() - interval '1 day'",
    {
      statement: "select",
      category: "read",
      read: ["public.orders", "public.users"],
      write: [],
      columns: ["public.orders.total", "public.orders.user_id", "public.users.created_at", "public.users.id"],
      functions: ["now"],
      has_where: true,
      copy: null,
      param_count: 0,
      bare: ["public.orders.total", "public.users.id"],
      computed: [],
    },
  ],
  [
    "SELECT a.x, b.* FROM s.t1 a LEFT JOIN t2 AS b USING (id) WHERE a.y = $2",
    {
      read: ["public.t2", "s.t1"],
      columns: ["public.t2.*", "public.t2.id", "s.t1.id", "s.t1.x", "s.t1.y"],
      param_count: 2,
      bare: ["public.t2.*", "s.t1.x"],
    },
  ],
  [
    "SELECT id, name FROM users WHERE id IN (SELECT user_id FROM orders WHERE total > 100)",
    {
      read: ["public.orders", "public.users"],
      columns: ["public.orders.total", "public.orders.user_id", "public.users.id", "public.users.name"],
      bare: ["public.users.id", "public.users.name"],
    },
  ],
  [
    // correlated sub-select: the inner unqualified column belongs to the inner table, u.id to the outer one
    "SELECT id FROM users u WHERE EXISTS (SELECT 1 FROM orders WHERE orders.uid = u.id AND status = 'open')",
    {
      read: ["public.orders", "public.users"],
      columns: ["public.orders.status", "public.orders.uid", "public.users.id"],
    },
  ],
  [
    // several FROM items: an unqualified column cannot be attributed from the text
    "SELECT email, total FROM users, orders WHERE users.id = orders.user_id",
    {
      columns: ["email", "public.orders.user_id", "public.users.id", "total"],
      bare: ["email", "total"],
    },
  ],
  [
    // a CTE name is not a table; its columns are traced to the columns it was made of
    "WITH recent AS (SELECT user_id, max(created_at) AS last FROM orders GROUP BY user_id) " +
      "SELECT u.email, r.last FROM users u JOIN recent r ON r.user_id = u.id",
    {
      read: ["public.orders", "public.users"],
      columns: [
        "public.orders.created_at",
        "public.orders.user_id",
        "public.users.email",
        "public.users.id",
        "recent.last",
        "recent.user_id",
      ],
      functions: ["max"],
      bare: ["public.orders.user_id", "public.users.email", "recent.last"],
      computed: ["public.orders.created_at"],
    },
  ],
  [
    // a CTE shadows a table of the same name unless the reference is schema-qualified
    "WITH users AS (SELECT 1 AS id) SELECT u.id, p.id FROM users u, public.users p",
    { read: ["public.users"], columns: ["public.users.id", "users.id"] },
  ],
  [
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT n FROM r",
    { read: [], write: [], columns: ["r.n"] },
  ],
  [
    "SELECT t.a, z.total FROM users AS t, LATERAL (SELECT sum(o.total) AS total FROM orders o WHERE o.uid = t.id) z",
    {
      read: ["public.orders", "public.users"],
      columns: ["public.orders.total", "public.orders.uid", "public.users.a", "public.users.id", "z.total"],
      functions: ["sum"],
    },
  ],
  ["SELECT count(*) FROM users", { columns: [], functions: ["count"], bare: [], computed: [] }],
  [
    // ORDER BY an output alias is not a column
    "SELECT lower(email) AS e FROM users ORDER BY e",
    { columns: ["public.users.email"], functions: ["lower"], computed: ["public.users.email"] },
  ],
  ["TABLE users", { statement: "select", read: ["public.users"], columns: ["public.users.*"] }],
  ["VALUES (1, 'a'), (2, 'b')", { statement: "select", category: "read", read: [], columns: [] }],
  [
    "SELECT ssn FROM users UNION SELECT ssn FROM customers",
    {
      read: ["public.customers", "public.users"],
      bare: [],
      computed: ["public.customers.ssn", "public.users.ssn"],
    },
  ],

  // --- writes ---------------------------------------------------------------------------------------------
  [
    "INSERT INTO archive (id, ssn) SELECT id, ssn FROM users WHERE deleted",
    {
      statement: "insert",
      category: "write",
      read: ["public.users"],
      write: ["public.archive"],
      columns: [
        "public.archive.id",
        "public.archive.ssn",
        "public.users.deleted",
        "public.users.id",
        "public.users.ssn",
      ],
      has_where: true,
      // the selected values are stored in another table, unmasked: computed
      computed: ["public.users.id", "public.users.ssn"],
    },
  ],
  [
    "INSERT INTO users (id, email) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET email = excluded.email RETURNING id, email",
    {
      statement: "insert",
      write: ["public.users"],
      read: [],
      columns: ["public.users.email", "public.users.id"],
      param_count: 2,
      bare: ["public.users.email", "public.users.id"],
      computed: [],
    },
  ],
  [
    "INSERT INTO users VALUES (1, 'x'), (2, 'y')",
    {
      statement: "insert",
      read: [],
      write: ["public.users"],
      columns: ["public.users.*"],
      bare: [],
      computed: [],
    },
  ],
  [
    "UPDATE accounts SET balance = balance - $1 WHERE id = $2",
    {
      statement: "update",
      category: "write",
      read: [],
      write: ["public.accounts"],
      columns: ["public.accounts.balance", "public.accounts.id"],
      has_where: true,
      param_count: 2,
      computed: [],
    },
  ],
  ["UPDATE accounts SET balance = 0", { statement: "update", has_where: false, write: ["public.accounts"] }],
  ["UPDATE accounts SET balance = 0 WHERE CURRENT OF c", { statement: "update", has_where: true }],
  [
    "UPDATE users u SET nickname = o.ssn FROM other o WHERE o.id = u.id",
    {
      read: ["public.other"],
      write: ["public.users"],
      // another table's column stored in this one: computed
      computed: ["public.other.ssn"],
    },
  ],
  [
    "DELETE FROM sessions",
    { statement: "delete", category: "write", has_where: false, write: ["public.sessions"] },
  ],
  [
    "DELETE FROM sessions s USING users u WHERE s.user_id = u.id AND u.banned RETURNING s.*",
    {
      statement: "delete",
      has_where: true,
      read: ["public.users"],
      write: ["public.sessions"],
      columns: ["public.sessions.*", "public.sessions.user_id", "public.users.banned", "public.users.id"],
      bare: ["public.sessions.*"],
    },
  ],
  [
    "MERGE INTO stock t USING deliveries d ON t.item = d.item " +
      "WHEN MATCHED THEN UPDATE SET qty = t.qty + d.qty WHEN NOT MATCHED THEN INSERT (item, qty) VALUES (d.item, d.qty)",
    {
      statement: "merge",
      category: "write",
      read: ["public.deliveries"],
      write: ["public.stock"],
      columns: ["public.deliveries.item", "public.deliveries.qty", "public.stock.item", "public.stock.qty"],
      has_where: true,
    },
  ],
  ["TRUNCATE a, s.b", { statement: "truncate", category: "write", read: [], write: ["public.a", "s.b"] }],
  [
    "SELECT * FROM orders WHERE id = 1 FOR UPDATE",
    { statement: "select", category: "write", read: ["public.orders"] },
  ],
  ["SELECT id FROM jobs FOR SHARE SKIP LOCKED", { category: "write" }],
  [
    "SELECT id INTO tmp_users FROM users",
    { statement: "select", category: "write", read: ["public.users"], write: ["public.tmp_users"] },
  ],
  [
    "WITH d AS (DELETE FROM users WHERE id = 1 RETURNING *) SELECT * FROM d",
    { statement: "select", category: "write", read: [], write: ["public.users"], has_where: true },
  ],
  [
    // an unbounded DELETE inside a CTE is still a DELETE without WHERE
    "WITH d AS (DELETE FROM users RETURNING id) SELECT count(*) FROM d",
    { statement: "select", category: "write", write: ["public.users"], has_where: false },
  ],
  ["LOCK TABLE a IN ACCESS EXCLUSIVE MODE", { statement: "lock", category: "write", read: ["public.a"] }],

  // --- COPY -----------------------------------------------------------------------------------------------
  [
    "COPY users (id, email) TO STDOUT WITH (FORMAT csv)",
    {
      statement: "copy",
      category: "read",
      read: ["public.users"],
      write: [],
      columns: ["public.users.email", "public.users.id"],
      copy: {
        direction: "to",
        program: false,
        format: "csv",
        table: "public.users",
        columns: ["id", "email"],
      },
      bare: ["public.users.email", "public.users.id"],
    },
  ],
  [
    "COPY users FROM STDIN",
    {
      category: "write",
      read: [],
      write: ["public.users"],
      columns: ["public.users.*"],
      copy: { direction: "from", program: false, format: "text", table: "public.users" },
    },
  ],
  [
    "COPY s.t FROM PROGRAM 'curl http://x' WITH (FORMAT binary)",
    {
      category: "write",
      write: ["s.t"],
      copy: { direction: "from", program: true, format: "binary", table: "s.t" },
    },
  ],
  [
    "COPY (SELECT id, upper(email) FROM users) TO STDOUT",
    {
      category: "read",
      read: ["public.users"],
      functions: ["upper"],
      copy: { direction: "to", program: false, format: "text", query: true },
      // a COPY stream has no RowDescription: every output counts as computed
      bare: [],
      computed: ["public.users.email", "public.users.id"],
    },
  ],
  [
    "COPY (DELETE FROM users RETURNING *) TO STDOUT CSV",
    {
      category: "write",
      write: ["public.users"],
      has_where: false,
      copy: { direction: "to", program: false, format: "csv", query: true },
    },
  ],

  // --- DDL --------------------------------------------------------------------------------------------------
  [
    "CREATE TABLE s.t (id int PRIMARY KEY, name text CHECK (length(name) > 0), uid int REFERENCES users(id))",
    {
      statement: "create_table",
      category: "ddl",
      read: ["public.users"],
      write: ["s.t"],
      columns: ["s.t.name"],
      functions: ["length"],
    },
  ],
  [
    "ALTER TABLE users ADD COLUMN age int",
    { statement: "alter_table", category: "ddl", write: ["public.users"] },
  ],
  [
    "ALTER TABLE users RENAME TO people",
    { statement: "alter_table", category: "ddl", write: ["public.users"] },
  ],
  ["ALTER INDEX i RENAME TO j", { statement: "alter_index", category: "ddl" }],
  ["DROP TABLE IF EXISTS a, s.b CASCADE", { statement: "drop", category: "ddl", write: ["public.a", "s.b"] }],
  ["DROP FUNCTION f(int)", { statement: "drop", category: "ddl", write: [], functions: [] }],
  ["DROP DATABASE orders", { statement: "drop", category: "ddl" }],
  [
    "CREATE INDEX CONCURRENTLY i ON s.t USING btree (lower(name), id)",
    {
      statement: "create_index",
      category: "ddl",
      write: ["s.t"],
      columns: ["s.t.id", "s.t.name"],
      functions: ["lower"],
    },
  ],
  [
    "CREATE TABLE t2 AS SELECT * FROM users",
    { statement: "create_table_as", category: "ddl", read: ["public.users"], write: ["public.t2"] },
  ],
  [
    "CREATE VIEW v AS SELECT ssn FROM users",
    { statement: "create_view", category: "ddl", write: ["public.v"] },
  ],
  ["CREATE MATERIALIZED VIEW mv AS SELECT 1", { statement: "create_materialized_view", category: "ddl" }],
  [
    "REFRESH MATERIALIZED VIEW mv",
    { statement: "refresh_materialized_view", category: "write", write: ["public.mv"] },
  ],
  [
    "CREATE FUNCTION f(a int) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT $1 + 1; END",
    { statement: "create_function", category: "ddl", param_count: 0 },
  ],
  ["CREATE PROCEDURE p() LANGUAGE sql AS $$ SELECT 1 $$", { statement: "create_procedure", category: "ddl" }],
  ["CREATE SCHEMA billing", { statement: "create_schema", category: "ddl" }],
  ["CREATE EXTENSION pgcrypto", { statement: "create_extension", category: "ddl" }],
  ["COMMENT ON TABLE users IS 'people'", { statement: "comment", category: "ddl" }],

  // --- DCL, administration, session, transactions ------------------------------------------------------------
  ["GRANT SELECT ON users TO bob", { statement: "grant", category: "dcl", read: ["public.users"] }],
  ["REVOKE ALL ON ALL TABLES IN SCHEMA public FROM bob", { statement: "revoke", category: "dcl" }],
  ["GRANT admin TO bob", { statement: "grant", category: "dcl" }],
  ["CREATE ROLE intern LOGIN", { statement: "create_role", category: "dcl" }],
  ["DROP ROLE intern", { statement: "drop", category: "dcl" }],
  ["ALTER SYSTEM SET work_mem = '1GB'", { statement: "alter_system", category: "admin" }],
  [
    "VACUUM (FULL) users, orders (total)",
    { statement: "vacuum", category: "admin", columns: ["public.orders.total"] },
  ],
  ["ANALYZE users", { statement: "analyze", category: "admin", read: ["public.users"] }],
  ["CHECKPOINT", { statement: "checkpoint", category: "admin" }],
  ["REINDEX TABLE users", { statement: "reindex", category: "admin" }],
  ["SET search_path = a, b", { statement: "set", category: "session" }],
  ["SET LOCAL statement_timeout = '5s'", { statement: "set", category: "session" }],
  ["SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", { statement: "set", category: "session" }],
  ["SET ROLE admin", { statement: "set_role", category: "dcl" }],
  ["SET SESSION AUTHORIZATION postgres", { statement: "set_session_authorization", category: "dcl" }],
  ["RESET ROLE", { statement: "reset", category: "session" }],
  ["SHOW work_mem", { statement: "show", category: "session" }],
  ["RESET ALL", { statement: "reset", category: "session" }],
  ["DISCARD ALL", { statement: "discard", category: "session" }],
  ["LISTEN jobs", { statement: "listen", category: "session" }],
  ["NOTIFY jobs, 'go'", { statement: "notify", category: "write" }],
  ["BEGIN", { statement: "begin", category: "transaction" }],
  ["START TRANSACTION ISOLATION LEVEL SERIALIZABLE", { statement: "begin", category: "transaction" }],
  ["COMMIT", { statement: "commit", category: "transaction" }],
  ["END", { statement: "commit", category: "transaction" }],
  ["ROLLBACK", { statement: "rollback", category: "transaction" }],
  ["SAVEPOINT a", { statement: "savepoint", category: "transaction" }],
  ["RELEASE SAVEPOINT a", { statement: "release", category: "transaction" }],
  ["ROLLBACK TO SAVEPOINT a", { statement: "rollback_to_savepoint", category: "transaction" }],
  ["PREPARE TRANSACTION 'tx1'", { statement: "prepare_transaction", category: "transaction" }],
  ["COMMIT PREPARED 'tx1'", { statement: "commit_prepared", category: "transaction" }],

  // --- statements around statements ------------------------------------------------------------------------
  [
    // EXPLAIN ANALYZE runs the DELETE: a write without WHERE
    "EXPLAIN ANALYZE DELETE FROM users",
    { statement: "explain", category: "write", read: [], write: ["public.users"], has_where: false },
  ],
  [
    // plain EXPLAIN only plans it
    "EXPLAIN DELETE FROM users",
    { statement: "explain", category: "read", read: ["public.users"], write: [], has_where: true },
  ],
  ["EXPLAIN (ANALYZE false, COSTS off) DELETE FROM users", { category: "read", write: [] }],
  ["EXPLAIN (ANALYZE, BUFFERS) SELECT * FROM users", { category: "read", read: ["public.users"] }],
  [
    "PREPARE del (int) AS DELETE FROM t WHERE id = $1",
    { statement: "prepare", category: "write", write: ["public.t"], param_count: 0 },
  ],
  ["EXECUTE del(1)", { statement: "execute", category: "other" }],
  [
    "DECLARE c CURSOR FOR SELECT ssn FROM users",
    { statement: "declare_cursor", category: "read", read: ["public.users"], computed: ["public.users.ssn"] },
  ],
  ["FETCH 10 FROM c", { statement: "fetch", category: "read" }],
  ["CLOSE c", { statement: "close", category: "session" }],
  ["DO $$ BEGIN PERFORM pg_sleep(1); END $$", { statement: "do", category: "other", functions: [] }],
  [
    "CALL archive_orders(2024, $1)",
    { statement: "call", category: "write", functions: ["archive_orders"], param_count: 1 },
  ],

  // --- functions -------------------------------------------------------------------------------------------
  [
    "SELECT pg_read_file('/etc/passwd'), pg_catalog.NOW(), \"Lower\"(x) FROM t",
    { functions: ["lower", "now", "pg_read_file"], columns: ["public.t.x"] },
  ],
  ["SELECT * FROM pg_catalog.pg_ls_dir('.')", { functions: ["pg_ls_dir"], read: [] }],
  [
    "SELECT set_config('role', 'admin', false)",
    { statement: "select", category: "write", functions: ["set_config"], side_effects: ["set_config"] },
  ],
  // --- functions: side effects, dynamic SQL, calls as written (what catalog resolution looks up) -------------
  [
    "SELECT nextval('s'), public.f(1), \"Weird\"(2), pg_advisory_xact_lock(1)",
    {
      category: "write",
      functions: ["f", "nextval", "pg_advisory_xact_lock", "weird"],
      side_effects: ["nextval", "pg_advisory_xact_lock"],
      dynamic_sql: [],
      calls: [["Weird"], ["nextval"], ["pg_advisory_xact_lock"], ["public", "f"]],
    },
  ],
  [
    "SELECT query_to_xml('select 1', true, true, ''), lower('A')",
    {
      category: "read",
      side_effects: [],
      dynamic_sql: ["query_to_xml"],
      calls: [["lower"], ["query_to_xml"]],
    },
  ],
  ["SELECT id FROM users WHERE id = 1", { category: "read", side_effects: [], dynamic_sql: [], calls: [] }],
  [
    'SELECT "a.b"(x) FROM t WHERE x OPERATOR(public.===) 1 AND y BETWEEN 1 AND 2 AND z <> 3',
    {
      calls: [["a.b"]],
      operators: [["<="], ["<>"], [">="], ["public", "==="]],
    },
  ],
  [
    "SELECT coalesce(a, b), count(DISTINCT c) FILTER (WHERE d > 0) OVER (PARTITION BY e) FROM t",
    { functions: ["count"], columns: ["public.t.a", "public.t.b", "public.t.c", "public.t.d", "public.t.e"] },
  ],

  // --- parameters, comments, whitespace, identifiers ------------------------------------------------------------
  ["SELECT $1::int, $3, $2", { param_count: 3 }],
  [
    "/* leading */ SELECT\n\t id -- trailing\n FROM\r\n  users\fWHERE /* inner */ id = 1",
    { statement: "select", read: ["public.users"], columns: ["public.users.id"] },
  ],
  [
    'SELECT "User Table".id FROM "User Table"',
    { read: ["public.User Table"], columns: ["public.User Table.id"] },
  ],
  [
    'SELECT "Naïve Ünïcode"."ß", größe FROM "Naïve Ünïcode"',
    { read: ["public.Naïve Ünïcode"], columns: ["public.Naïve Ünïcode.größe", "public.Naïve Ünïcode.ß"] },
  ],
  ["SELECT ID FROM Public.USERS", { read: ["public.users"], columns: ["public.users.id"] }],

  // --- masking ---------------------------------------------------------------------------------------------
  [
    "SELECT ssn, upper(email) AS e, t.* FROM users t",
    {
      columns: ["public.users.*", "public.users.email", "public.users.ssn"],
      bare: ["public.users.*", "public.users.ssn"],
      computed: ["public.users.email"],
    },
  ],
  ["SELECT row_to_json(u.*) FROM users u", { bare: [], computed: ["public.users.*"] }],
  ["SELECT row_to_json(u) FROM users u", { computed: ["public.users.*", "public.users.u"] }],
  [
    "WITH x AS (SELECT upper(ssn) AS s FROM users) SELECT s FROM x",
    { bare: ["x.s"], computed: ["public.users.ssn"] },
  ],
  [
    // a column renamed in a sub-select and computed outside it: traced back to ssn
    "SELECT upper(s) FROM (SELECT ssn AS s FROM users) q",
    { bare: ["public.users.ssn"], computed: ["public.users.ssn", "q.s"] },
  ],
  ["SELECT s FROM (SELECT ssn AS s FROM users) q", { bare: ["public.users.ssn", "q.s"], computed: [] }],
  ["SELECT (SELECT ssn FROM users LIMIT 1) AS x", { bare: [], computed: ["public.users.ssn"] }],
  ["SELECT x FROM (VALUES ((SELECT ssn FROM users LIMIT 1))) v(x)", { computed: ["public.users.ssn"] }],
  ["SELECT * FROM unnest(ARRAY(SELECT ssn FROM users)) x", { computed: ["public.users.ssn"] }],
  [
    "SELECT ssn::text, ssn || '', (ssn) FROM users",
    { bare: ["public.users.ssn"], computed: ["public.users.ssn"] },
  ],
  [
    // the merged column of FULL JOIN … USING is COALESCEd: no origin to mask by
    "SELECT ssn, email FROM users FULL JOIN customers USING (ssn)",
    { bare: ["email"], computed: ["ssn"] },
  ],
  [
    "UPDATE users SET ssn = '***' WHERE id = 1 RETURNING id, ssn",
    {
      bare: ["public.users.id", "public.users.ssn"],
      computed: [],
      columns: ["public.users.id", "public.users.ssn"],
    },
  ],
];

t.test(`the statement table (${CASES.length} statements)`, async (t) => {
  t.ok(CASES.length >= 60);
  for (const [sql, e] of CASES) {
    t.test(sql.length > 90 ? `${sql.slice(0, 87)}…` : sql, async (t) => {
      const s = one(t, sql);
      const c = s.command;
      if (e.statement !== undefined) t.equal(c.statement, e.statement, "statement");
      if (e.category !== undefined) t.equal(c.category, e.category, "category");
      if (e.read !== undefined) t.same(c.tables.read, e.read, "tables.read");
      if (e.write !== undefined) t.same(c.tables.write, e.write, "tables.write");
      if (e.columns !== undefined) t.same(c.columns, e.columns, "columns");
      if (e.functions !== undefined) t.same(c.functions, e.functions, "functions");
      if (e.has_where !== undefined) t.equal(c.has_where, e.has_where, "has_where");
      if (e.copy === null) t.notOk("copy" in c, "no copy field");
      else if (e.copy !== undefined) t.same(c.copy, e.copy, "copy");
      if (e.param_count !== undefined) t.equal(c.param_count, e.param_count, "param_count");
      if (e.bare !== undefined) t.same(s.masking.bare, e.bare, "masking.bare");
      if (e.computed !== undefined) t.same(s.masking.computed, e.computed, "masking.computed");
      if (e.side_effects !== undefined) t.same(c.side_effects, e.side_effects, "side_effects");
      if (e.dynamic_sql !== undefined) t.same(c.dynamic_sql, e.dynamic_sql, "dynamic_sql");
      if (e.calls !== undefined) t.same(s.calls, e.calls, "calls");
      if (e.operators !== undefined) t.same(s.operators, e.operators, "operators");
      t.same([c.views, c.user_functions], [[], []], "views and user_functions: filled by catalog resolution");
      // every command has exactly the contract's fields, and the text is the statement's own
      const keys = [
        "statement",
        "category",
        "tables",
        "columns",
        "functions",
        "has_where",
        "fingerprint",
        "param_count",
        "side_effects",
        "dynamic_sql",
        "views",
        "user_functions",
      ];
      t.same(Object.keys(c).sort(), [...keys, ...(c.copy ? ["copy"] : [])].sort(), "contract fields");
      t.match(c.fingerprint, /^[0-9a-f]{16}$/);
      // (the parser's statement location starts after leading comments)
      t.equal(s.text, sql.startsWith("/*") ? sql.slice(sql.indexOf("*/") + 3) : sql, "text");
    });
  }
});

t.test("the command is ready for the policy input; text and masking stay outside it", async (t) => {
  const s = one(t, "SELECT ssn FROM users WHERE id = $1");
  const input = { protocol: "postgres", command: s.command };
  const json = JSON.parse(JSON.stringify(input));
  t.notOk("text" in json.command);
  t.notOk("masking" in json.command);
  t.same(json.command.tables, { read: ["public.users"], write: [] });
  t.ok(Object.isFrozen(s) && Object.isFrozen(s.command) && Object.isFrozen(s.command.columns), "frozen");
});

t.test(
  "multi-statement strings: one command per statement, each with its own text and fingerprint",
  async (t) => {
    const sql =
      "BEGIN; UPDATE t SET a = 1 WHERE id = 2;\n  -- comment\n  DELETE FROM t ; SELECT 'é€😀' AS x;COMMIT";
    const a = analyzeSql(sql);
    if (!a.ok) throw new Error(a.error);
    t.same(
      a.statements.map((s) => s.command.statement),
      ["begin", "update", "delete", "select", "commit"],
    );
    t.same(
      a.statements.map((s) => s.text),
      ["BEGIN", "UPDATE t SET a = 1 WHERE id = 2", "DELETE FROM t ", "SELECT 'é€😀' AS x", "COMMIT"],
    );
    t.same(
      a.statements.map((s) => s.command.has_where),
      [true, true, false, true, true],
    );
    // each statement is analyzed exactly as if it had been sent alone
    for (const s of a.statements) {
      const alone = one(t, s.text);
      t.same(alone.command, s.command, `${s.text}: same command alone`);
    }
    t.equal(new Set(a.statements.map((s) => s.command.fingerprint)).size, 5, "distinct fingerprints");
  },
);

t.test(
  "fingerprints: literals, parameters, whitespace, comments and keyword case do not matter",
  async (t) => {
    const fp = (sql: string) => one(t, sql).command.fingerprint;
    const base = fp("SELECT id FROM users WHERE email = 'a@b.c' AND age > 30");
    t.equal(fp("select  id\nfrom USERS where EMAIL = 'x@y.z' /* c */ and age > 99 -- d"), base);
    t.equal(fp("SELECT id FROM users WHERE email = $1 AND age > $2"), base);
    t.not(fp("SELECT id FROM customers WHERE email = 'a@b.c' AND age > 30"), base, "another table");
    t.not(fp("SELECT name FROM users WHERE email = 'a@b.c' AND age > 30"), base, "another column");
    t.not(fp("SELECT id FROM users u WHERE email = 'a@b.c' AND age > 30"), base, "an alias");
    t.not(fp("SELECT a, b FROM t"), fp("SELECT b, a FROM t"), "list order matters");
    t.not(fp("DROP TABLE orders_2024_01"), fp("DROP TABLE orders_2025_02"), "digits in names matter");
    t.not(fp("COPY t TO PROGRAM 'cat'"), fp("COPY t TO PROGRAM 'rm -rf /'"), "a program is not a literal");
    // a difference 150 levels down still changes the fingerprint (libpg-query's stops at depth 100)
    const deep = (leaf: string) => `SELECT ${"(SELECT ".repeat(150)}${leaf}${")".repeat(150)}`;
    t.not(fp(deep("a")), fp(deep("b")), "deep difference");
  },
);

t.test("bad input: a clear error, never an exception", async (t) => {
  const err = (sql: string) => {
    const a = analyzeSql(sql);
    if (a.ok) throw new Error(`expected an error for ${JSON.stringify(sql.slice(0, 40))}`);
    return a;
  };
  t.same(err("SELEC 1"), { ok: false, error: 'syntax error at or near "SELEC" (position 1)', position: 1 });
  t.same(err("SELECT 1; SELECT FROM WHERE"), {
    ok: false,
    error: 'syntax error at or near "WHERE" (position 23)',
    position: 23,
  });
  t.same(err("SELECT 'é😀'; SELEC"), {
    ok: false,
    error: 'syntax error at or near "SELEC" (position 14)',
    position: 14,
  });
  t.match(err("SELECT 'abc").error, /^unterminated quoted string at or near "'abc" \(position 8\)$/);
  t.match(err("SELECT 1 /* open").error, /unterminated \/\* comment/);
  t.match(err("SELECT (").error, /^syntax error at end of input \(position 9\)$/);
  t.match(err("SELECT * FROM users WHERE").error, /^syntax error at end of input/);
  // the parser would stop at a NUL and analyze only "SELECT 1"
  t.same(err("SELECT 1\0; DROP TABLE users"), {
    ok: false,
    error: "the statement text contains a NUL character (position 9)",
    position: 9,
  });
  t.match(err("SELECT '\ud800'").error, /not valid Unicode/);
  t.equal(analyzerFailure(), null, "the analyzer is healthy");
});

t.test(
  "empty text and text with only comments: no statements (the proxy answers EmptyQueryResponse)",
  async (t) => {
    for (const sql of ["", "   \n\t", "-- nothing\n", "/* a /* nested */ comment */", ";", " ; ;; "]) {
      t.same(analyzeSql(sql), { ok: true, statements: [] }, JSON.stringify(sql));
    }
  },
);

t.test("huge statements: 1 MB analyzes, over the limit is refused without parsing", async (t) => {
  const rows: string[] = [];
  for (let i = 0; rows.length * 110 < 1_000_000; i++) rows.push(`(${i}, '${"x".repeat(100)}')`);
  const sql = `INSERT INTO events (id, payload) VALUES ${rows.join(",")}`;
  t.ok(sql.length > 1_000_000 && sql.length <= 1024 * 1024, `${sql.length} characters`);
  const s = one(t, sql);
  t.equal(s.command.statement, "insert");
  t.same(s.command.tables.write, ["public.events"]);
  t.equal(s.text.length, sql.length);

  const big = `SELECT '${"x".repeat(1024 * 1024)}'`;
  const a = analyzeSql(big);
  t.same(a, {
    ok: false,
    error: `the statement text is too long to analyze: ${big.length} characters, the limit is 1048576`,
    limit: "length",
  });
});

t.test("deeply nested statements are refused before the parser; the parser stays healthy", async (t) => {
  const shapes: Record<string, (n: number) => string> = {
    operators: (n) => `SELECT ${"1+".repeat(n)}1`,
    concat: (n) => `SELECT ${"'a' || ".repeat(n)}'a'`,
    "sub-selects": (n) => `SELECT ${"(SELECT ".repeat(n)}1${")".repeat(n)}`,
    "FROM sub-selects": (n) => `SELECT * FROM ${"(SELECT * FROM ".repeat(n)}t${") q".repeat(n)}`,
    functions: (n) => `SELECT ${"f(".repeat(n)}1${")".repeat(n)}`,
    unions: (n) => `SELECT 1${" UNION ALL SELECT a FROM t WHERE a AND b".repeat(n)}`,
    joins: (n) => `SELECT 1 FROM t0${" JOIN t ON a = b AND c".repeat(n)}`,
    cases: (n) => `SELECT ${"CASE WHEN a THEN ".repeat(n)}1${" END".repeat(n)}`,
    casts: (n) => `SELECT 1${"::int".repeat(n)}`,
    nots: (n) => `SELECT ${"NOT ".repeat(n)}true`,
  };
  // Warm the parser up first: V8 optimizes the wasm code after some thousands of calls, and optimized code uses
  // more stack per level — the guard's bound must hold for it.
  for (let r = 0; r < 300; r++)
    for (const g of Object.values(shapes)) analyzeSql(`${g(5 + (r % 40))} -- ${r}`);
  for (const [name, g] of Object.entries(shapes)) {
    // the deepest statement of this shape the guard lets through analyzes (or fails with a plain SQL error)
    let n = 8;
    while (depthExceededAt(g(n * 2)) < 0) n *= 2;
    let hi = n * 2;
    while (hi - n > 1) {
      const mid = (n + hi) >> 1;
      if (depthExceededAt(g(mid)) < 0) n = mid;
      else hi = mid;
    }
    const deepest = analyzeSql(g(n));
    t.ok(deepest.ok || !/internal|nested too deeply/.test(deepest.error), `${name}: ${n} levels analyze`);
    const over = analyzeSql(g(n + 1));
    t.match(
      over,
      { ok: false, error: /nested too deeply to analyze safely \(position \d+\)/, limit: "depth" },
      `${name}: refused`,
    );
    // far beyond: refused just as fast, without parsing
    t.match(analyzeSql(g(20_000)), { ok: false, error: /nested too deeply|too long/ });
  }
  t.equal(analyzerFailure(), null, "no internal parser failure");
  t.same(one(t, "SELECT a FROM b WHERE c = 1").command.columns, ["public.b.a", "public.b.c"], "still parses");
});

t.test("the guard skips literals, identifiers, dollar quotes and comments exactly", async (t) => {
  const parens = "(".repeat(400);
  for (const wrapped of [
    `'${parens}'`,
    `E'\\'${parens}'`,
    `e'it''s ${parens}'`,
    `"${parens}"`,
    `U&"${parens}"`,
    `$$${parens}$$`,
    `$tag$ $$ ${parens} $tag$`,
    `/* ${parens} /* nested */ ${parens} */ 1`,
    `-- ${parens}\n 1`,
    `B'0101' || X'FF' || N'${parens}'`,
  ]) {
    t.equal(depthExceededAt(`SELECT ${wrapped}`, 100), -1, wrapped.slice(0, 20));
  }
  // … and counts what is outside them
  t.ok(depthExceededAt(`SELECT '' || ${"(".repeat(30)}`, 100) > 0);
  t.ok(depthExceededAt(`SELECT E'\\'' || ${"1+".repeat(200)}1`, 100) > 0, "an escaped quote ends nothing");
  t.ok(depthExceededAt(`SELECT a$$b, ${"1+".repeat(200)}1`, 100) > 0, "$$ inside an identifier is no quote");
  t.ok(depthExceededAt(`SELECT $1, ${"1+".repeat(200)}1 -- $2`, 100) > 0, "parameters are no quotes");
  // flat lists cost nothing however long they are
  t.equal(depthExceededAt(`SELECT * FROM t WHERE id IN (${"1,".repeat(100_000)}1)`), -1);
  t.equal(depthExceededAt(`SELECT 1 FROM t WHERE ${"a = 1 OR ".repeat(10_000)}true`), -1);
  t.equal(depthExceededAt(`SELECT CASE ${"WHEN a = 1 THEN 2 ".repeat(5_000)}END`), -1);
  t.equal(depthExceededAt(`INSERT INTO t VALUES ${"(1, 'a', now()), ".repeat(20_000)}(1, 'a', now())`), -1);
  // each statement of a multi-statement string is bounded on its own
  t.equal(depthExceededAt(`SELECT ${"1+".repeat(900)}1;`.repeat(10)), -1);
});

t.test("the cache: the same text gives the same (frozen) object; it stays bounded", async (t) => {
  const sql = "SELECT id FROM users WHERE id = $1";
  const a = analyzeSql(sql);
  t.equal(analyzeSql(sql), a, "a hit returns the cached object");
  t.equal(analyzeSql(`${sql} `) === a, false, "another text is another entry");
  t.ok(Object.isFrozen(a));
  const err = analyzeSql("SELEC 1");
  t.equal(analyzeSql("SELEC 1"), err, "errors are cached too");

  await initAnalyzer({ cacheEntries: 100, cacheChars: 10_000 });
  for (let i = 0; i < 1000; i++) analyzeSql(`SELECT ${i}`);
  t.ok(analyzerCacheStats().entries <= 100, `entries ${analyzerCacheStats().entries}`);
  for (let i = 0; i < 100; i++) analyzeSql(`SELECT '${"y".repeat(200)}', ${i}`);
  t.ok(analyzerCacheStats().chars <= 10_000, `chars ${analyzerCacheStats().chars}`);
  // recently used entries survive a burst of new ones
  const keep = analyzeSql("SELECT 'keep'");
  for (let i = 0; i < 40; i++) {
    analyzeSql(`SELECT ${i + 5000}`);
    t.equal(analyzeSql("SELECT 'keep'"), keep);
  }
  await initAnalyzer();
});
