// Every statement that is not a query or a data-modifying statement: DDL, TRUNCATE, VACUUM, CALL, SET, and the
// statements that wrap another one (EXPLAIN, PREPARE, DECLARE CURSOR, CREATE TABLE AS, CREATE VIEW).
//
// Read or written. Written: TRUNCATE, CREATE TABLE AS / MATERIALIZED VIEW, REFRESH MATERIALIZED VIEW — and
// the relation a DDL statement creates, alters or drops (CREATE/ALTER/DROP TABLE, VIEW, INDEX ON,
// SEQUENCE, a trigger, rule or row policy on it), so that a policy about writes to a table also sees it dropped.
// Every other relation named is read (REFERENCES, LOCK, GRANT … ON, VACUUM). A plain EXPLAIN only plans its
// statement: everything it names is read; EXPLAIN ANALYZE runs it and is judged as that statement.
//
// A statement type without a handler here is walked generically (scope.ts), so a relation it names is read.
import { DmlWalk } from "./dml.js";
import { type Category, type Kind, objectName } from "./kinds.js";
import { type Body, colName, newScope, Out, relPrefix, type Scope } from "./scope.js";

/** A DefElem argument that turns an option off (EXPLAIN (ANALYZE false)). */
function isFalse(arg: unknown): boolean {
  if (!arg || typeof arg !== "object") return false;
  const a = arg as Body;
  const s = (a.String as Body | undefined)?.sval;
  if (typeof s === "string") return ["false", "off", "no", "0"].includes(s.toLowerCase());
  const bool = a.Boolean as Body | undefined;
  if (bool) return bool.boolval !== true;
  const int = a.Integer as Body | undefined;
  if (int) return !int.ival;
  const c = a.A_Const as Body | undefined;
  return c ? isFalse(c.sval ? { String: c.sval } : c.boolval ? { Boolean: c.boolval } : null) : false;
}

/** Adds the utility statements to the walk; walk.ts's `statement` dispatches every statement type. */
export abstract class UtilityWalk extends DmlWalk {
  /** One statement, top-level or wrapped (EXPLAIN, PREPARE, …): its kind, after walking it. */
  abstract statement(type: string, b: Body, sc: Scope, out: Out): Kind;

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
    const inner = newScope(sc);
    if (rv && typeof rv.relname === "string") inner.rels.push(this.tableRef(rv, sc, true));
    this.rest(b, [field], inner, 0);
    return inner;
  }

  /** CREATE/ALTER TABLE, CREATE INDEX, REFRESH, RENAME, SET SCHEMA, OWNER TO, CREATE TRIGGER, CREATE RULE. */
  relationDdl(type: string, b: Body, sc: Scope): void {
    const inner = this.ddlOn(b, "relation", sc);
    if (type === "IndexStmt") {
      const rel = inner.rels[0];
      for (const p of (b.indexParams as Body[] | undefined) ?? []) {
        const ie = p.IndexElem as Body | undefined;
        if (ie?.name && rel) this.record(colName(relPrefix(rel), ie.name as string), 0, false);
      }
    }
  }

  createForeignTable(b: Body, sc: Scope): void {
    const base = b.base as Body | undefined;
    if (base) this.ddlOn(base, "relation", sc);
    this.rest(b, ["base"], sc, 0);
  }

  createFunction(b: Body, sc: Scope): void {
    // $n in a SQL-standard body are the function's arguments
    this.rest(b, [], sc, 0);
    this.params = 0;
  }

  /** CREATE TABLE AS / MATERIALIZED VIEW: the new relation is written; the query's values are stored. */
  createTableAs(b: Body, sc: Scope): void {
    const into = b.into as Body;
    this.tableRef(into.rel as Body, sc, true);
    this.query(b.query, sc, 0, Out.Sink);
  }

  /** CREATE VIEW: the view is written; its query's values are output later, without this analysis. */
  view(b: Body, sc: Scope): void {
    this.tableRef(b.view as Body, sc, true);
    this.query(b.query, sc, 0, Out.Sink);
  }

  truncate(b: Body, sc: Scope): void {
    for (const r of (b.relations as Body[] | undefined) ?? []) this.tableRef(r.RangeVar as Body, sc, true);
  }

  vacuum(b: Body, sc: Scope): void {
    for (const r of (b.rels as Body[] | undefined) ?? []) {
      const vr = r.VacuumRelation as Body | undefined;
      if (!vr?.relation) continue;
      const rel = this.tableRef(vr.relation as Body, sc, false);
      for (const c of (vr.va_cols as Body[] | undefined) ?? []) {
        this.record(colName(relPrefix(rel), (c.String as Body).sval as string), 0, false);
      }
    }
  }

  /**
   * SET, RESET: SET [SESSION | LOCAL] search_path (also SET SCHEMA, and `SET "SEARCH_PATH"`: setting names are
   * case-insensitive, quoted or not) would change what unqualified names mean (scope.ts, Names). RESET,
   * RESET ALL, DISCARD ALL and SET … TO DEFAULT return to the value pinned at connection — a startup option, which
   * is the session's reset value — and are fine.
   */
  variableSet(b: Body, sc: Scope): void {
    this.rest(b, [], sc, 0);
    const name = typeof b.name === "string" ? b.name.toLowerCase() : "";
    if (name === "search_path" && (b.kind === "VAR_SET_VALUE" || b.kind === "VAR_SET_CURRENT"))
      this.changesSearchPath = true;
  }

  /** EXPLAIN runs its statement only with ANALYZE: then it is that statement's category (and WHERE check). */
  explain(b: Body, sc: Scope): Kind {
    let analyze = false;
    for (const o of (b.options as Body[] | undefined) ?? []) {
      const d = o.DefElem as Body | undefined;
      if (d?.defname !== "analyze") continue;
      analyze = !isFalse(d.arg);
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

  /**
   * PREPARE: the rows come back later (EXECUTE, FETCH) without this analysis, so the target list is a sink. The
   * statement is judged by what it will run. Its $n are the prepared statement's, not bind parameters.
   */
  prepare(kind: Kind, b: Body, sc: Scope): Kind {
    const k = this.wrapped(kind, b.query, sc, Out.Sink);
    this.params = 0;
    return k;
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
      const [schemaname, relname] = names.length >= 2 ? names.slice(-2) : [undefined, names[0]];
      this.qualify({ schemaname, relname }, true);
    }
  }
}
