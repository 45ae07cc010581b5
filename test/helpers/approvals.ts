// Identities and approval requests for the approval and API suites.
import { randomUUID } from "node:crypto";
import type { NewApprovalRequest } from "../../src/approvals/types.js";
import type { Identity } from "../../src/decision/contract.js";

/** A person verified by the test issuer, acting for themselves. */
export const person = (sub: string, groups: string[], iss = "https://idp.example.com"): Identity => ({
  sub,
  iss,
  email: `${sub}@example.com`,
  groups,
  client_id: null,
  actors: [{ sub }],
});

let commands = 0;

/** A DDL approval request for `requester`, with a command (and fingerprint) no other call gets. */
export function ddlRequest(
  requester: Identity,
  overrides: Partial<NewApprovalRequest> = {},
): NewApprovalRequest {
  const n = ++commands;
  return {
    requester,
    resource: "orders-db",
    protocol: "postgres",
    command: { text: `ALTER TABLE orders ADD COLUMN note_${n} text`, fingerprint: `fp-${n}` },
    reasons: [{ code: "pg.ddl_needs_approval", message: "ALTER TABLE is a schema change (DDL)" }],
    rule: { groups: ["dba"], min_approvals: 1, ttl_s: 600 },
    decisionId: randomUUID(),
    sessionId: "session-1",
    ...overrides,
  };
}
