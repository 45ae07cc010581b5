// Statements that differ only in literal values share one analysis; anything the shape lexer is unsure about
// is left to the parser.
import t from "tap";
import { analyzeSql, initAnalyzer } from "../../src/proxy/postgres/analysis/index.js";
import { literalShape } from "../../src/proxy/postgres/analysis/shape.js";

t.test("literal shapes", async (t) => {
  t.equal(
    literalShape("SELECT abalance FROM pgbench_accounts WHERE aid = 17;"),
    "SELECT abalance FROM pgbench_accounts WHERE aid = ?;",
  );
  t.equal(
    literalShape("select * from t1 where a = 'x''y' and b > 1.5e-3"),
    "select * from t1 where a = ? and b > ?",
  );
  t.equal(literalShape('select "col 1" from "t2" where id = $1'), null, "nothing to replace: null");
  t.equal(
    literalShape('select "a\'b" from t where id = 3'),
    'select "a\'b" from t where id = ?',
    "quotes inside identifiers are not strings",
  );
  t.equal(literalShape("select 1 -- 2\n, 3"), "select ? -- 2\n, ?");
  for (const unsure of [
    "select E'a\\'b'",
    "select 'a\\'",
    "select $$x$$",
    "select x'1f'",
    "select U&'d'",
    "select 0x1F",
    "select 1 /* 2 */",
    "select 'open",
    'select "open',
  ]) {
    t.equal(literalShape(unsure), null, unsure);
  }
  t.not(literalShape("DELETE FROM t WHERE id = 1"), literalShape("DELETE FROM t WHERE id = 1 OR 1 = 1"));
});

t.test("a statement with other literals reuses the analysis with its own text", async (t) => {
  await initAnalyzer();
  const a = analyzeSql("SELECT name, ssn FROM users WHERE id = 1");
  const b = analyzeSql("SELECT name, ssn FROM users WHERE id = 2;");
  t.ok(a.ok && b.ok);
  if (!a.ok || !b.ok) return;
  t.same(b.statements[0]?.command, a.statements[0]?.command);
  t.equal(b.statements[0]?.text, "SELECT name, ssn FROM users WHERE id = 2");
  const c = analyzeSql("SELECT name, ssn FROM users WHERE id = 3 OR 1 = 1");
  t.ok(c.ok && c.statements[0]?.text.endsWith("OR 1 = 1"), "a different shape is analyzed by the parser");
});
