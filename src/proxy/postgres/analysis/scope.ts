// The walker's state and its generic traversal, names and scopes: what every statement handler builds on
// (dml.ts adds queries and data-modifying statements, utility.ts everything else, walk.ts dispatches).
//
// The walk is generic — every object and array is visited — and only the node types that carry what the policy
// needs have handlers: queries (scopes, CTEs, target lists), FROM items, DML targets, RangeVar, ColumnRef,
// FuncCall, ParamRef, SubLink. Anything else (a new expression node, a DDL option) is walked through, so a table
// or column inside it is still found.
//
// Names.
// - A table is `schema.table`. An unqualified name is reported in the session's schema (`public` unless the
//   resource configures another): the proxy pins the upstream session's search_path to exactly that schema
//   (../upstream.ts), so the server resolves the name there too, and statements that would change search_path
//   are refused (`changesSearchPath`: SET search_path, set_config, UPDATE pg_settings). Two things come before
//   the search_path in PostgreSQL's own lookup: the session's temporary schema (a temporary table of the same
//   name shadows the table — with the user's own data only) and pg_catalog. So an unqualified name beginning
//   with `pg_` — the only names pg_catalog's relations have, and also allowed for user tables — is reported in
//   both schemas, `pg_catalog.pg_x` and (say) `public.pg_x`, and so is each column of it: which one the server
//   reads is in the catalog, and a policy must see both.
// - A column is `schema.table.column` when the column's relation is known: a qualifier that names a FROM item,
//   or the only FROM item of the query (or of the nearest enclosing query with FROM items). Otherwise it is
//   reported as written: `alias.column` (a sub-select, a CTE, a function in FROM, an unknown qualifier) or
//   `column` (several FROM items: which one has the column is in the catalog, not in the text).
// - `*` becomes `schema.table.*` for each table in scope.
//
// Scopes. Each query level has a Scope: the FROM items (Rel) it makes visible, its CTE names, the merged
// columns of a FULL JOIN … USING and its output column aliases; a name is looked up from the innermost level
// out. A sub-select in FROM or a CTE is registered as Derived (what each of its output columns is made of), so
// that a column reached through it can be traced back to its sources (traceComputed).

export type Body = Record<string, unknown>;

