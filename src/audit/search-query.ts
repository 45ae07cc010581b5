// The decision search's query and page, what both backends share: checking a query, its cursor (an opaque token
// that says where the next page starts and which filters it belongs to), and comparing event timestamps.
import { createHash } from "node:crypto";
import type { BodyFilters, DecisionRow } from "./search-row.js";

export interface DecisionQuery {
  /** The requester's subject or any actor's in the delegation chain, exactly. */
  identity?: string;
  /** The resource name, exactly. */
  resource?: string;
  /** postgres | ssh | kubernetes */
  protocol?: string;
  /** The enforced action (the event's `action`): allow | mask | block | approve. */
  action?: string;
  /** A reason code the event's `reason_codes` (the enforced reasons) contain. */
  reason?: string;
  /** Event time range: since inclusive, until exclusive. */
  since?: Date;
  until?: Date;
  /** Case-insensitive substring of the command text (see search-row.ts). */
  q?: string;
  sessionId?: string;
  /** 1..500 */
  limit: number;
  /** A previous page's next_cursor. */
  before?: string;
}

export interface DecisionPage {
  /** Newest first. */
  decisions: DecisionRow[];
  /** Where the next page starts; null when there is nothing more. */
  next_cursor: string | null;
  source: "spool" | "postgres";
  /** Records looked at for this page (spool: lines read; PostgreSQL: rows fetched). */
  scanned: number;
}

export interface DecisionSearch {
  searchDecisions(query: DecisionQuery): Promise<DecisionPage>;
}

/** The query or its cursor is unusable: the caller's mistake (an API answers 400), not the audit store's. */
export class InvalidSearchError extends Error {
  override name = "InvalidSearchError";
}

export const MAX_LIMIT = 500;
/** Longest filter value accepted; longer ones cannot be an identifier or a useful search text. */
export const MAX_FILTER_LENGTH = 4096;

const TEXT_FILTERS = ["identity", "resource", "protocol", "action", "reason", "q", "sessionId"] as const;

/** Checks a query (the API validates too; this protects callers that do not). Throws InvalidSearchError. */
export function checkQuery(query: DecisionQuery): void {
  if (!Number.isInteger(query.limit) || query.limit < 1 || query.limit > MAX_LIMIT)
    throw new InvalidSearchError(`limit must be an integer from 1 to ${MAX_LIMIT}`);
  for (const k of TEXT_FILTERS) {
    const v = query[k];
    if (v === undefined) continue;
    if (typeof v !== "string") throw new InvalidSearchError(`${k} must be a string`);
    if (v.length > MAX_FILTER_LENGTH)
      throw new InvalidSearchError(`${k} is longer than ${MAX_FILTER_LENGTH} characters`);
  }
  for (const k of ["since", "until"] as const) {
    const v = query[k];
    if (v !== undefined && !(v instanceof Date && Number.isFinite(v.getTime())))
      throw new InvalidSearchError(`${k} must be a valid date`);
  }
  if (query.before !== undefined && typeof query.before !== "string")
    throw new InvalidSearchError("before must be a cursor string");
}

export function bodyFilters(query: DecisionQuery): BodyFilters {
  const f: BodyFilters = {};
  for (const k of TEXT_FILTERS) if (query[k] !== undefined) f[k] = query[k];
  return f;
}

/**
 * A short hash of the filters: a cursor carries it, so that it is not used with other filters (a position is
 * only meaningful for the listing it was taken from: the spool backend may have skipped segments for `since`).
 */
export function filterKey(query: DecisionQuery): string {
  const f = [
    ...TEXT_FILTERS.map((k) => query[k] ?? null),
    query.since?.toISOString(),
    query.until?.toISOString(),
  ];
  return createHash("sha256").update(JSON.stringify(f)).digest("base64url").slice(0, 16);
}

export function encodeCursor(payload: Record<string, unknown>): string {
  return Buffer.from(JSON.stringify(payload)).toString("base64url");
}

/** The cursor's payload when it is one of this backend's, for these filters; else InvalidSearchError. */
export function decodeCursor(cursor: string, backend: string, key: string): Record<string, unknown> {
  let payload: unknown;
  try {
    if (!/^[A-Za-z0-9_-]{1,8192}$/.test(cursor)) throw new Error("not base64url");
    payload = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"));
  } catch {
    throw new InvalidSearchError("before is not a cursor this search returned");
  }
  const p = payload as Record<string, unknown> | null;
  if (p === null || typeof p !== "object" || p.v !== 1 || p.b !== backend)
    throw new InvalidSearchError(`before is not a cursor of the ${backend} search`);
  if (p.f !== key) throw new InvalidSearchError("before is a cursor of a search with other filters");
  return p;
}

// ---- timestamps -----------------------------------------------------------------------------------------------

/** An event time, comparable exactly: milliseconds since the epoch and nanoseconds within the millisecond. */
export interface TimeKey {
  ms: number;
  ns: number;
}

const RFC3339 = /^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(?:\.(\d{1,9})\d*)?([Zz]|[+-]\d\d:\d\d)$/;

/** An RFC 3339 timestamp's key (nanoseconds kept, beyond what Date holds); null when it is not one. */
export function timeKey(timestamp: unknown): TimeKey | null {
  if (typeof timestamp !== "string") return null;
  const m = RFC3339.exec(timestamp);
  if (!m) return null;
  const zone = (m[4] as string).toUpperCase();
  const seconds = Date.parse(`${m[1]}T${m[2]}${zone}`);
  if (Number.isNaN(seconds)) return null;
  const frac = (m[3] ?? "").padEnd(9, "0");
  return { ms: seconds + Number(frac.slice(0, 3)), ns: Number(frac.slice(3)) };
}

export function dateKey(d: Date): TimeKey {
  return { ms: d.getTime(), ns: 0 };
}

/** Negative when a is earlier; a missing time is earlier than any (as PostgreSQL's NULLS LAST in DESC order). */
export function compareTime(a: TimeKey | null, b: TimeKey | null): number {
  if (!a || !b) return a ? 1 : b ? -1 : 0;
  return a.ms - b.ms || a.ns - b.ns;
}

/** Whether an event time is in [since, until). A record without a readable time is outside any bound. */
export function inRange(t: TimeKey | null, since: TimeKey | null, until: TimeKey | null): boolean {
  if (!since && !until) return true;
  if (!t) return false;
  return (!since || compareTime(t, since) >= 0) && (!until || compareTime(t, until) < 0);
}
