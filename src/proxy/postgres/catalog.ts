// What the upstream server's own catalog says about the objects a statement names, on a small connection pool
// with pamgate's credentials:
//
// - relations: kind, columns in order (for `*` and COPY), and for a view or materialized view where each output
//   column comes from (its stored query, node-tree.ts) and what it reads (pg_depend), so that masking sees
//   through it;
// - functions: by name as a statement calls them, or by OID as a view depends on them — built in or not,
//   volatility, language, security definer;
// - result columns: RowDescription gives a table OID and column number; a view's column is followed to the table
//   column it passes through.
//
// Cached per object for a bounded time (`ttlMs`): a change made outside pamgate is seen after it. A schema change
// made through pamgate clears the cache (`invalidate`, called by the session once the statement has run).
import pg from "pg";
import { type ColumnRef, type ViewOutput, viewOutputs } from "./node-tree.js";
import type { UpstreamTarget } from "./upstream.js";

/** OIDs below this are PostgreSQL's own objects (FirstNormalObjectId): built in, never user-defined. */
const FIRST_NORMAL_OID = 16384;
/** How deep views over views are followed; deeper is treated as opaque. */
const MAX_VIEW_DEPTH = 32;

export interface ViewInfo {
  /** By attribute number − 1. */
  outputs: ViewOutput[];
  /** Table (or view) columns the view's query reads anywhere (pg_depend). */
  reads: ColumnRef[];
  /** Relations the query depends on as a whole (a whole-row reference): every column counts as read. */
  wholeRows: number[];
  /** User-defined functions the query calls (pg_depend records no built-in function). */
  functions: number[];
  /** The stored query could not be read: every column may be made of anything it reads. */
  opaque: boolean;
}

export interface RelationInfo {
  oid: number;
  /** pg_class.relkind: r table, p partitioned, v view, m materialized view, f foreign table, … */
  kind: string;
  /** schema.relation */
  name: string;
  /** attnum → "schema.relation.column" */
  byAttnum: Map<number, string>;
  /** visible columns in order */
  ordered: string[];
  view: ViewInfo | null;
  at: number;
}

export interface RoutineInfo {
  oid: number;
  /** schema.name */
  name: string;
  builtin: boolean;
  volatility: "immutable" | "stable" | "volatile";
  language: string;
  /** function, procedure, aggregate, window */
  kind: string;
  security_definer: boolean;
}

const VOLATILITY = { i: "immutable", s: "stable", v: "volatile" } as const;
const PROKIND: Record<string, string> = { f: "function", p: "procedure", a: "aggregate", w: "window" };

export class Catalog {
  private readonly pool: pg.Pool;
  private readonly relations = new Map<number, RelationInfo>();
  /** "schema.relation" → OID (0: no such relation), with when it was looked up. */
  private readonly byName = new Map<string, { oid: number; at: number }>();
  private readonly routines = new Map<number, RoutineInfo & { at: number }>();
  /** "schema.name" → candidate OIDs (overloads), with when they were looked up. */
  private readonly routinesByName = new Map<string, { oids: number[]; at: number }>();
  /** "schema.operator" → the functions of the user-defined operators of that name, with when they were looked up. */
  private readonly operatorsByName = new Map<string, { oids: number[]; at: number }>();
  /** Bumped by `invalidate`: what was derived from the catalog before is stale. */
  generation = 0;

  constructor(
    target: UpstreamTarget,
    readonly ttlMs = 60_000,
  ) {
    this.pool = new pg.Pool({
      host: target.host,
      port: target.port,
      database: target.database,
      user: target.user,
      password: target.password,
      ssl:
        target.sslmode && target.sslmode !== "disable"
          ? { rejectUnauthorized: target.sslmode === "verify-full" }
          : false,
      max: 2,
      idleTimeoutMillis: 30_000,
      application_name: "pamgate-catalog",
      // Every name the catalog prints (pg_get_… functions, regclass output) comes out schema-qualified.
      options: "-c search_path=",
    });
    this.pool.on("error", () => {}); // idle-client errors surface on the next query instead
  }

