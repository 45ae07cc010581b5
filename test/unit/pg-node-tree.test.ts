// Reading PostgreSQL's pg_node_tree text (a view's stored query) and tracing a view's output columns. The
// sample is PostgreSQL's own output for
//   CREATE VIEW v AS SELECT u.id, u.ssn AS s, upper(u.name) AS n, (SELECT 1) AS q FROM users u
// trimmed of fields the reader does not use; the integration test pg-objects.test.ts reads real ones.
import t from "tap";
import { readNodeTree, viewOutputs } from "../../src/proxy/postgres/node-tree.js";

const RTE = (relid: number, kind = "0") =>
  `{RANGETBLENTRY :alias <> :eref {ALIAS :aliasname u :colnames ("id" "na\\"me" "ssn")} :rtekind ${kind} :relid ${relid} :relkind r :selectedCols (b 8 9)}`;
const VAR = (varno: number, attno: number, up = 0) =>
  `{VAR :varno ${varno} :varattno ${attno} :vartype 23 :varlevelsup ${up} :location 7}`;
const TE = (expr: string, resno: number, tbl: number, col: number, junk = false) =>
  `{TARGETENTRY :expr ${expr} :resno ${resno} :resname c\\ ${resno} :ressortgroupref 0 :resorigtbl ${tbl} :resorigcol ${col} :resjunk ${junk}}`;

const SAMPLE = `({QUERY :commandType 1 :utilityStmt <> :rtable (${RTE(16391)} ${RTE(16391)} ${RTE(16385)}) :targetList (${[
  TE(VAR(3, 1), 1, 16385, 1),
  TE(VAR(3, 3), 2, 16385, 3),
  TE(`{FUNCEXPR :funcid 871 :args (${VAR(3, 2)}) :location 180}`, 3, 0, 0),
  TE("{SUBLINK :subLinkType 4 :subselect {QUERY :commandType 1}}", 4, 0, 0),
  TE(
    `{CONST :consttype 23 :constlen 4 :constbyval true :constisnull false :location 9 :constvalue 4 [ 1 0 0 0 0 0 0 0 ]}`,
    5,
    0,
    0,
  ),
  TE(VAR(3, 1), 6, 16385, 1, true),
].join(" ")}) :setOperations <>})`;

t.test("a view's outputs: passed through, computed from known columns, untraceable", async (t) => {
  const outs = viewOutputs(SAMPLE);
  t.equal(outs.length, 5, "junk entries are not output columns");
  t.same(outs[0], { origin: [16385, 1], sources: [[16385, 1]] });
  t.same(outs[1], { origin: [16385, 3], sources: [[16385, 3]] });
  t.same(outs[2], { origin: null, sources: [[16385, 2]] }, "upper(name) is made of name");
  t.same(outs[3], { origin: null, sources: null }, "a sub-select is not traced");
  t.same(outs[4], { origin: null, sources: [] }, "a constant reads nothing");
});

t.test("a VAR of an outer query or of a join alias cannot be traced", async (t) => {
  const outer = `({QUERY :rtable (${RTE(1)}) :targetList (${TE(`{OPEXPR :args (${VAR(1, 1, 1)})}`, 1, 0, 0)})})`;
  t.same(viewOutputs(outer)[0]?.sources, null);
  const join = `({QUERY :rtable (${RTE(1)} ${RTE(0, "2")}) :targetList (${TE(`{OPEXPR :args (${VAR(2, 1)})}`, 1, 0, 0)})})`;
  t.same(viewOutputs(join)[0]?.sources, null);
});

t.test("the reader keeps escapes, strings, NULLs and runs of words", async (t) => {
  const v = readNodeTree(`{A :x a\\ b :y "q\\"uote" :z <> :w 4 [ 1 2 ] :l (1 2 {B :k v})}`);
  t.same(v, {
    type: "A",
    fields: {
      x: "a b",
      y: 'q"uote',
      z: null,
      w: ["4", "[", "1", "2", "]"],
      l: ["1", "2", { type: "B", fields: { k: "v" } }],
    },
  });
});

t.test("malformed text throws, so the caller treats the view as opaque", async (t) => {
  for (const bad of ["", "{", "({QUERY :a 1)", "{QUERY a 1}", '{A :s "open}', "{A :x 1} extra", ")", "{}"]) {
    t.throws(() => readNodeTree(bad), JSON.stringify(bad));
  }
  t.throws(() => viewOutputs("({FOO :a 1})"), /not one query/);
  t.throws(() => viewOutputs("({QUERY :targetList ({VAR :varno 1})})"), /TARGETENTRY/);
});
