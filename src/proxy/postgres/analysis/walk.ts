// The walk over one statement's parse tree (libpg-query's JSON: a node is `{"TypeName": {…fields}}`; a field
// typed as one specific node, e.g. InsertStmt.relation, holds the fields without the wrapper).
//
// The walk is generic — every object and array is visited — and only the node types that carry what the policy
// needs have handlers: queries (scopes, CTEs, target lists), FROM items, DML targets, RangeVar, ColumnRef,
// FuncCall, ParamRef, SubLink. Anything else (a new expression node, a DDL option) is walked through, so a table
// or column inside it is still found.
//
// Read or written. Written: the target of INSERT/UPDATE/DELETE/MERGE (also inside a CTE), TRUNCATE, COPY FROM,
// SELECT INTO and CREATE TABLE AS / MATERIALIZED VIEW, REFRESH MATERIALIZED VIEW — and the relation a DDL
// statement creates, alters or drops (CREATE/ALTER/DROP TABLE, VIEW, INDEX ON, SEQUENCE, a trigger, rule or row
// policy on it), so that a policy about writes to a table also sees it dropped. Every other relation named is
// read (FROM, JOIN, sub-selects, REFERENCES, LOCK, GRANT … ON, VACUUM). A CTE name is not a table. A plain
// EXPLAIN only plans its statement: everything it names is read.
//
// Names.
// - A table is `schema.table`. An unqualified name is reported in `public`, where the upstream session's pinned
//   search_path resolves it (upstream.ts); statements that would change search_path are refused
//   (`changesSearchPath`). A temporary table of the same name still shadows it — with the user's own data only.
// - A column is `schema.table.column` when the column's relation is known: a qualifier that names a FROM item,
//   or the only FROM item of the query (or of the nearest enclosing query with FROM items). Otherwise it is
//   reported as written: `alias.column` (a sub-select, a CTE, a function in FROM, an unknown qualifier) or
//   `column` (several FROM items: which one has the column is in the catalog, not in the text).
// - `*` becomes `schema.table.*` for each table in scope.
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
import { type Category, type Kind, kindOf, objectName } from "./kinds.js";

type Body = Record<string, unknown>;

export interface CopyCommand {
  direction: "to" | "from";
  program: boolean;
  format: "text" | "csv" | "binary";
  table?: string;
  columns?: string[];
  query?: boolean;
}

/** What the walk finds in one statement (the caller adds fingerprint and text). */
export interface WalkResult {
  statement: string;
  category: Category;
  read: string[];
  write: string[];
  columns: string[];
  functions: string[];
  hasWhere: boolean;
  copy: CopyCommand | null;
  paramCount: number;
  changesSearchPath: boolean;
  bare: string[];
  computed: string[];
}

/** How a query's target list is output. */
enum Out {
  /** To the client, in a result PostgreSQL attributes to source columns: the top-level SELECT, RETURNING. */
  Output = 0,
  /** A sub-select in FROM or a CTE: like Output, and its columns are traced for the enclosing query. */
  Derived = 1,
  /** Nowhere the proxy could mask it: every column of the target list is computed. */
  Sink = 2,
  /** Not output (a sub-select in WHERE, the statement of a plain EXPLAIN): columns only. */
  Hidden = 3,
}

/** Mode bit, inherited by everything below a node: every column reached is computed. */
const COMPUTED = 1;

interface Rel {
  /** The name the query refers to it by: its alias, else the relation's own name ("" for an unnamed one). */
  name: string;
  /** schema.table for a table (or view); null for a sub-select, CTE, function or join alias. */
  table: string | null;
  /** The key into `derived` for a sub-select or CTE. */
  derived: string | null;
  /** Reachable only qualified: excluded, old, new. */
  qualifiedOnly: boolean;
}

interface Scope {
  parent: Scope | null;
  rels: Rel[];
  ctes: Set<string> | null;
  /** Merged columns of a FULL JOIN … USING at this level ("*" for NATURAL): COALESCEd, so without origin. */
  fullJoin: Set<string> | null;
  /** Output column aliases of this query (for ORDER BY / GROUP BY). */
  outputNames: Set<string> | null;
}

interface OutputColumn {
  name: string | null;
  sources: string[];
}