  /** Forgets everything: the next lookups ask the server again. */
  invalidate(): void {
    this.relations.clear();
    this.byName.clear();
    this.routines.clear();
    this.routinesByName.clear();
    this.operatorsByName.clear();
    this.generation++;
  }

  private isFresh(at: number): boolean {
    return Date.now() - at < this.ttlMs;
  }

  private freshRelation(oid: number): RelationInfo | undefined {
    const t = this.relations.get(oid);
    return t && this.isFresh(t.at) ? t : undefined;
  }

  /** Loads relations by OID, and the views among them with their stored queries and dependencies. */
  private async load(oids: number[]): Promise<void> {
    const { rows } = await this.pool.query<{
      oid: string;
      relkind: string;
      nspname: string;
      relname: string;
      cols: Array<[number, string]> | null;
    }>(
      `SELECT c.oid::int8 AS oid, c.relkind::text AS relkind, n.nspname, c.relname,
              (SELECT json_agg(json_build_array(a.attnum, a.attname) ORDER BY a.attnum)
                 FROM pg_catalog.pg_attribute a
                WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS cols
         FROM pg_catalog.pg_class c
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE c.oid = ANY($1::oid[])`,
      [oids],
    );
    const now = Date.now();
    const views: number[] = [];
    for (const r of rows) {
      const name = `${r.nspname}.${r.relname}`;
      const info: RelationInfo = {
        oid: Number(r.oid),
        kind: r.relkind,
        name,
        byAttnum: new Map(),
        ordered: [],
        view: null,
        at: now,
      };
      for (const [attnum, attname] of r.cols ?? []) {
        const col = `${name}.${attname}`;
        info.byAttnum.set(attnum, col);
        info.ordered.push(col);
      }
      this.relations.set(info.oid, info);
      this.byName.set(name, { oid: info.oid, at: now });
      if (r.relkind === "v" || r.relkind === "m") views.push(info.oid);
    }
    // An OID the server no longer knows (a dropped table) resolves to nothing rather than being asked again.
    for (const oid of oids) {
      if (!this.relations.has(oid))
        this.relations.set(oid, {
          oid,
          kind: "",
          name: "",
          byAttnum: new Map(),
          ordered: [],
          view: null,
          at: now,
        });
    }
    if (views.length > 0) await this.loadViews(views);
  }

  private async loadViews(oids: number[]): Promise<void> {
    const { rows } = await this.pool.query<{
      oid: string;
      action: string | null;
      deps: Array<["proc" | "class" | null, string, number]> | null;
    }>(
      `SELECT r.ev_class::int8 AS oid, r.ev_action::text AS action,
              (SELECT json_agg(json_build_array(
                        CASE d.refclassid WHEN 'pg_catalog.pg_proc'::regclass THEN 'proc'
                                          WHEN 'pg_catalog.pg_class'::regclass THEN 'class' END,
                        d.refobjid::int8, d.refobjsubid))
                 FROM pg_catalog.pg_depend d
                WHERE d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = r.oid
                  AND NOT (d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid = r.ev_class)) AS deps
         FROM pg_catalog.pg_rewrite r
        WHERE r.ev_class = ANY($1::oid[]) AND r.rulename = '_RETURN'`,
      [oids],
    );
    for (const r of rows) {
      const rel = this.relations.get(Number(r.oid));
      if (!rel) continue;
      const view: ViewInfo = { outputs: [], reads: [], wholeRows: [], functions: [], opaque: false };
      try {
        view.outputs = viewOutputs(r.action ?? "");
      } catch {
        view.opaque = true;
      }
      for (const [cls, oid, sub] of r.deps ?? []) {
        const o = Number(oid);
        if (cls === "proc") view.functions.push(o);
        else if (cls === "class") {
          if (sub > 0) view.reads.push([o, sub]);
          else view.wholeRows.push(o);
        }
      }
      rel.view = view;
    }
    // A view without a _RETURN rule cannot be traced.
    for (const oid of oids) {
      const rel = this.relations.get(oid);
      if (rel && !rel.view) rel.view = { outputs: [], reads: [], wholeRows: [], functions: [], opaque: true };
    }
  }

