// Queries and data-modifying statements: SELECT (target lists, FROM items, set operations, ORDER BY / GROUP BY),
// INSERT, UPDATE, DELETE, MERGE (their targets, SET lists, ON CONFLICT, RETURNING) and COPY.
//
// Read or written. Written: the target of INSERT/UPDATE/DELETE/MERGE (also inside a CTE), COPY FROM and SELECT
// INTO; a row-locking clause (FOR UPDATE / FOR SHARE) makes a read a write. Every other relation named is read.
// A CTE name is not a table.
//
// Masking. `bare` and `computed` describe where column values go; each entry is written like a `columns` entry.
// - bare: a column output as itself by a target list (SELECT, RETURNING) whose result PostgreSQL attributes to
//   the column (RowDescription's table OID and attribute number), so the proxy can mask it in the result.
// - computed: a column whose value leaves through something that cannot be masked that way: any target-list
//   expression that is not a plain column (functions, casts, operators, sub-selects, whole-row references),
//   at any depth — and also every target list whose result PostgreSQL does not attribute (UNION/INTERSECT/
//   EXCEPT branches, FULL JOIN … USING merged columns, VALUES, COPY (query) TO, the query of a cursor or a
//   prepared statement, whose rows come back later without this analysis) or that stores values elsewhere
//   (INSERT … SELECT, UPDATE … SET, MERGE actions, SELECT INTO, CREATE TABLE AS, CREATE VIEW), where a masked
//   value would be copied somewhere it is no longer masked. Sub-selects in FROM and CTEs pass a column through
//   bare; an outer expression over such a column is traced back to the columns it came from.
import type { Kind } from "./kinds.js";
import {
  type Body,
  COMPUTED,
  colName,
  newScope,
  Out,
  type OutputColumn,
  type Rel,
  relPrefix,
  type Scope,
  ScopeWalk,
} from "./scope.js";

export interface CopyCommand {
  direction: "to" | "from";
  program: boolean;
  format: "text" | "csv" | "binary";
  table?: string;
  columns?: string[];
  query?: boolean;
}

/** The column name PostgreSQL gives an output without an alias (the part that matters: columns and `*`). */
function outputName(val: Body | undefined): string | null {
  const cr = val?.ColumnRef as Body | undefined;
  if (!cr) return null;
  const fields = cr.fields as Body[];
  const last = fields[fields.length - 1] as Body;
  if (last.A_Star) return "*";
  return ((last.String as Body | undefined)?.sval as string | undefined) ?? null;
}

function firstFunctionName(rf: Body): string {
  const first = (rf.functions as Body[] | undefined)?.[0]?.List as Body | undefined;
  const call = (first?.items as Body[] | undefined)?.[0]?.FuncCall as Body | undefined;
  const fn = call?.funcname as Body[] | undefined;
  return ((fn?.[fn.length - 1]?.String as Body | undefined)?.sval as string | undefined) ?? "";
}

/** Adds queries, data-modifying statements and COPY to the walk; the other statements are in utility.ts. */
export abstract class DmlWalk extends ScopeWalk {
  /** Set by COPY. */
  copy: CopyCommand | null = null;

  // --- queries ---------------------------------------------------------------------------------------------

  targetList(list: unknown, sc: Scope, m: number, out: Out): OutputColumn[] {
    const outputs: OutputColumn[] = [];
    if (!Array.isArray(list)) return outputs;
    sc.outputNames ??= new Set();
    for (const item of list as Body[]) {
      const rt = item.ResTarget as Body | undefined;
      if (!rt) {
        this.visit(item, sc, m);
        continue;
      }
      const saved = this.collect;
      const sources: string[] = [];
      if (out === Out.Derived) this.collect = sources;
      const val = rt.val as Body | undefined;
      const colRef = val?.ColumnRef as Body | undefined;
      if (out === Out.Sink) this.visit(val, sc, m | COMPUTED);
      else if (out === Out.Hidden) this.visit(val, sc, m);
      else if (colRef) this.columnRef(colRef, sc, m, true);
      else this.visit(val, sc, m | COMPUTED);
      this.collect = saved;
      if (saved) saved.push(...sources);
      const name = (rt.name as string | undefined) ?? outputName(val);
      if (rt.name) sc.outputNames.add(rt.name as string);
      outputs.push({ name, sources });
    }
    return outputs;
  }

