// Decision search over the PostgreSQL sink's table (src/audit/sinks/postgres.ts): one parameterized query per page
// over `kind = 'decision'`, filtering the jsonb `body` with the same predicates the spool backend applies in
// JavaScript (search-row.ts), ordered by (ts DESC, spool_id, seq DESC) and paged by that key.
//
// Only constants and the validated, quoted table name are ever part of the SQL text; every value comes in as a
// parameter. spool_id is compared and ordered in the "C" collation so that the order is the spool backend's (and
// does not depend on the database's locale). For large tables, an index that serves the order helps:
//   CREATE INDEX ON pamgate_audit (ts DESC, spool_id COLLATE "C", seq DESC) WHERE kind = 'decision';
import pg from "pg";
import { parseRecordLine } from "./record.js";
import {
  checkQuery,
  type DecisionPage,
  type DecisionQuery,
  type DecisionSearch,
  decodeCursor,
  encodeCursor,
  filterKey,
  InvalidSearchError,
} from "./search-query.js";
import { commandTextSql, type DecisionRow, decisionRow } from "./search-row.js";
import { quoteTable } from "./sinks/postgres.js";

export interface PostgresSearchOptions {
  /** The sink's table, `name` or `schema.name`. Default pamgate_audit. */
  table?: string;
  /** With a connection URL: the statement timeout of the pool made for it. Default 30 s. */
  timeoutMs?: number;
}

/** The row key the order and the cursor use; ts as UTC text with microseconds (what timestamptz holds). */
interface Key {
  ts: string | null;
  spool: string;
  seq: string;
}

const TS_TEXT = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/;
const SEQ_TEXT = /^\d{1,16}$/;

export class PostgresDecisionSearch implements DecisionSearch {
  private readonly pool: pg.Pool;
  private readonly ownPool: boolean;
  private readonly table: string;

  /** `source`: a pool (left open by close()) or a connection URL (a pool is made for it). */
  constructor(source: pg.Pool | string, options: PostgresSearchOptions = {}) {
    this.table = quoteTable(options.table ?? "pamgate_audit");
    if (typeof source === "string") {
      const timeout = options.timeoutMs ?? 30_000;
      this.pool = new pg.Pool({
        connectionString: source,
        max: 4,
        statement_timeout: timeout,
        connectionTimeoutMillis: timeout,
        application_name: "pamgate-audit-search",
      });
      this.pool.on("error", () => {}); // an idle connection dropped: the next query gets a new one
      this.ownPool = true;
    } else {
      this.pool = source;
      this.ownPool = false;
    }
  }

  async searchDecisions(query: DecisionQuery): Promise<DecisionPage> {
    checkQuery(query);
    const key = filterKey(query);
    const after = query.before === undefined ? null : cursorKey(query.before, key);
    const empty: DecisionPage = { decisions: [], next_cursor: null, source: "postgres", scanned: 0 };
    // PostgreSQL text cannot hold NUL, and a body that has one is stored as NULL (the sink): nothing can match.
    for (const v of [
      query.identity,
      query.resource,
      query.protocol,
      query.action,
      query.reason,
      query.q,
      query.sessionId,
    ])
      if (v?.includes("\u0000")) return empty;

    const params: unknown[] = [];
    const param = (v: unknown, type: string) => {
      params.push(v);
      return `$${params.length}::${type}`;
    };
    const where = ["kind = 'decision'"];
    if (query.identity !== undefined) {
      const v = param(query.identity, "text");
      where.push(
        `(body->'identity'->>'sub' = ${v} OR body->'identity'->'actors' @> jsonb_build_array(jsonb_build_object('sub', ${v})))`,
      );
    }
    if (query.resource !== undefined)
      where.push(`body->'resource'->>'name' = ${param(query.resource, "text")}`);
    if (query.protocol !== undefined) where.push(`body->>'protocol' = ${param(query.protocol, "text")}`);
    if (query.action !== undefined) where.push(`body->>'action' = ${param(query.action, "text")}`);
    if (query.reason !== undefined)
      where.push(`body->'reason_codes' @> jsonb_build_array(${param(query.reason, "text")})`);
    if (query.sessionId !== undefined) where.push(`session_id = ${param(query.sessionId, "text")}`);
    if (query.since) where.push(`ts >= ${param(query.since.toISOString(), "timestamptz")}`);
    if (query.until) where.push(`ts < ${param(query.until.toISOString(), "timestamptz")}`);
    if (query.q !== undefined)
      where.push(`strpos(lower(${commandTextSql("body")}), lower(${param(query.q, "text")})) > 0`);
    if (after) {
      // After the cursor's row in the order (ts DESC NULLS LAST, spool_id, seq DESC).
      const spool = param(after.spool, "text");
      const seq = param(after.seq, "bigint");
      const tie = `(spool_id COLLATE "C" > ${spool} OR (spool_id = ${spool} AND seq < ${seq}))`;
      if (after.ts === null) where.push(`(ts IS NULL AND ${tie})`);
      else {
        const ts = param(after.ts, "timestamptz");
        where.push(`(ts < ${ts} OR ts IS NULL OR (ts = ${ts} AND ${tie}))`);
      }
    }
    const limit = param(query.limit + 1, "int");
    // seq as text (a bigint beyond 2^53 stays exact) under another name: ORDER BY would take an output alias
    // `seq` for the column, and order text.
    const sql = `SELECT spool_id, seq::text AS seq_text, record,
       to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS ts_text
FROM ${this.table}
WHERE ${where.join("\n  AND ")}
ORDER BY ts DESC NULLS LAST, spool_id COLLATE "C", seq DESC
LIMIT ${limit}`;
    const { rows } = await this.pool.query<{
      spool_id: string;
      seq_text: string;
      record: string;
      ts_text: string | null;
    }>(sql, params);
    const page = rows.slice(0, query.limit);
    const decisions: DecisionRow[] = [];
    for (const r of page) {
      const rec = parseRecordLine(r.record, false);
      if (typeof rec === "string") continue;
      let body: unknown;
      try {
        body = JSON.parse(rec.body);
      } catch {
        continue;
      }
      const row = decisionRow(body, { spool_id: r.spool_id, seq: Number(r.seq_text) });
      if (row) decisions.push(row);
    }
    const last = page[page.length - 1];
    const next =
      rows.length > query.limit && last
        ? encodeCursor({
            v: 1,
            b: "postgres",
            f: key,
            ts: last.ts_text,
            sp: last.spool_id,
            seq: last.seq_text,
          })
        : null;
    return { decisions, next_cursor: next, source: "postgres", scanned: rows.length };
  }

  /** Ends the pool if this search made it (from a URL). */
  async close(): Promise<void> {
    if (this.ownPool) await this.pool.end();
  }
}

function cursorKey(cursor: string, key: string): Key {
  const p = decodeCursor(cursor, "postgres", key);
  const { ts, sp, seq } = p;
  if (
    !(ts === null || (typeof ts === "string" && TS_TEXT.test(ts))) ||
    typeof sp !== "string" ||
    sp.length > 200 ||
    sp.includes("\u0000") ||
    typeof seq !== "string" ||
    !SEQ_TEXT.test(seq)
  )
    throw new InvalidSearchError("before is not a cursor this search returned");
  return { ts, spool: sp, seq };
}