  /** Relations by OID (loading what is missing or stale); unknown OIDs give no entry. */
  async relationsByOid(oids: readonly number[]): Promise<Map<number, RelationInfo>> {
    const missing = [...new Set(oids.filter((o) => o !== 0 && !this.freshRelation(o)))];
    if (missing.length > 0) await this.load(missing);
    const out = new Map<number, RelationInfo>();
    for (const o of oids) {
      const r = this.relations.get(o);
      if (r?.kind) out.set(o, r);
    }
    return out;
  }

  /** Relations by qualified name ("schema.relation"); names the server does not know give no entry. */
  async relationsByName(names: readonly string[]): Promise<Map<string, RelationInfo>> {
    const missing = names.filter((n) => {
      const e = this.byName.get(n);
      return !e || !this.isFresh(e.at) || (e.oid !== 0 && !this.freshRelation(e.oid));
    });
    if (missing.length > 0) {
      const { rows } = await this.pool.query<{ name: string; oid: string | null }>(
        "SELECT n AS name, pg_catalog.to_regclass(pg_catalog.quote_ident(split_part(n, '.', 1)) || '.' || pg_catalog.quote_ident(substr(n, strpos(n, '.') + 1)))::oid::int8 AS oid FROM unnest($1::text[]) AS n",
        [missing],
      );
      const now = Date.now();
      for (const r of rows) this.byName.set(r.name, { oid: Number(r.oid ?? 0), at: now });
    }
    const oids = names.map((n) => this.byName.get(n)?.oid ?? 0);
    const rels = await this.relationsByOid(oids.filter((o) => o !== 0));
    const out = new Map<string, RelationInfo>();
    names.forEach((n, i) => {
      const r = rels.get(oids[i] as number);
      if (r) out.set(n, r);
    });
    return out;
  }

  /** Functions by OID. */
  async routinesByOid(oids: readonly number[]): Promise<RoutineInfo[]> {
    const missing = [...new Set(oids.filter((o) => !this.freshRoutine(o)))];
    if (missing.length > 0) await this.loadRoutines("p.oid = ANY($1::oid[])", [missing]);
    return oids.map((o) => this.routines.get(o)).filter((r): r is RoutineInfo & { at: number } => !!r);
  }

  /**
   * Every function a call of `name` may resolve to: every overload of that name in each of `schemas` (PostgreSQL
   * picks among them by argument types, which the gateway does not know, so the caller considers them all).
   */
  async routineCandidates(schemas: readonly string[], name: string): Promise<RoutineInfo[]> {
    const keys = schemas.map((s) => `${s}.${name}`);
    const missing = keys.filter((k) => {
      const e = this.routinesByName.get(k);
      return !e || !this.isFresh(e.at) || e.oids.some((o) => !this.freshRoutine(o));
    });
    if (missing.length > 0) {
      const now = Date.now();
      for (const k of missing) this.routinesByName.set(k, { oids: [], at: now });
      const found = await this.loadRoutines("n.nspname = ANY($1::text[]) AND p.proname = $2", [
        schemas,
        name,
      ]);
      for (const r of found) this.routinesByName.get(r.name)?.oids.push(r.oid);
    }
    return keys
      .flatMap((k) => this.routinesByName.get(k)?.oids ?? [])
      .flatMap((o) => this.routines.get(o) ?? []);
  }

