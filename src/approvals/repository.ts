// The approval tables in SQL, and rows turned into objects. Every timestamp is a parameter computed from the
// service's injected clock, never the database's now(), so expiry is testable and replicas agree with what
// the service logic decided. jsonb goes in as JSON text (pg would turn a JS array into a PostgreSQL array).
import type { Identity, Protocol, Reason } from "../decision/contract.js";
import type { Queryable } from "../store/store.js";
import type { ApprovalRequest, ApprovalStatus, Grant, Vote } from "./types.js";

const REQUEST_COLUMNS = `r.*, (SELECT count(*)::int FROM approval_votes v
  WHERE v.request_id = r.id AND v.vote = 'approve') AS approvals`;

interface RequestRow {
  id: string;
  status: ApprovalStatus;
  requester: Identity;
  resource: string;
  protocol: Protocol;
  command_text: string;
  fingerprint: string;
  reasons: Reason[];
  approver_groups: string[];
  min_approvals: number;
  grant_ttl_s: number;
  decision_id: string;
  session_id: string;
  created_at: Date;
  expires_at: Date;
  decided_at: Date | null;
  grant_expires_at: Date | null;
  approvals: number;
  [column: string]: unknown;
}

function toRequest(row: RequestRow): ApprovalRequest {
  return {
    id: row.id,
    status: row.status,
    requester: row.requester,
    resource: row.resource,
    protocol: row.protocol,
    command: { text: row.command_text, fingerprint: row.fingerprint },
    reasons: row.reasons,
    rule: { groups: row.approver_groups, min_approvals: row.min_approvals, ttl_s: row.grant_ttl_s },
    decision_id: row.decision_id,
    session_id: row.session_id,
    created_at: toDate(row.created_at),
    expires_at: toDate(row.expires_at),
    decided_at: row.decided_at ? toDate(row.decided_at) : null,
    grant_expires_at: row.grant_expires_at ? toDate(row.grant_expires_at) : null,
    approvals: Number(row.approvals),
  };
}

function toDate(value: Date | string): Date {
  return value instanceof Date ? value : new Date(value);
}

export async function insertRequest(
  q: Queryable,
  r: Omit<ApprovalRequest, "approvals" | "decided_at" | "grant_expires_at">,
  actorChain: string[],
): Promise<void> {
  await q.query(
    `INSERT INTO approval_requests (id, status, requester, requester_iss, requester_sub, actor_chain, resource,
       protocol, command_text, fingerprint, reasons, approver_groups, min_approvals, grant_ttl_s, decision_id,
       session_id, created_at, expires_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)`,
    [
      r.id,
      r.status,
      JSON.stringify(r.requester),
      r.requester.iss,
      r.requester.sub,
      JSON.stringify(actorChain),
      r.resource,
      r.protocol,
      r.command.text,
      r.command.fingerprint,
      JSON.stringify(r.reasons),
      JSON.stringify(r.rule.groups),
      r.rule.min_approvals,
      r.rule.ttl_s,
      r.decision_id,
      r.session_id,
      r.created_at,
      r.expires_at,
    ],
  );
}

export async function selectRequest(q: Queryable, id: string): Promise<ApprovalRequest | null> {
  const rows = await q.query<RequestRow>(
    `SELECT ${REQUEST_COLUMNS} FROM approval_requests r WHERE r.id = $1`,
    [id],
  );
  return rows[0] ? toRequest(rows[0]) : null;
}

/**
 * Takes the request's row lock until the transaction ends; false when there is no such request. A statement of
 * its own on purpose: under READ COMMITTED, a `SELECT …, (SELECT count(*) FROM approval_votes …) … FOR UPDATE`
 * that waited for another voter's transaction re-reads the locked row but evaluates the subquery with its
 * original snapshot — it would miss the vote just committed. Statements after this one see it.
 */
export async function lockRequest(q: Queryable, id: string): Promise<boolean> {
  const rows = await q.query("SELECT 1 FROM approval_requests WHERE id = $1 FOR UPDATE", [id]);
  return rows.length > 0;
}

export async function countApprovals(q: Queryable, id: string): Promise<number> {
  const rows = await q.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM approval_votes WHERE request_id = $1 AND vote = 'approve'",
    [id],
  );
  return Number(rows[0]?.n ?? 0);
}

