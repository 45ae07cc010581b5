// The reason codes pamgate itself gives (the policy's own codes — pg.no_where, pg.pii_masked, … — are the
// policy's business and live in policies/). One table: every code the protocol-neutral parts emit, with what it
// means; each protocol adapter declares its own in the same form (ProtocolAdapter.reasons, e.g.
// src/proxy/postgres/reasons.ts). test/unit/reasons.test.ts checks that every code written in src/ is in one of
// these tables and that docs/reasons.md lists them all.
import type { Reason } from "./contract.js";

export const GATEWAY_REASONS = {
  "identity.tls_required":
    "the token was not sent: a non-loopback client must use TLS (or the listener's allow_cleartext_token)",
  "identity.no_token": "the client presented no access token",
  "identity.token_rejected": "the access token failed verification (the message names the check)",
  "identity.token_expired":
    "the session's access token expired; the session ends — reconnect with a fresh token",
  "session.identity_limit":
    "the requester already has limits.sessions_per_identity sessions open (all protocols), so a new one is refused",
  "engine.no_bundle": "no policy bundle is loaded yet, so every command is blocked",
  "engine.eval_error": "the policy threw while evaluating",
  "engine.undefined": "the policy gave no verdict for this input (give pamgate.main.verdict a default)",
  "engine.invalid_verdict": "the policy's verdict does not match the verdict schema",
  "engine.bad_input": "the command could not be serialized into a policy input",
  "approval.unavailable": "the verdict asks for an approval but approvals are not configured",
  "approval.denied": "an approver denied the request",
  "approval.expired": "the request expired before enough approvers said yes",
  "approval.timeout":
    "no answer within the wait; the request stays open — run the command again once approved",
  "approval.error": "the approval store or service failed",
  "audit.unavailable":
    "the audit trail cannot record the decision (spool full or unwritable), so the command is blocked",
  "mask.unsupported": "the verdict masks, but this protocol's adapter cannot rewrite responses",
  "mask.unavailable": "the adapter could not prepare the masking (e.g. its catalog lookup failed)",
  "batch.blocked": "another command of the same message was blocked, so none of them ran",
} as const satisfies Record<string, string>;

export type GatewayReasonCode = keyof typeof GATEWAY_REASONS;

/** A reason with a code from the gateway's table (type-checked). */
export function gatewayReason(code: GatewayReasonCode, message: string): Reason {
  return { code, message };
}