/** How a query's target list is output. */
export enum Out {
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
export const COMPUTED = 1;

export interface Rel {
  /** The name the query refers to it by: its alias, else the relation's own name ("" for an unnamed one). */
  name: string;
  /** schema.table for a table (or view); null for a sub-select, CTE, function or join alias. */
  table: string | null;
  /** The key into `derived` for a sub-select or CTE. */
  derived: string | null;
  /** Reachable only qualified: excluded, old, new. */
  qualifiedOnly: boolean;
}

export interface Scope {
  parent: Scope | null;
  rels: Rel[];
  ctes: Set<string> | null;
  /** Merged columns of a FULL JOIN … USING at this level ("*" for NATURAL): COALESCEd, so without origin. */
  fullJoin: Set<string> | null;
  /** Output column aliases of this query (for ORDER BY / GROUP BY). */
  outputNames: Set<string> | null;
}

export interface OutputColumn {
  name: string | null;
  sources: string[];
}

/** A sub-select or CTE: what each output column and the whole row are made of. */
export interface Derived {
  outs: Map<string, string[]>;
  all: string[];
  /** Output columns cannot be told apart by name (a `*` output, renamed columns): any reference means all. */
  opaque: boolean;
}

export function newScope(parent: Scope | null): Scope {
  return { parent, rels: [], ctes: null, fullJoin: null, outputNames: null };
}

export function isCte(name: string, sc: Scope | null): boolean {
  for (let s = sc; s; s = s.parent) if (s.ctes?.has(name)) return true;
  return false;
}

export function findRel(name: string, sc: Scope): Rel | null {
  for (let s: Scope | null = sc; s; s = s.parent) {
    for (let i = s.rels.length - 1; i >= 0; i--) {
      const r = s.rels[i] as Rel;
      if (r.name === name) return r;
    }
  }
  return null;
}

/** The relation an unqualified column belongs to, when the text says so: the only FROM item in reach. */
export function onlyRel(sc: Scope): Rel | null {
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
export function relPrefix(r: Rel): string {
  return r.table ?? r.derived ?? r.name;
}

export function colName(prefix: string, col: string): string {
  return prefix ? `${prefix}.${col}` : col;
}

/** Adds a name given as its parts (["public", "f"]): parts may hold any character, a dot included. */
function addName(names: Map<string, string[]>, parts: string[]): void {
  names.set(parts.join("\u0000"), parts);
}

/** set_config's first argument is a string literal naming a setting other than search_path. */
export function settingOtherThanSearchPath(arg: Body | undefined): boolean {
  const sval = ((arg?.A_Const as Body | undefined)?.sval as Body | undefined)?.sval;
  return typeof sval === "string" && sval.trim().toLowerCase() !== "search_path";
}

/**
 * What the walk collects, the generic traversal, names and scopes. The query and statement handlers the
 * traversal dispatches to are implemented by the subclasses (dml.ts).
 */
export abstract class ScopeWalk {
  /**
   * @param schema where unqualified relation names resolve: the one schema of the session's search_path.
   */
  constructor(readonly schema: string) {}

  readonly read = new Set<string>();
  readonly write = new Set<string>();
  readonly columns = new Set<string>();
  readonly functions = new Set<string>();
  /** Functions as called: the name as written, with its schema when the text gives one (["public", "f"], ["f"]). */
  readonly calls = new Map<string, string[]>();
  /** Operators used, as written (["="], ["public", "==="] from OPERATOR(public.===)): a user-defined one runs a function. */
  readonly operators = new Map<string, string[]>();
  readonly bare = new Set<string>();
  readonly computed = new Set<string>();
  readonly derived = new Map<string, Derived>();
  hasWhere = true;
  /**
   * The statement would change the session's search_path (SET search_path, set_config('search_path', …) or a
   * set_config whose setting name is not a literal, UPDATE pg_settings): unqualified names would no longer
   * resolve in `schema`.
   */
  changesSearchPath = false;
  /**
   * `schema.pg_x` → `pg_catalog.pg_x` for each unqualified `pg_` name seen: reported in both (see Names). Null
   * until there is one, so that recording a column costs nothing extra otherwise.
   */
  twins: Map<string, string> | null = null;
  /** A write effect somewhere (DML, SELECT INTO, a row-locking clause). */
  writes = false;
  params = 0;
  /** The sources of the target-list entry being walked in a Derived query. */
  collect: string[] | null = null;

  abstract select(s: Body, parent: Scope, m: number, out: Out): OutputColumn[] | null;
  abstract insert(s: Body, parent: Scope, m: number, out: Out): OutputColumn[] | null;
  abstract update(s: Body, parent: Scope, m: number, out: Out): OutputColumn[] | null;
  abstract delete(s: Body, parent: Scope, m: number, out: Out): OutputColumn[] | null;
  abstract merge(s: Body, parent: Scope, m: number, out: Out): OutputColumn[] | null;

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
      case "A_Expr":
        this.operator(b);
        break; // and its operands, below
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

  /** A reference to a table in a FROM list, a DML target or anywhere else (LOCK, GRANT, REFERENCES, …). */
  tableRef(rv: Body, sc: Scope, write: boolean): Rel {
    const relname = rv.relname as string;
    const alias = (rv.alias as Body | undefined)?.aliasname as string | undefined;
    if (!rv.schemaname && !write && isCte(relname, sc)) {
      return { name: alias ?? relname, table: null, derived: relname, qualifiedOnly: false };
    }
    const table = this.qualify(rv, write);
    return { name: alias ?? relname, table, derived: null, qualifiedOnly: false };
  }

  /**
   * A relation name as the server resolves it, added to the tables read or written: `schema.table`, with the
   * session's schema for an unqualified name (and pg_catalog too for an unqualified `pg_` name, see Names).
   */
  qualify(rv: Body, write: boolean): string {
    const relname = rv.relname as string;
    const schema = rv.schemaname as string | undefined;
    const table = `${schema ?? this.schema}.${relname}`;
    const set = write ? this.write : this.read;
    set.add(table);
    if (schema === undefined && relname.startsWith("pg_") && this.schema !== "pg_catalog") {
      const twin = `pg_catalog.${relname}`;
      this.twins ??= new Map();
      this.twins.set(table, twin);
      set.add(twin);
    }
    return table;
  }

  /** A column reached by a ColumnRef, a target column name, an index element, … */
  record(entry: string, m: number, bare: boolean): void {
    this.columns.add(entry);
    if (this.collect) this.collect.push(entry);
    if (m & COMPUTED) this.computed.add(entry);
    else if (bare) this.bare.add(entry);
    if (this.twins) {
      // schema.pg_x.column: pg_catalog.pg_x.column too
      const dot = entry.indexOf(".", entry.indexOf(".") + 1);
      const twin = dot > 0 ? this.twins.get(entry.slice(0, dot)) : undefined;
      if (twin) this.record(twin + entry.slice(dot), m, bare);
    }
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
      const r = n === 2 ? findRel(q, sc) : null;
      if (r && !r.table) this.derivedStar(r, m, bare, false);
      else this.record(r?.table ? `${r.table}.*` : `${names.slice(-2).join(".")}.*`, m, bare);
      return;
    }
    const col = names[names.length - 1] as string;
    if (n === 1) {
      const r = onlyRel(sc);
      const entry = r ? colName(relPrefix(r), col) : col;
      // A bare name that is also a FROM item's name may be a whole-row reference (`SELECT u FROM users u`,
      // `row_to_json(u)`) — PostgreSQL decides by the catalog, so take it as both: the whole row is output,
      // which is never maskable column by column.
      const whole = findRel(col, sc);
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
      const r = findRel(names[0] as string, sc);
      entry = r ? colName(relPrefix(r), col) : `${names[0]}.${col}`;
    } else if (n === 3) {
      // schema.table.column, or table.column.field of a composite column
      const r = findRel(names[0] as string, sc);
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

  /** Records the operators an expression resolves to (BETWEEN is two comparisons). */
  operator(b: Body): void {
    const kind = b.kind as string | undefined;
    if (kind === "AEXPR_BETWEEN" || kind === "AEXPR_BETWEEN_SYM") {
      addName(this.operators, [">="]);
      addName(this.operators, ["<="]);
    } else if (kind === "AEXPR_NOT_BETWEEN" || kind === "AEXPR_NOT_BETWEEN_SYM") {
      addName(this.operators, ["<"]);
      addName(this.operators, [">"]);
    } else {
      const name = (b.name as Body[] | undefined)?.map(
        (p) => ((p.String as Body | undefined)?.sval as string | undefined) ?? "",
      );
      if (name?.length) addName(this.operators, name);
    }
  }

  funcCall(b: Body, sc: Scope, m: number): void {
    const fn = b.funcname as Body[] | undefined;
    const last = fn?.[fn.length - 1]?.String as Body | undefined;
    if (last) {
      const name = (last.sval as string).toLowerCase();
      this.functions.add(name);
      addName(
        this.calls,
        (fn as Body[]).map((p) => ((p.String as Body | undefined)?.sval as string | undefined) ?? ""),
      );
      if (name === "set_config" && !settingOtherThanSearchPath((b.args as Body[] | undefined)?.[0]))
        this.changesSearchPath = true;
    }
    if (b.args) this.visit(b.args, sc, m);
    if (b.agg_order) this.visit(b.agg_order, sc, m);
    if (b.agg_filter) this.visit(b.agg_filter, sc, m);
    if (b.over) this.visit(b.over, sc, m);
  }

  // --- scopes ----------------------------------------------------------------------------------------------

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

  // --- derived columns -------------------------------------------------------------------------------------

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
