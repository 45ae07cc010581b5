// Catalog resolution: what a statement's text cannot say about the objects it names, added to its policy
// `command` from the server's own catalog (catalog.ts) before the decision.
//
// - `SELECT *`, `t.*` and `TABLE t` are expanded to the relation's columns, so that policy sees every column and
//   masks apply column by column (the proxy masks a result by the origin PostgreSQL gives each column).
// - A view (or materialized view) is followed to what its stored query reads: its base tables join
//   `tables.read`, the columns it reads join `columns`, the views are listed in `views`, and for masking each of
//   its output columns is traced to the table column it passes through or the columns it is computed from
//   (`views` of the result, used by the mask check).
// - Functions are looked up as the server will find them (pg_catalog first, then the pinned schema, or the schema
//   the text names; every overload, since the argument types decide among them): user-defined ones — and those a
//   view calls — are listed in `user_functions`, and the volatile ones count as side effects (a read calling
//   one has category `write`).
//
// Results are cached per analyzed command (the analysis cache shares those objects) for the catalog's TTL and
// generation, so a repeated statement costs a map lookup.
import type { AnalyzedStatement, StatementCommand, UserFunction } from "./analysis/index.js";
import type { Catalog, RelationInfo, RoutineInfo } from "./catalog.js";
import type { ColumnRef } from "./node-tree.js";

/** One output column of a view a statement reads, traced for masking. */
export interface ViewColumn {
  /** schema.view.column */
  name: string;
  /** The table column it passes through unchanged (through views over views), else null. */
  passes: string | null;
  /** The table columns its value is made of (itself when it passes one through). */
  sources: string[];
}

export interface ResolvedView {
  name: string;
  columns: ViewColumn[];
}

/** An analyzed statement with its command completed from the catalog. */
export interface ResolvedStatement extends AnalyzedStatement {
  /** The views the statement reads directly, with their columns traced. */
  views?: ResolvedView[];
}

const MAX_DEPTH = 32;

interface Entry {
  at: number;
  generation: number;
  command: StatementCommand;
  views: ResolvedView[] | undefined;
}

export class Resolver {
  private readonly cache = new WeakMap<StatementCommand, Entry>();

  constructor(
    private readonly catalog: Catalog,
    /** The schema unqualified names resolve in (the session's pinned search_path). */
    private readonly schema: string,
  ) {}

  /** Whether resolution may change this statement: it names relations or calls functions. */
  static needed(stmt: AnalyzedStatement): boolean {
    const t = stmt.command.tables;
    return t.read.length > 0 || t.write.length > 0 || stmt.calls.length > 0 || stmt.operators.length > 0;
  }

  /**
   * The statement with its command completed; the same object when nothing changes. A cached result is returned
   * without a promise. Throws when the catalog cannot be read.
   */
  resolve(stmt: AnalyzedStatement): ResolvedStatement | Promise<ResolvedStatement> {
    if (!Resolver.needed(stmt)) return stmt;
    const hit = this.cache.get(stmt.command);
    if (hit && hit.generation === this.catalog.generation && Date.now() - hit.at < this.catalog.ttlMs)
      return hit.command === stmt.command && !hit.views
        ? stmt
        : { ...stmt, command: hit.command, views: hit.views };
    return this.resolveUncached(stmt);
  }

  private async resolveUncached(stmt: AnalyzedStatement): Promise<ResolvedStatement> {
    const generation = this.catalog.generation;
    const at = Date.now();
    const cmd = stmt.command;
    const names = [...new Set([...cmd.tables.read, ...cmd.tables.write])];
    const rels =
      names.length > 0 ? await this.catalog.relationsByName(names) : new Map<string, RelationInfo>();

    const read = new Set(cmd.tables.read);
    const write = new Set(cmd.tables.write);
    const columns = new Set<string>();
    const views = new Set<string>();
    const viewFunctions = new Set<number>();
    // `*` of a relation → its columns
    for (const c of cmd.columns) {
      const rel = c.endsWith(".*") ? rels.get(c.slice(0, -2)) : undefined;
      if (rel) for (const col of rel.ordered) columns.add(col);
      else columns.add(c);
    }
    // views → what they read
    const direct: ResolvedView[] = [];
    for (const [name, rel] of rels) {
      if (!rel.view) continue;
      const reach = await this.viewReach(rel);
      for (const v of reach.views) views.add(v);
      for (const t of reach.tables) (write.has(name) ? write : read).add(t);
      for (const c of reach.columns) columns.add(c);
      for (const f of reach.functions) viewFunctions.add(f);
      if (cmd.tables.read.includes(name)) direct.push(await this.traceView(rel, reach.columns));
    }

    const routines = await this.routinesCalled(stmt.calls, stmt.operators);
    if (viewFunctions.size > 0) routines.push(...(await this.catalog.routinesByOid([...viewFunctions])));
    const userFunctions = new Map<string, UserFunction>();
    for (const r of routines) if (!r.builtin) userFunctions.set(r.name, userFunction(r));
    const sideEffects = new Set(cmd.side_effects);
    for (const f of userFunctions.values()) if (f.volatility === "volatile") sideEffects.add(f.name);

    const changed =
      views.size > 0 ||
      userFunctions.size > 0 ||
      columns.size !== cmd.columns.length ||
      cmd.columns.some((c) => !columns.has(c));
    const command: StatementCommand = changed
      ? Object.freeze({
          ...cmd,
          category: cmd.category === "read" && sideEffects.size > 0 ? "write" : cmd.category,
          tables: Object.freeze({ read: [...read].sort(), write: [...write].sort() }),
          columns: [...columns].sort(),
          side_effects: [...sideEffects].sort(),
          views: [...views].sort(),
          user_functions: [...userFunctions.values()].sort((a, b) => (a.name < b.name ? -1 : 1)),
        })
      : cmd;
    const resolvedViews = direct.length > 0 ? direct : undefined;
    this.cache.set(cmd, { at, generation, command, views: resolvedViews });
    return command === cmd && !resolvedViews ? stmt : { ...stmt, command, views: resolvedViews };
  }

