// Resolves result columns to their origin — RowDescription gives a table OID and column number — and tables
// to their column lists (for COPY), through the upstream server's own catalog, on a small connection pool with
// pamgate's credentials. Cached per table, for a bounded time (a renamed column is picked up after the TTL).
import pg from "pg";
import type { UpstreamTarget } from "./upstream.js";

interface TableColumns {
  /** attnum → "schema.table.column" */
  byAttnum: Map<number, string>;
  /** visible columns in order */
  ordered: string[];
  at: number;
}

export class Catalog {
  private readonly pool: pg.Pool;
  private readonly tables = new Map<number, TableColumns>();
  private readonly byName = new Map<string, number>();

  constructor(
    target: UpstreamTarget,
    private readonly ttlMs = 60_000,
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
    });
    this.pool.on("error", () => {}); // idle-client errors surface on the next query instead
  }

  private fresh(oid: number): TableColumns | undefined {
    const t = this.tables.get(oid);
    return t && Date.now() - t.at < this.ttlMs ? t : undefined;
  }

  private async load(oids: number[]): Promise<void> {
    const { rows } = await this.pool.query<{
      oid: number;
      attnum: number;
      nspname: string;
      relname: string;
      attname: string;
    }>(
      `SELECT c.oid::int8 AS oid, a.attnum, n.nspname, c.relname, a.attname
         FROM pg_catalog.pg_attribute a
         JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE a.attrelid = ANY($1::oid[]) AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY c.oid, a.attnum`,
      [oids],
    );
    const now = Date.now();
    for (const oid of oids) this.tables.set(oid, { byAttnum: new Map(), ordered: [], at: now });
    for (const r of rows) {
      const t = this.tables.get(Number(r.oid)) as TableColumns;
      const name = `${r.nspname}.${r.relname}.${r.attname}`;
      t.byAttnum.set(r.attnum, name);
      t.ordered.push(name);
      this.byName.set(`${r.nspname}.${r.relname}`, Number(r.oid));
    }
  }

  /** Origins of result columns ("schema.table.column", or null for computed columns). */
  async origins(columns: Array<{ tableOid: number; column: number }>): Promise<Array<string | null>> {
    const missing = [
      ...new Set(columns.filter((c) => c.tableOid !== 0 && !this.fresh(c.tableOid)).map((c) => c.tableOid)),
    ];
    if (missing.length > 0) await this.load(missing);
    return columns.map((c) =>
      c.tableOid === 0 ? null : (this.tables.get(c.tableOid)?.byAttnum.get(c.column) ?? null),
    );
  }

  /** The columns of a table ("schema.table") in order, as COPY without a column list writes them. */
  async tableColumns(qualified: string): Promise<string[]> {
    const cachedOid = this.byName.get(qualified);
    const cached = cachedOid === undefined ? undefined : this.fresh(cachedOid);
    if (cached) return cached.ordered;
    const { rows } = await this.pool.query<{ oid: string }>("SELECT to_regclass($1)::oid::int8 AS oid", [
      qualified,
    ]);
    const oid = Number(rows[0]?.oid ?? 0);
    if (!oid) return [];
    await this.load([oid]);
    return this.tables.get(oid)?.ordered ?? [];
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}