/** A sub-select or CTE: what each output column and the whole row are made of. */
interface Derived {
  outs: Map<string, string[]>;
  all: string[];
  /** Output columns cannot be told apart by name (a `*` output, renamed columns): any reference means all. */
  opaque: boolean;
}

class Walk {
  readonly read = new Set<string>();
  readonly write = new Set<string>();
  readonly columns = new Set<string>();
  readonly functions = new Set<string>();
  readonly bare = new Set<string>();
  readonly computed = new Set<string>();
  readonly derived = new Map<string, Derived>();
  hasWhere = true;
  /**
   * The statement would change the session's search_path (SET search_path, set_config('search_path', …) or a
   * set_config whose setting name is not a literal): unqualified names would no longer mean `public.*`.
   */
  changesSearchPath = false;
  /** A write effect somewhere (DML, SELECT INTO, a row-locking clause). */
  writes = false;
  params = 0;
  /** The sources of the target-list entry being walked in a Derived query. */
  collect: string[] | null = null;

  // --- generic walk ----------------------------------------------------------------------------------------

  visit(v: unknown, sc: Scope, m: number): void {
    if (typeof v !== "object" || v === null) return;
    if (Array.isArray(v)) {
      for (const x of v) if (typeof x === "object" && x !== null) this.visit(x, sc, m);
      return;
    }
    const o = v as Body;
    let type = "";
    for (const k in o) {
      type = k;
      break;
    }
    const c = type.charCodeAt(0);
    if (!(c >= 65 && c <= 90)) {
      this.fields(o, sc, m);
      return;
    }
    const b = o[type] as Body;
    switch (type) {
      case "ColumnRef":
        this.columnRef(b, sc, m, false);
        return;
      case "FuncCall":
        this.funcCall(b, sc, m);
        return;
      case "ParamRef": {
        const n = b.number as number | undefined;
        if (n !== undefined && n > this.params) this.params = n;
        return;
      }
      case "A_Const":
      case "String":
      case "Integer":
      case "Float":
      case "Boolean":
      case "BitString":
      case "TypeName":
      case "A_Star":
      case "SQLValueFunction":
        return;
      case "RangeVar":
        this.tableRef(b, sc, false);
        return;
      case "SubLink":
        this.visit(b.testexpr, sc, m);
        this.query(b.subselect, sc, m, Out.Hidden);
        return;
      case "SelectStmt":
        this.select(b, sc, m, Out.Hidden);
        return;
      case "InsertStmt":
        this.insert(b, sc, m, Out.Hidden);
        return;
      case "UpdateStmt":
        this.update(b, sc, m, Out.Hidden);
        return;
      case "DeleteStmt":
        this.delete(b, sc, m, Out.Hidden);
        return;
      case "MergeStmt":
        this.merge(b, sc, m, Out.Hidden);
        return;
    }
    // Any other node: its fields, one JavaScript frame per tree level (deep operator chains stay cheap).
    for (const k in b) {
      const x = b[k];
      if (typeof x === "object" && x !== null) this.visit(x, sc, m);
    }
  }

  /** A field object without a wrapper: a RangeVar, a FuncCall (CallStmt) or any other struct. */
  fields(o: Body, sc: Scope, m: number): void {
    if (typeof o.relname === "string") {
      this.tableRef(o, sc, false);
      return;
    }
    if (o.funcname !== undefined && o.funcformat !== undefined) {
      this.funcCall(o, sc, m);
      return;
    }
    for (const k in o) {
      const x = o[k];
      if (typeof x === "object" && x !== null) this.visit(x, sc, m);
    }
  }

  /** A wrapped statement inside another one (a CTE, COPY (query), EXPLAIN, PREPARE, …). */
  query(v: unknown, sc: Scope, m: number, out: Out): OutputColumn[] | null {
    if (typeof v !== "object" || v === null) return null;
    const o = v as Body;
    if (o.SelectStmt) return this.select(o.SelectStmt as Body, sc, m, out);
    if (o.InsertStmt) return this.insert(o.InsertStmt as Body, sc, m, out);
    if (o.UpdateStmt) return this.update(o.UpdateStmt as Body, sc, m, out);
    if (o.DeleteStmt) return this.delete(o.DeleteStmt as Body, sc, m, out);
    if (o.MergeStmt) return this.merge(o.MergeStmt as Body, sc, m, out);
    this.visit(v, sc, m);
    return null;
  }