export async function selectVotes(q: Queryable, id: string): Promise<Vote[]> {
  const rows = await q.query<{
    approver: Identity;
    vote: Vote["vote"];
    comment: string | null;
    created_at: Date;
  }>(
    `SELECT approver, vote, comment, created_at FROM approval_votes WHERE request_id = $1
     ORDER BY created_at, approver_sub`,
    [id],
  );
  return rows.map((v) => ({ ...v, created_at: toDate(v.created_at) }));
}

export async function hasVoted(q: Queryable, id: string, approverSub: string): Promise<boolean> {
  const rows = await q.query("SELECT 1 FROM approval_votes WHERE request_id = $1 AND approver_sub = $2", [
    id,
    approverSub,
  ]);
  return rows.length > 0;
}

export async function insertVote(
  q: Queryable,
  id: string,
  approver: Identity,
  vote: Vote["vote"],
  comment: string | null,
  at: Date,
): Promise<void> {
  await q.query(
    `INSERT INTO approval_votes (request_id, approver_sub, approver, vote, comment, created_at)
     VALUES ($1, $2, $3, $4, $5, $6)`,
    [id, approver.sub, JSON.stringify(approver), vote, comment, at],
  );
}

export async function decide(
  q: Queryable,
  id: string,
  status: "approved" | "denied",
  at: Date,
  grantExpiresAt: Date | null,
): Promise<void> {
  await q.query(
    `UPDATE approval_requests SET status = $2, decided_at = $3, grant_expires_at = $4
     WHERE id = $1 AND status = 'pending'`,
    [id, status, at, grantExpiresAt],
  );
}

/**
 * Marks pending requests past their deadline expired (all of them, or just `id`) and returns their ids. Under
 * concurrent sweeps on several replicas, the row locks make each request expire, and be announced, once.
 */
export async function expireDue(q: Queryable, now: Date, id?: string): Promise<string[]> {
  const rows = await q.query<{ id: string }>(
    `UPDATE approval_requests SET status = 'expired', decided_at = expires_at
     WHERE status = 'pending' AND expires_at <= $1 ${id ? "AND id = $2" : ""}
     RETURNING id`,
    id ? [now, id] : [now],
  );
  return rows.map((r) => r.id);
}

export async function listRequests(
  q: Queryable,
  filter: { status?: ApprovalStatus; limit: number; offset: number },
): Promise<ApprovalRequest[]> {
  const rows = await q.query<RequestRow>(
    `SELECT ${REQUEST_COLUMNS} FROM approval_requests r
     WHERE ($1::text IS NULL OR r.status = $1)
     ORDER BY r.created_at DESC, r.seq DESC LIMIT $2 OFFSET $3`,
    [filter.status ?? null, filter.limit, filter.offset],
  );
  return rows.map(toRequest);
}

export async function selectStatuses(q: Queryable, ids: string[]): Promise<Map<string, ApprovalStatus>> {
  const rows = await q.query<{ id: string; status: ApprovalStatus }>(
    `SELECT id, status FROM approval_requests
     WHERE id IN (SELECT value::uuid FROM jsonb_array_elements_text($1::jsonb))`,
    [JSON.stringify(ids)],
  );
  return new Map(rows.map((r) => [r.id, r.status]));
}

export async function countPending(q: Queryable, now: Date): Promise<number> {
  const rows = await q.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM approval_requests WHERE status = 'pending' AND expires_at > $1",
    [now],
  );
  return Number(rows[0]?.n ?? 0);
}

export async function selectGrant(
  q: Queryable,
  key: { iss: string; sub: string; actorChain: string[]; resource: string; fingerprint: string },
  now: Date,
): Promise<Grant | null> {
  const rows = await q.query<{ id: string; decided_at: Date; grant_expires_at: Date }>(
    `SELECT id, decided_at, grant_expires_at FROM approval_requests
     WHERE status = 'approved' AND requester_sub = $1 AND resource = $2 AND fingerprint = $3
       AND requester_iss = $4 AND actor_chain = $5::jsonb AND grant_expires_at > $6
     ORDER BY grant_expires_at DESC LIMIT 1`,
    [key.sub, key.resource, key.fingerprint, key.iss, JSON.stringify(key.actorChain), now],
  );
  const row = rows[0];
  if (!row) return null;
  return {
    approval_id: row.id,
    requester_sub: key.sub,
    actor_chain: key.actorChain,
    resource: key.resource,
    fingerprint: key.fingerprint,
    granted_at: toDate(row.decided_at),
    expires_at: toDate(row.grant_expires_at),
  };
}
