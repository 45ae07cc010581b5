// The PostgreSQL sink: batched inserts (one INSERT … SELECT FROM unnest(…) per batch) into a table it creates.
// Rows keep the record exactly as hashed (`record`) with seq, prev_hash and hash, so `pamgate audit verify
// --postgres` checks the same chain in the table; `body` is a jsonb copy of the record's body for queries.
// The primary key (spool_id, seq) with ON CONFLICT DO NOTHING turns the shipper's at-least-once delivery into
// exactly one row per record.
import pg from "pg";
import { errorText } from "../../util/errors.js";
import type { SpoolRecord } from "../record.js";
import type { Sink } from "../shipper.js";

export interface PostgresSinkConfig {
  type: "postgres";
  /** postgres://user:password@host:port/database */
  url: string;
  /** Table name, optionally schema-qualified. Default pamgate_audit. */
  table?: string;
  name?: string;
  batchSize?: number;
  /** Connection and statement timeout. Default 10 s. */
  timeoutMs?: number;
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/** Quotes a table name given as `name` or `schema.name`; rejects anything else. */
export function quoteTable(table: string): string {
  const parts = table.split(".");
  if (parts.length > 2 || !parts.every((p) => IDENT.test(p))) {
    throw new Error(`invalid audit table name "${table}" (expected name or schema.name)`);
  }
  return parts.map((p) => `"${p}"`).join(".");
}

/** A readable target without credentials: user@host:port/db table. */
export function describePostgres(url: string, table: string): string {
  try {
    const u = new URL(url);
    return `postgres ${u.username ? `${decodeURIComponent(u.username)}@` : ""}${u.host}${u.pathname} table ${table}`;
  } catch {
    return `postgres table ${table}`;
  }
}

export function createTableSql(table: string): string[] {
  const t = quoteTable(table);
  const base = table.split(".").pop() as string;
  return [
    `CREATE TABLE IF NOT EXISTS ${t} (
  spool_id    text        NOT NULL,
  seq         bigint      NOT NULL,
  kind        text        NOT NULL,
  prev_hash   text        NOT NULL,
  hash        text        NOT NULL,
  record      text        NOT NULL,
  body        jsonb,
  decision_id text,
  session_id  text,
  ts          timestamptz,
  shipped_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (spool_id, seq)
)`,
    `CREATE INDEX IF NOT EXISTS "${base}_decision_id_idx" ON ${t} (decision_id)`,
    `CREATE INDEX IF NOT EXISTS "${base}_session_idx" ON ${t} (session_id, spool_id, seq)`,
  ];
}

/** jsonb cannot hold \u0000 or unpaired surrogates; such bodies are stored as NULL (the record text keeps all). */
const JSONB_UNSAFE = /\\u(?:0000|[dD][89a-fA-F])/;

export class PostgresSink implements Sink {
  readonly name: string;
  readonly description: string;
  readonly maxBatchRecords: number;
  readonly maxBatchBytes = 8 * 1024 * 1024;
  private readonly table: string;
  private readonly insertSql: string;
  private client: pg.Client | null = null;
  private connecting: Promise<pg.Client> | null = null;

  constructor(
    private readonly config: PostgresSinkConfig,
    private readonly spoolId: string,
    name: string,
  ) {
    this.table = config.table ?? "pamgate_audit";
    const t = quoteTable(this.table);
    this.name = name;
    this.description = describePostgres(config.url, this.table);
    this.maxBatchRecords = config.batchSize ?? 1000;
    this.insertSql = `INSERT INTO ${t} (spool_id, seq, kind, prev_hash, hash, record, body, decision_id, session_id, ts)
SELECT $1, r.seq, r.kind, r.prev, r.hash, r.record, b.body, b.body->>'decision_id', b.body->>'session_id',
       CASE WHEN b.body->>'timestamp' ~ '^\\d{4}-\\d\\d-\\d\\dT' THEN (b.body->>'timestamp')::timestamptz END
FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::boolean[])
       AS r(seq, kind, prev, hash, record, jsonok)
CROSS JOIN LATERAL (SELECT CASE WHEN r.jsonok THEN (r.record::jsonb)->'body' END AS body) AS b
ON CONFLICT (spool_id, seq) DO NOTHING`;
  }

  accepts(): boolean {
    return true;
  }

  async send(records: SpoolRecord[]): Promise<void> {
    const client = await this.connect();
    try {
      await client.query(this.insertSql, [
        this.spoolId,
        records.map((r) => r.seq),
        records.map((r) => r.kind),
        records.map((r) => r.prev),
        records.map((r) => r.hash),
        records.map((r) => r.line),
        records.map((r) => !JSONB_UNSAFE.test(r.body)),
      ]);
    } catch (err) {
      this.drop();
      throw new Error(`${this.description}: ${errorText(err)}`);
    }
  }

  private async connect(): Promise<pg.Client> {
    if (this.client) return this.client;
    this.connecting ??= (async () => {
      const timeout = this.config.timeoutMs ?? 10_000;
      const client = new pg.Client({
        connectionString: this.config.url,
        connectionTimeoutMillis: timeout,
        statement_timeout: timeout,
        query_timeout: timeout + 1000,
        application_name: "pamgate-audit",
      });
      // A connection that dies while idle emits 'error'; the next send reconnects.
      client.on("error", () => {
        if (this.client === client) this.drop();
      });
      try {
        await client.connect();
        // Only when it is missing: a writer role without CREATE on the schema can still insert into it.
        const exists = await client.query<{ t: string | null }>("SELECT to_regclass($1)::text AS t", [
          quoteTable(this.table),
        ]);
        const ddl = exists.rows[0]?.t ? [] : createTableSql(this.table);
        for (const sql of ddl) {
          try {
            await client.query(sql);
          } catch (err) {
            // Two gateways creating the table at once: one of them loses the race harmlessly.
            const code = (err as { code?: string }).code;
            if (code !== "23505" && code !== "42P07") throw err;
          }
        }
      } catch (err) {
        client.end().catch(() => {});
        throw new Error(`${this.description}: ${errorText(err)}`);
      }
      this.client = client;
      return client;
    })().finally(() => {
      this.connecting = null;
    });
    return this.connecting;
  }

  private drop(): void {
    const c = this.client;
    this.client = null;
    c?.end().catch(() => {});
  }

  async close(): Promise<void> {
    const c = this.client;
    this.client = null;
    await c?.end().catch(() => {});
  }
}