  // --- names -----------------------------------------------------------------------------------------------

  static qualify(rv: Body): string {
    return `${(rv.schemaname as string | undefined) ?? "public"}.${rv.relname as string}`;
  }

  static isCte(name: string, sc: Scope | null): boolean {
    for (let s = sc; s; s = s.parent) if (s.ctes?.has(name)) return true;
    return false;
  }

  static findRel(name: string, sc: Scope): Rel | null {
    for (let s: Scope | null = sc; s; s = s.parent) {
      for (let i = s.rels.length - 1; i >= 0; i--) {
        const r = s.rels[i] as Rel;
        if (r.name === name) return r;
      }
    }
    return null;
  }

  /** The relation an unqualified column belongs to, when the text says so: the only FROM item in reach. */
  static onlyRel(sc: Scope): Rel | null {
    for (let s: Scope | null = sc; s; s = s.parent) {
      let found: Rel | null = null;
      let count = 0;
      for (const r of s.rels) {
        if (r.qualifiedOnly) continue;
        found = r;
        count++;
      }
      if (count === 1) return found;
      if (count > 1) return null;
    }
    return null;
  }

  /** How columns of a relation are written: schema.table, else the CTE or sub-select name, else its alias. */
  static relPrefix(r: Rel): string {
    return r.table ?? r.derived ?? r.name;
  }

  static colName(prefix: string, col: string): string {
    return prefix ? `${prefix}.${col}` : col;
  }

  /** A reference to a table in a FROM list, a DML target or anywhere else (LOCK, GRANT, REFERENCES, …). */
  tableRef(rv: Body, sc: Scope, write: boolean): Rel {
    const relname = rv.relname as string;
    const alias = (rv.alias as Body | undefined)?.aliasname as string | undefined;
    if (!rv.schemaname && !write && Walk.isCte(relname, sc)) {
      return { name: alias ?? relname, table: null, derived: relname, qualifiedOnly: false };
    }
    const table = Walk.qualify(rv);
    (write ? this.write : this.read).add(table);
    return { name: alias ?? relname, table, derived: null, qualifiedOnly: false };
  }

  /** A column reached by a ColumnRef, a target column name, an index element, … */
  record(entry: string, m: number, bare: boolean): void {
    this.columns.add(entry);
    if (this.collect) this.collect.push(entry);
    if (m & COMPUTED) this.computed.add(entry);
    else if (bare) this.bare.add(entry);
  }

  columnRef(b: Body, sc: Scope, m: number, bare: boolean): void {
    const fields = b.fields as Body[] | undefined;
    if (!fields || fields.length === 0) return;
    const n = fields.length;
    const names: string[] = [];
    let star = false;
    for (const f of fields) {
      const s = f.String as Body | undefined;
      if (s) names.push(s.sval as string);
      else if (f.A_Star) star = true;
    }
    if (star) {
      if (n === 1) {
        // SELECT *: every FROM item of the query; the merged columns of a FULL JOIN … USING have no origin.
        let s: Scope | null = sc;
        while (s && s.rels.length === 0) s = s.parent;
        const rels = s ? s.rels.filter((r) => !r.qualifiedOnly) : [];
        const merged = s?.fullJoin != null;
        if (rels.length === 0) this.record("*", m, bare);
        for (const r of rels) {
          if (r.table) this.record(`${r.table}.*`, merged ? m | COMPUTED : m, bare);
          else this.derivedStar(r, m, bare, merged);
        }
        return;
      }
      const q = names[0] as string;
      const r = n === 2 ? Walk.findRel(q, sc) : null;
      if (r && !r.table) this.derivedStar(r, m, bare, false);
      else this.record(r?.table ? `${r.table}.*` : `${names.slice(-2).join(".")}.*`, m, bare);
      return;
    }
    const col = names[names.length - 1] as string;
    if (n === 1) {
      const r = Walk.onlyRel(sc);
      const entry = r ? Walk.colName(Walk.relPrefix(r), col) : col;
      // A bare name that is also a FROM item's name may be a whole-row reference (`SELECT u FROM users u`,
      // `row_to_json(u)`) — PostgreSQL decides by the catalog, so take it as both: the whole row is output,
      // which is never maskable column by column.
      const whole = Walk.findRel(col, sc);
      if (whole && (whole.table || whole.derived !== null)) {
        const wm = bare ? m | COMPUTED : m;
        if (whole.table) this.record(`${whole.table}.*`, wm, false);
        else this.derivedStar(whole, wm, false, false);
        this.record(entry, m, false);
        return;
      }
      // An unqualified USING column of a FULL JOIN is the merged (COALESCEd) one.
      const merged = sc.fullJoin !== null && (sc.fullJoin.has(col) || sc.fullJoin.has("*"));
      this.record(entry, merged && bare ? m | COMPUTED : m, bare);
      return;
    }
    let entry: string;
    if (n === 2) {
      const r = Walk.findRel(names[0] as string, sc);
      entry = r ? Walk.colName(Walk.relPrefix(r), col) : `${names[0]}.${col}`;
    } else if (n === 3) {
      // schema.table.column, or table.column.field of a composite column
      const r = Walk.findRel(names[0] as string, sc);
      entry = r?.table ? `${r.table}.${names[1]}` : names.join(".");
    } else {
      entry = names.slice(-3).join(".");
    }
    this.record(entry, m, bare);
  }