  /** Everything a view reads, through the views it reads: relations, columns, views, functions. */
  private async viewReach(
    root: RelationInfo,
  ): Promise<{ views: string[]; tables: string[]; columns: string[]; functions: number[] }> {
    const views: string[] = [];
    const tables = new Set<string>();
    const columns = new Set<string>();
    const functions: number[] = [];
    const seen = new Set<number>();
    let level = [root];
    for (let depth = 0; level.length > 0 && depth < MAX_DEPTH; depth++) {
      const next: RelationInfo[] = [];
      for (const rel of level) {
        if (seen.has(rel.oid) || !rel.view) continue;
        seen.add(rel.oid);
        views.push(rel.name);
        functions.push(...rel.view.functions);
        const refs = await this.catalog.relationsByOid([
          ...rel.view.reads.map((r) => r[0]),
          ...rel.view.wholeRows,
        ]);
        for (const [oid, attnum] of rel.view.reads) {
          const r = refs.get(oid);
          if (!r) continue;
          tables.add(r.name);
          const col = r.byAttnum.get(attnum);
          if (col) columns.add(col);
          if (r.view) next.push(r);
        }
        for (const oid of rel.view.wholeRows) {
          const r = refs.get(oid);
          if (!r) continue;
          tables.add(r.name);
          for (const col of r.ordered) columns.add(col);
          if (r.view) next.push(r);
        }
      }
      level = next;
    }
    return { views, tables: [...tables], columns: [...columns], functions };
  }

  /** A view's output columns traced to table columns; `everything` is what it may be made of when untraceable. */
  private async traceView(rel: RelationInfo, everything: string[]): Promise<ResolvedView> {
    const columns: ViewColumn[] = [];
    for (const [attnum, name] of rel.byAttnum) {
      const t = await this.trace([rel.oid, attnum], everything, 0);
      columns.push({ name, ...t });
    }
    return { name: rel.name, columns };
  }

  private async trace(
    ref: ColumnRef,
    everything: string[],
    depth: number,
  ): Promise<{ passes: string | null; sources: string[] }> {
    const rel = (await this.catalog.relationsByOid([ref[0]])).get(ref[0]);
    const self = rel?.byAttnum.get(ref[1]);
    if (!rel || !self) return { passes: null, sources: everything };
    if (!rel.view) return { passes: self, sources: [self] };
    const out = rel.view.outputs[ref[1] - 1];
    if (depth >= MAX_DEPTH || rel.view.opaque || !out) return { passes: null, sources: everything };
    if (out.origin) return this.trace(out.origin, everything, depth + 1);
    if (!out.sources) return { passes: null, sources: everything };
    const sources: string[] = [];
    for (const s of out.sources) sources.push(...(await this.trace(s, everything, depth + 1)).sources);
    return { passes: null, sources };
  }

  /** Every function the calls and the operators may resolve to. */
  private async routinesCalled(
    calls: readonly string[][],
    operators: readonly string[][],
  ): Promise<RoutineInfo[]> {
    const out: RoutineInfo[] = [];
    for (const call of calls) {
      const [schemas, name] = this.lookupPath(call);
      out.push(...(await this.catalog.routineCandidates(schemas, name)));
    }
    for (const op of operators) {
      const [schemas, name] = this.lookupPath(op);
      out.push(...(await this.catalog.operatorFunctions(schemas, name)));
    }
    return out;
  }

  /** Where the server looks for a name as written: the schema it names, else pg_catalog and the pinned schema. */
  private lookupPath(parts: readonly string[]): [string[], string] {
    const name = parts[parts.length - 1] as string;
    return parts.length > 1
      ? [[parts[parts.length - 2] as string], name]
      : [["pg_catalog", this.schema], name];
  }
}

function userFunction(r: RoutineInfo): UserFunction {
  return {
    name: r.name,
    volatility: r.volatility,
    language: r.language,
    kind: r.kind,
    security_definer: r.security_definer,
  };
}