  /**
   * The functions user-defined operators named `name` in `schemas` run (every overload: the operand types decide).
   * PostgreSQL's own operators are not looked at: their functions are built in.
   */
  async operatorFunctions(schemas: readonly string[], name: string): Promise<RoutineInfo[]> {
    const keys = schemas.map((s) => `${s}.${name}`);
    if (keys.some((k) => !this.isFresh(this.operatorsByName.get(k)?.at ?? -Infinity))) {
      const { rows } = await this.pool.query<{ nspname: string; fn: string }>(
        `SELECT n.nspname, o.oprcode::oid::int8 AS fn
           FROM pg_catalog.pg_operator o JOIN pg_catalog.pg_namespace n ON n.oid = o.oprnamespace
          WHERE n.nspname = ANY($1::text[]) AND o.oprname = $2 AND o.oid >= ${FIRST_NORMAL_OID}`,
        [schemas, name],
      );
      const now = Date.now();
      for (const k of keys) this.operatorsByName.set(k, { oids: [], at: now });
      for (const r of rows) this.operatorsByName.get(`${r.nspname}.${name}`)?.oids.push(Number(r.fn));
    }
    const oids = keys.flatMap((k) => this.operatorsByName.get(k)?.oids ?? []);
    return oids.length > 0 ? this.routinesByOid(oids) : [];
  }

  private freshRoutine(oid: number): boolean {
    const r = this.routines.get(oid);
    return !!r && this.isFresh(r.at);
  }

  private async loadRoutines(where: string, params: unknown[]): Promise<RoutineInfo[]> {
    const { rows } = await this.pool.query<{
      oid: string;
      nspname: string;
      proname: string;
      provolatile: "i" | "s" | "v";
      lanname: string;
      prokind: string;
      prosecdef: boolean;
    }>(
      `SELECT p.oid::int8 AS oid, n.nspname, p.proname, p.provolatile::text AS provolatile, l.lanname,
              p.prokind::text AS prokind, p.prosecdef
         FROM pg_catalog.pg_proc p
         JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
         JOIN pg_catalog.pg_language l ON l.oid = p.prolang
        WHERE ${where}`,
      params,
    );
    const now = Date.now();
    return rows.map((r) => {
      const info = {
        oid: Number(r.oid),
        name: `${r.nspname}.${r.proname}`,
        builtin: Number(r.oid) < FIRST_NORMAL_OID,
        volatility: VOLATILITY[r.provolatile] ?? "volatile",
        language: r.lanname,
        kind: PROKIND[r.prokind] ?? r.prokind,
        security_definer: r.prosecdef,
        at: now,
      };
      this.routines.set(info.oid, info);
      return info;
    });
  }

  /**
   * The table column a column of relation `oid` passes through: itself for a table, the column a view's output
   * passes through (followed through views over views), null for a computed view column or an unknown one.
   */
  private async baseColumn(ref: ColumnRef, depth = 0): Promise<ColumnRef | null> {
    const rel = (await this.relationsByOid([ref[0]])).get(ref[0]);
    if (!rel) return null;
    // A materialized view's rows were made by its stored query too: its columns are traced like a view's.
    if (!rel.view) return ref;
    if (depth >= MAX_VIEW_DEPTH || rel.view.opaque) return null;
    const out = rel.view.outputs[ref[1] - 1];
    return out?.origin ? this.baseColumn(out.origin, depth + 1) : null;
  }

  /** "schema.relation.column" of a column, or null. */
  async columnName(ref: ColumnRef): Promise<string | null> {
    return (await this.relationsByOid([ref[0]])).get(ref[0])?.byAttnum.get(ref[1]) ?? null;
  }

  /**
   * Origins of result columns ("schema.table.column", or null for computed columns). A view's column that passes
   * a table column through is that table column, so the table's masks apply to it.
   */
  async origins(columns: Array<{ tableOid: number; column: number }>): Promise<Array<string | null>> {
    await this.relationsByOid(columns.map((c) => c.tableOid));
    return Promise.all(
      columns.map(async (c) => {
        if (c.tableOid === 0) return null;
        const rel = this.relations.get(c.tableOid);
        if (rel?.view) {
          const base = await this.baseColumn([c.tableOid, c.column]);
          return base ? this.columnName(base) : (rel.byAttnum.get(c.column) ?? null);
        }
        return rel?.byAttnum.get(c.column) ?? null;
      }),
    );
  }

  /** The columns of a table ("schema.table") in order, as COPY without a column list writes them. */
  async tableColumns(qualified: string): Promise<string[]> {
    return (await this.relationsByName([qualified])).get(qualified)?.ordered ?? [];
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}