  /** `q.*` or a whole-row reference of a sub-select or CTE. */
  derivedStar(r: Rel, m: number, bare: boolean, merged: boolean): void {
    const key = r.derived ?? r.name;
    const entry = key ? `${key}.*` : "*";
    if (this.collect) this.collect.push(entry);
    if (m & COMPUTED || merged) this.computed.add(entry);
    else if (bare) this.bare.add(entry);
  }

  funcCall(b: Body, sc: Scope, m: number): void {
    const fn = b.funcname as Body[] | undefined;
    const last = fn?.[fn.length - 1]?.String as Body | undefined;
    if (last) {
      const name = (last.sval as string).toLowerCase();
      this.functions.add(name);
      if (name === "set_config" && !Walk.settingOtherThanSearchPath((b.args as Body[] | undefined)?.[0]))
        this.changesSearchPath = true;
    }
    if (b.args) this.visit(b.args, sc, m);
    if (b.agg_order) this.visit(b.agg_order, sc, m);
    if (b.agg_filter) this.visit(b.agg_filter, sc, m);
    if (b.over) this.visit(b.over, sc, m);
  }

  /** set_config's first argument is a string literal naming a setting other than search_path. */
  static settingOtherThanSearchPath(arg: Body | undefined): boolean {
    const sval = ((arg?.A_Const as Body | undefined)?.sval as Body | undefined)?.sval;
    return typeof sval === "string" && sval.trim().toLowerCase() !== "search_path";
  }

  // --- queries ---------------------------------------------------------------------------------------------

  static scope(parent: Scope | null): Scope {
    return { parent, rels: [], ctes: null, fullJoin: null, outputNames: null };
  }

  withClause(w: unknown, sc: Scope, m: number): void {
    const wc = (w as Body | undefined)?.WithClause ?? w;
    const body = wc as Body | undefined;
    if (!body) return;
    const ctes = (body.ctes as Body[] | undefined) ?? [];
    sc.ctes ??= new Set();
    if (body.recursive) {
      for (const c of ctes) sc.ctes.add((c.CommonTableExpr as Body).ctename as string);
    }
    for (const c of ctes) {
      const cte = c.CommonTableExpr as Body;
      const name = cte.ctename as string;
      const outs = this.query(cte.ctequery, sc, m, Out.Derived);
      this.registerDerived(name, outs, cte.aliascolnames as Body[] | undefined);
      sc.ctes.add(name);
    }
  }