  select(s: Body, parent: Scope, m: number, out: Out): OutputColumn[] | null {
    const sc = newScope(parent);
    if (s.withClause) this.withClause(s.withClause, sc, m);
    if (s.intoClause) {
      // SELECT … INTO creates a table and writes the rows into it.
      const into = s.intoClause as Body;
      this.tableRef(into.rel as Body, sc, true);
      this.writes = true;
      out = Out.Sink;
    }
    // FOR UPDATE / FOR SHARE lock rows like an UPDATE does (lockedRels name FROM items, not tables).
    if (s.lockingClause) this.writes = true;
    const op = s.op as string | undefined;
    if (op && op !== "SETOP_NONE") {
      // UNION / INTERSECT / EXCEPT: PostgreSQL attributes no output column to a source column.
      const branch = out === Out.Hidden ? Out.Hidden : Out.Sink;
      this.select(s.larg as Body, sc, m, branch);
      this.select(s.rarg as Body, sc, m, branch);
      this.visit(s.sortClause, sc, m);
      this.visit(s.limitOffset, sc, m);
      this.visit(s.limitCount, sc, m);
      return null;
    }
    const hidden = out === Out.Hidden;
    for (const item of (s.fromClause as unknown[] | undefined) ?? []) this.fromItem(item, sc, m, hidden);
    // VALUES rows have no source columns: whatever they compute is output as is.
    if (s.valuesLists) this.visit(s.valuesLists, sc, hidden ? m : m | COMPUTED);
    const outputs = this.targetList(s.targetList, sc, m, out);
    this.visit(s.whereClause, sc, m);
    this.visit(s.havingClause, sc, m);
    this.visit(s.windowClause, sc, m);
    this.visit(s.distinctClause, sc, m);
    this.sortOrGroup(s.groupClause, sc, m);
    this.sortOrGroup(s.sortClause, sc, m);
    this.visit(s.limitOffset, sc, m);
    this.visit(s.limitCount, sc, m);
    return outputs;
  }

  /** ORDER BY / GROUP BY items: a bare name there may be an output column alias, not a column. */
  sortOrGroup(list: unknown, sc: Scope, m: number): void {
    if (!Array.isArray(list)) return;
    for (const item of list as Body[]) {
      const node = ((item.SortBy as Body | undefined)?.node as Body | undefined) ?? item;
      const fields = (node.ColumnRef as Body | undefined)?.fields as Body[] | undefined;
      const name = fields?.length === 1 ? (fields[0]?.String as Body | undefined)?.sval : undefined;
      if (typeof name === "string" && sc.outputNames?.has(name)) continue;
      this.visit(item, sc, m);
    }
  }

