// The one schema, as an ordered list of migrations that both backends run unchanged. Append only: a migration
// that has shipped is never edited (its checksum is recorded and checked at start-up); a change is a new
// version. Each runs inside the migration transaction, so no CREATE INDEX CONCURRENTLY and the like.

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "approvals",
    sql: `
CREATE TABLE approval_requests (
  id               uuid PRIMARY KEY,
  seq              bigint GENERATED ALWAYS AS IDENTITY, -- insertion order: ties requests of the same instant
  status           text NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'expired')),
  -- Who asked: the verified identity as it was when the request was made, and the fields a grant is keyed on.
  requester        jsonb NOT NULL,
  requester_iss    text NOT NULL,
  requester_sub    text NOT NULL,
  actor_chain      jsonb NOT NULL,                 -- the subs of identity.actors, original requester first
  resource         text NOT NULL,
  protocol         text NOT NULL CHECK (protocol IN ('postgres', 'ssh', 'kubernetes')),
  command_text     text NOT NULL,
  fingerprint      text NOT NULL,
  reasons          jsonb NOT NULL,
  -- The verdict's approval rule.
  approver_groups  jsonb NOT NULL,
  min_approvals    integer NOT NULL CHECK (min_approvals >= 1),
  grant_ttl_s      integer NOT NULL CHECK (grant_ttl_s >= 1),
  decision_id      text NOT NULL,
  session_id       text NOT NULL,
  created_at       timestamptz NOT NULL,
  expires_at       timestamptz NOT NULL,           -- pending until then
  decided_at       timestamptz,                    -- when it left pending
  grant_expires_at timestamptz,                    -- approved only: decided_at + grant_ttl_s
  CHECK ((status = 'pending') = (decided_at IS NULL)),
  CHECK ((status = 'approved') = (grant_expires_at IS NOT NULL))
);

-- The expiry sweep and the pending-approvals gauge.
CREATE INDEX approval_requests_pending ON approval_requests (expires_at) WHERE status = 'pending';
-- Grant look-ups on every command a gateway checks.
CREATE INDEX approval_requests_grants ON approval_requests (requester_sub, resource, fingerprint)
  WHERE status = 'approved';
CREATE INDEX approval_requests_created ON approval_requests (created_at DESC, seq DESC);

CREATE TABLE approval_votes (
  request_id   uuid NOT NULL REFERENCES approval_requests (id) ON DELETE CASCADE,
  approver_sub text NOT NULL,
  approver     jsonb NOT NULL,
  vote         text NOT NULL CHECK (vote IN ('approve', 'deny')),
  comment      text,
  created_at   timestamptz NOT NULL,
  PRIMARY KEY (request_id, approver_sub)             -- one vote per approver
);
`,
  },
];