  registerDerived(key: string, outs: OutputColumn[] | null, colnames: Body[] | undefined): void {
    const d: Derived = this.derived.get(key) ?? { outs: new Map(), all: [], opaque: false };
    this.derived.set(key, d);
    if (!outs) {
      // a set operation or a statement without a target list: its columns are computed already
      d.opaque = true;
      return;
    }
    const renames = colnames?.map((c) => (c.String as Body).sval as string);
    // with a `*` output, the names of the output columns are in the catalog
    if (outs.some((o) => o.name === "*")) d.opaque = true;
    outs.forEach((o, i) => {
      d.all.push(...o.sources);
      const name = renames?.[i] ?? o.name;
      if (!name || name === "*") return;
      const list = d.outs.get(name);
      if (list) list.push(...o.sources);
      else d.outs.set(name, [...o.sources]);
    });
  }

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
      const name = (rt.name as string | undefined) ?? Walk.outputName(val);
      if (rt.name) sc.outputNames.add(rt.name as string);
      outputs.push({ name, sources });
    }
    return outputs;
  }

  /** The column name PostgreSQL gives an output without an alias (the part that matters: columns and `*`). */
  static outputName(val: Body | undefined): string | null {
    const cr = val?.ColumnRef as Body | undefined;
    if (!cr) return null;
    const fields = cr.fields as Body[];
    const last = fields[fields.length - 1] as Body;
    if (last.A_Star) return "*";
    return ((last.String as Body | undefined)?.sval as string | undefined) ?? null;
  }

  select(s: Body, parent: Scope, m: number, out: Out): OutputColumn[] | null {
    const sc = Walk.scope(parent);
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
          if (left) this.record(Walk.colName(Walk.relPrefix(left), col), m, false);
          if (right) this.record(Walk.colName(Walk.relPrefix(right), col), m, false);
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
        name: alias ?? Walk.firstFunctionName(rf),
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

  static firstFunctionName(rf: Body): string {
    const first = (rf.functions as Body[] | undefined)?.[0]?.List as Body | undefined;
    const call = (first?.items as Body[] | undefined)?.[0]?.FuncCall as Body | undefined;
    const fn = call?.funcname as Body[] | undefined;
    return ((fn?.[fn.length - 1]?.String as Body | undefined)?.sval as string | undefined) ?? "";
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
      const self = rt.name ? Walk.colName(Walk.relPrefix(rel), rt.name as string) : null;
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
    const sc = Walk.scope(parent);
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
        if (ie?.name) this.record(Walk.colName(Walk.relPrefix(rel), ie.name as string), m, false);
        else this.visit(e, sc, m);
      }
      this.visit(infer?.whereClause, sc, m);
      this.targetColumns(oc.targetList, rel, sc, m);
      this.visit(oc.whereClause, sc, m);
    }
    return this.returning(s, rel, sc, m, out);
  }

  update(s: Body, parent: Scope, m: number, out: Out): OutputColumn[] | null {
    const sc = Walk.scope(parent);
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
    const sc = Walk.scope(parent);
    if (s.withClause) this.withClause(s.withClause, sc, m);
    const rel = this.target(s, sc);
    for (const item of (s.usingClause as unknown[] | undefined) ?? []) this.fromItem(item, sc, m, false);
    if (s.whereClause) this.visit(s.whereClause, sc, m);
    else this.hasWhere = false;
    return this.returning(s, rel, sc, m, out);
  }

  merge(s: Body, parent: Scope, m: number, out: Out): OutputColumn[] | null {
    const sc = Walk.scope(parent);
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

  // --- top-level statements --------------------------------------------------------------------------------

  /** Walks everything but the named fields. */
  rest(b: Body, skip: string[], sc: Scope, m: number): void {
    for (const k in b) {
      if (skip.includes(k)) continue;
      const x = b[k];
      if (typeof x === "object" && x !== null) this.visit(x, sc, m);
    }
  }

  /**
   * A DDL statement on a relation: the relation is written (created, altered, dropped), and the statement's
   * expressions (CHECK, index expressions, a policy's USING, a trigger's WHEN) refer to its columns.
   */
  ddlOn(b: Body, field: string, sc: Scope): Scope {
    const rv = b[field] as Body | undefined;
    const inner = Walk.scope(sc);
    if (rv && typeof rv.relname === "string") inner.rels.push(this.tableRef(rv, sc, true));
    this.rest(b, [field], inner, 0);
    return inner;
  }

  statement(type: string, b: Body, sc: Scope, out: Out): Kind {
    const kind = kindOf(type, b);
    switch (type) {
      case "SelectStmt":
        this.select(b, sc, 0, out);
        break;
      case "InsertStmt":
        this.insert(b, sc, 0, out);
        break;
      case "UpdateStmt":
        this.update(b, sc, 0, out);
        break;
      case "DeleteStmt":
        this.delete(b, sc, 0, out);
        break;
      case "MergeStmt":
        this.merge(b, sc, 0, out);
        break;
      case "ExplainStmt":
        return this.explain(b, sc);
      case "PrepareStmt": {
        // The rows come back later (EXECUTE, FETCH) without this analysis: the target list is a sink. The
        // statement is judged by what it will run. Its $n are the prepared statement's, not bind parameters.
        const k = this.wrapped(kind, b.query, sc, Out.Sink);
        this.params = 0;
        return k;
      }
      case "DeclareCursorStmt":
        return this.wrapped(kind, b.query, sc, Out.Sink);
      case "CreateFunctionStmt":
        // $n in a SQL-standard body are the function's arguments
        this.rest(b, [], sc, 0);
        this.params = 0;
        break;
      case "CreateTableAsStmt": {
        const into = b.into as Body;
        this.tableRef(into.rel as Body, sc, true);
        this.query(b.query, sc, 0, Out.Sink);
        break;
      }
      case "ViewStmt":
        this.tableRef(b.view as Body, sc, true);
        this.query(b.query, sc, 0, Out.Sink);
        break;
      case "CopyStmt":
        return this.copyStmt(kind, b, sc);
      case "TruncateStmt":
        for (const r of (b.relations as Body[] | undefined) ?? [])
          this.tableRef(r.RangeVar as Body, sc, true);
        break;
      case "DropStmt":
        this.drop(b);
        break;
      case "CreateStmt":
      case "AlterTableStmt":
      case "IndexStmt":
      case "RefreshMatViewStmt":
      case "RenameStmt":
      case "AlterObjectSchemaStmt":
      case "AlterOwnerStmt":
      case "CreateTrigStmt":
      case "RuleStmt": {
        const inner = this.ddlOn(b, "relation", sc);
        if (type === "IndexStmt") {
          const rel = inner.rels[0];
          for (const p of (b.indexParams as Body[] | undefined) ?? []) {
            const ie = p.IndexElem as Body | undefined;
            if (ie?.name && rel) this.record(Walk.colName(Walk.relPrefix(rel), ie.name as string), 0, false);
          }
        }
        break;
      }
      case "CreatePolicyStmt":
      case "AlterPolicyStmt":
        this.ddlOn(b, "table", sc);
        break;
      case "CreateSeqStmt":
      case "AlterSeqStmt":
        this.ddlOn(b, "sequence", sc);
        break;
      case "CreateForeignTableStmt": {
        const base = b.base as Body | undefined;
        if (base) this.ddlOn(base, "relation", sc);
        this.rest(b, ["base"], sc, 0);
        break;
      }
      case "VacuumStmt":
        for (const r of (b.rels as Body[] | undefined) ?? []) {
          const vr = r.VacuumRelation as Body | undefined;
          if (!vr?.relation) continue;
          const rel = this.tableRef(vr.relation as Body, sc, false);
          for (const c of (vr.va_cols as Body[] | undefined) ?? []) {
            this.record(Walk.colName(Walk.relPrefix(rel), (c.String as Body).sval as string), 0, false);
          }
        }
        break;
      case "CallStmt":
        this.visit(b.funccall, sc, 0);
        break;
      default:
        this.rest(b, [], sc, 0);
    }
    return kind;
  }

  /** EXPLAIN runs its statement only with ANALYZE: then it is that statement's category (and WHERE check). */
  explain(b: Body, sc: Scope): Kind {
    let analyze = false;
    for (const o of (b.options as Body[] | undefined) ?? []) {
      const d = o.DefElem as Body | undefined;
      if (d?.defname !== "analyze") continue;
      analyze = !Walk.isFalse(d.arg);
    }
    const inner = this.wrapped({ statement: "explain", category: "read" }, b.query, sc, Out.Hidden);
    if (analyze) return inner;
    // Planned, not run: nothing is written or locked, and every relation it names is only read.
    for (const t of this.write) this.read.add(t);
    this.write.clear();
    this.writes = false;
    this.hasWhere = true;
    return { statement: "explain", category: "read" };
  }

  static isFalse(arg: unknown): boolean {
    if (!arg || typeof arg !== "object") return false;
    const a = arg as Body;
    const s = (a.String as Body | undefined)?.sval;
    if (typeof s === "string") return ["false", "off", "no", "0"].includes(s.toLowerCase());
    const bool = a.Boolean as Body | undefined;
    if (bool) return bool.boolval !== true;
    const int = a.Integer as Body | undefined;
    if (int) return !int.ival;
    const c = a.A_Const as Body | undefined;
    return c ? Walk.isFalse(c.sval ? { String: c.sval } : c.boolval ? { Boolean: c.boolval } : null) : false;
  }

  /** A statement wrapping another (EXPLAIN, PREPARE, DECLARE CURSOR): the inner statement's category. */
  wrapped(outer: Kind, query: unknown, sc: Scope, out: Out): Kind {
    const q = query as Body | undefined;
    let category: Category = outer.category;
    for (const k in q) {
      const kind = this.statement(k, q?.[k] as Body, sc, out);
      category = kind.category;
      break;
    }
    return { statement: outer.statement, category };
  }

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
      const inner = Walk.scope(sc);
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

  copy: CopyCommand | null = null;

  drop(b: Body): void {
    const type = objectName(b.removeType);
    const relation = ["table", "view", "materialized_view", "index", "sequence", "foreign_table"].includes(
      type,
    );
    if (!relation) return;
    for (const o of (b.objects as Body[] | undefined) ?? []) {
      const items = (o.List as Body | undefined)?.items as Body[] | undefined;
      if (!items) continue;
      const names = items.map((i) => (i.String as Body).sval as string);
      const rel = names.slice(-2);
      this.write.add(rel.length === 2 ? rel.join(".") : `public.${rel[0]}`);
    }
  }

  // --- results ---------------------------------------------------------------------------------------------

  /** Follows computed references to sub-selects and CTEs back to the columns they were made of. */
  traceComputed(): void {
    if (this.derived.size === 0) return;
    const work = [...this.computed];
    while (work.length > 0) {
      const e = work.pop() as string;
      const dot = e.indexOf(".");
      let sources: string[] = [];
      if (dot < 0) {
        // an unqualified name: any sub-select or CTE output of that name
        for (const d of this.derived.values()) {
          if (e === "*" || d.opaque) sources = sources.concat(d.all);
          else sources = sources.concat(d.outs.get(e) ?? []);
        }
      } else if (e.indexOf(".", dot + 1) < 0) {
        const d = this.derived.get(e.slice(0, dot));
        const col = e.slice(dot + 1);
        if (d) sources = col === "*" || d.opaque ? d.all : (d.outs.get(col) ?? d.all);
      }
      for (const s of sources) {
        if (this.computed.has(s)) continue;
        this.computed.add(s);
        work.push(s);
      }
    }
  }
}

const sorted = (s: Set<string>): string[] => [...s].sort();

/** Analyzes one top-level statement node of a parse result (`stmts[i].stmt`). */
export function walkStatement(stmt: Body): WalkResult {
  const w = new Walk();
  let type = "";
  for (const k in stmt) {
    type = k;
    break;
  }
  const body = stmt[type] as Body;
  const kind = w.statement(type, body, Walk.scope(null), Out.Output);
  // SET [LOCAL] search_path; RESET and SET … TO DEFAULT return to the pinned value and are fine.
  if (
    type === "VariableSetStmt" &&
    body.name === "search_path" &&
    (body.kind === "VAR_SET_VALUE" || body.kind === "VAR_SET_CURRENT")
  )
    w.changesSearchPath = true;
  w.traceComputed();
  let category = kind.category;
  if (category === "read" && w.writes) category = "write";
  return {
    statement: kind.statement,
    category,
    read: sorted(w.read),
    write: sorted(w.write),
    columns: sorted(w.columns),
    functions: sorted(w.functions),
    hasWhere: w.hasWhere,
    copy: w.copy,
    paramCount: w.params,
    changesSearchPath: w.changesSearchPath,
    bare: sorted(w.bare),
    computed: sorted(w.computed),
  };
}