  /** One FROM item: adds the relations it makes visible to `sc`. */
  fromItem(item: unknown, sc: Scope, m: number, hidden: boolean): void {
    if (typeof item !== "object" || item === null) return;
    const o = item as Body;
    if (o.RangeVar) {
      sc.rels.push(this.tableRef(o.RangeVar as Body, sc, false));
      return;
    }
    if (o.RangeSubselect) {
      const rs = o.RangeSubselect as Body;
      const alias = rs.alias as Body | undefined;
      const name = (alias?.aliasname as string | undefined) ?? "";
      const outs = this.query(rs.subquery, sc, m, hidden ? Out.Hidden : Out.Derived);
      this.registerDerived(name, outs, alias?.colnames as Body[] | undefined);
      sc.rels.push({ name, table: null, derived: name, qualifiedOnly: false });
      return;
    }
    if (o.JoinExpr) {
      const j = o.JoinExpr as Body;
      const before = sc.rels.length;
      this.fromItem(j.larg, sc, m, hidden);
      const middle = sc.rels.length;
      this.fromItem(j.rarg, sc, m, hidden);
      const using = j.usingClause as Body[] | undefined;
      if (using) {
        const left = middle - before === 1 ? (sc.rels[before] as Rel) : null;
        const right = sc.rels.length - middle === 1 ? (sc.rels[middle] as Rel) : null;
        for (const u of using) {
          const col = (u.String as Body).sval as string;
          if (left) this.record(colName(relPrefix(left), col), m, false);
          if (right) this.record(colName(relPrefix(right), col), m, false);
          if (!left && !right) this.record(col, m, false);
        }
      }
      if (j.jointype === "JOIN_FULL" && (using || j.isNatural)) {
        sc.fullJoin ??= new Set();
        if (j.isNatural) sc.fullJoin.add("*");
        for (const u of using ?? []) sc.fullJoin.add((u.String as Body).sval as string);
      }
      this.visit(j.quals, sc, m);
      const alias = (j.alias as Body | undefined)?.aliasname as string | undefined;
      if (alias) sc.rels.push({ name: alias, table: null, derived: null, qualifiedOnly: true });
      const usingAlias = (j.join_using_alias as Body | undefined)?.aliasname as string | undefined;
      if (usingAlias) sc.rels.push({ name: usingAlias, table: null, derived: null, qualifiedOnly: true });
      return;
    }
    if (o.RangeFunction) {
      // Function arguments reach the output through the function's result.
      const rf = o.RangeFunction as Body;
      this.visit(rf.functions, sc, hidden ? m : m | COMPUTED);
      const alias = (rf.alias as Body | undefined)?.aliasname as string | undefined;
      sc.rels.push({
        name: alias ?? firstFunctionName(rf),
        table: null,
        derived: null,
        qualifiedOnly: false,
      });
      return;
    }
    if (o.RangeTableSample) {
      const ts = o.RangeTableSample as Body;
      this.fromItem(ts.relation, sc, m, hidden);
      this.visit(ts.args, sc, m);
      this.visit(ts.repeatable, sc, m);
      return;
    }
    // XMLTABLE, JSON_TABLE, …: their expressions are output through the function's result.
    const inner = Object.values(o)[0] as Body | undefined;
    this.visit(item, sc, hidden ? m : m | COMPUTED);
    const alias = (inner?.alias as Body | undefined)?.aliasname as string | undefined;
    sc.rels.push({ name: alias ?? "", table: null, derived: null, qualifiedOnly: false });
  }

  // --- data-modifying statements ---------------------------------------------------------------------------

  /** The target of INSERT/UPDATE/DELETE/MERGE: written, visible by its alias. */
  target(s: Body, sc: Scope): Rel {
    this.writes = true;
    const rel = this.tableRef(s.relation as Body, sc, true);
    sc.rels.push(rel);
    return rel;
  }

  /** Column names of the target given as ResTarget.name (INSERT columns, UPDATE SET, MERGE actions). */
  targetColumns(list: unknown, rel: Rel, sc: Scope, m: number): void {
    if (!Array.isArray(list)) return;
    for (const item of list as Body[]) {
      const rt = item.ResTarget as Body | undefined;
      if (!rt) continue;
      const self = rt.name ? colName(relPrefix(rel), rt.name as string) : null;
      if (self) this.record(self, m, false);
      this.visit(rt.indirection, sc, m);
      if (!rt.val) continue;
      // The value is stored in the table: a masked column copied there would be readable unmasked — unless it
      // is stored back into itself (SET balance = balance - 1, SET email = excluded.email).
      const saved = this.collect;
      const refs: string[] = [];
      this.collect = refs;
      this.visit(rt.val, sc, m);
      this.collect = saved;
      if (saved) saved.push(...refs);
      for (const r of refs) if (r !== self) this.computed.add(r);
    }
  }

  /** RETURNING (PG 18: with `old`/`new` aliases of the target). */
  returning(s: Body, rel: Rel, sc: Scope, m: number, out: Out): OutputColumn[] | null {
    const clause = s.returningClause as Body | undefined;
    const list = clause?.exprs ?? s.returningList;
    if (!list) return null;
    const aliases = ["old", "new"];
    for (const opt of (clause?.options as Body[] | undefined) ?? []) {
      const v = (opt.ReturningOption as Body | undefined)?.value as string | undefined;
      if (v) aliases.push(v);
    }
    for (const a of aliases) sc.rels.push({ ...rel, name: a, qualifiedOnly: true });
    return this.targetList(list, sc, m, out);
  }

  insert(s: Body, parent: Scope, m: number, out: Out): OutputColumn[] | null {
    const sc = newScope(parent);
    if (s.withClause) this.withClause(s.withClause, sc, m);
    // INSERT … SELECT/VALUES: the source query cannot see the target; its values are stored.
    if (s.selectStmt) this.query(s.selectStmt, sc, m, Out.Sink);
    const rel = this.target(s, sc);
    // without a column list, every column of the table is written
    if (s.cols) this.targetColumns(s.cols, rel, sc, m);
    else if (rel.table) this.record(`${rel.table}.*`, m, false);
    const oc = s.onConflictClause as Body | undefined;
    if (oc) {
      sc.rels.push({ ...rel, name: "excluded", qualifiedOnly: true });
      const infer = oc.infer as Body | undefined;
      for (const e of (infer?.indexElems as Body[] | undefined) ?? []) {
        const ie = e.IndexElem as Body | undefined;
        if (ie?.name) this.record(colName(relPrefix(rel), ie.name as string), m, false);
        else this.visit(e, sc, m);
      }
      this.visit(infer?.whereClause, sc, m);
      this.targetColumns(oc.targetList, rel, sc, m);
      this.visit(oc.whereClause, sc, m);
    }
    return this.returning(s, rel, sc, m, out);
  }

  update(s: Body, parent: Scope, m: number, out: Out): OutputColumn[] | null {
    const sc = newScope(parent);
    if (s.withClause) this.withClause(s.withClause, sc, m);
    const rel = this.target(s, sc);
    // (sub-selects here are traced: their columns may be stored by SET)
    for (const item of (s.fromClause as unknown[] | undefined) ?? []) this.fromItem(item, sc, m, false);
    this.targetColumns(s.targetList, rel, sc, m);
    // WHERE CURRENT OF counts as a WHERE clause: it updates one row.
    if (s.whereClause) this.visit(s.whereClause, sc, m);
    else this.hasWhere = false;
    return this.returning(s, rel, sc, m, out);
  }

  delete(s: Body, parent: Scope, m: number, out: Out): OutputColumn[] | null {
    const sc = newScope(parent);
    if (s.withClause) this.withClause(s.withClause, sc, m);
    const rel = this.target(s, sc);
    for (const item of (s.usingClause as unknown[] | undefined) ?? []) this.fromItem(item, sc, m, false);
    if (s.whereClause) this.visit(s.whereClause, sc, m);
    else this.hasWhere = false;
    return this.returning(s, rel, sc, m, out);
  }

  merge(s: Body, parent: Scope, m: number, out: Out): OutputColumn[] | null {
    const sc = newScope(parent);
    if (s.withClause) this.withClause(s.withClause, sc, m);
    const rel = this.target(s, sc);
    this.fromItem(s.sourceRelation, sc, m, false);
    this.visit(s.joinCondition, sc, m);
    for (const w of (s.mergeWhenClauses as Body[] | undefined) ?? []) {
      const mw = w.MergeWhenClause as Body | undefined;
      if (!mw) continue;
      this.visit(mw.condition, sc, m);
      this.targetColumns(mw.targetList, rel, sc, m);
      if (mw.values) this.visit(mw.values, sc, m | COMPUTED);
    }
    return this.returning(s, rel, sc, m, out);
  }

  // --- COPY ------------------------------------------------------------------------------------------------

  copyStmt(kind: Kind, b: Body, sc: Scope): Kind {
    let format: CopyCommand["format"] = "text";
    for (const o of (b.options as Body[] | undefined) ?? []) {
      const d = o.DefElem as Body | undefined;
      if (d?.defname !== "format") continue;
      const v = ((d.arg as Body | undefined)?.String as Body | undefined)?.sval;
      if (v === "csv" || v === "binary" || v === "text") format = v;
    }
    const copy: CopyCommand = {
      direction: b.is_from ? "from" : "to",
      program: b.is_program === true,
      format,
    };
    if (b.relation) {
      const inner = newScope(sc);
      const rel = this.tableRef(b.relation as Body, sc, b.is_from === true);
      inner.rels.push(rel);
      copy.table = rel.table as string;
      const cols = (b.attlist as Body[] | undefined)?.map((c) => (c.String as Body).sval as string);
      // COPY table TO: the columns are output in order, each as itself (COPY FROM: each is written).
      const bare = !b.is_from;
      if (cols) {
        copy.columns = cols;
        for (const c of cols) this.record(`${copy.table}.${c}`, 0, bare);
      } else {
        this.record(`${copy.table}.*`, 0, bare);
      }
      if (b.is_from) this.writes = true;
      this.visit(b.whereClause, inner, 0);
    } else if (b.query) {
      copy.query = true;
      // A COPY stream has no RowDescription to attribute columns: everything it outputs counts as computed.
      this.query(b.query, sc, 0, Out.Sink);
    }
    this.copy = copy;
    return kind;
  }
}
