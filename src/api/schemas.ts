// JSON Schemas of the control-plane API. They do three jobs at once: fastify validates requests against them
// (bad input is refused before a handler runs), fast-json-stringify serializes responses with them (fields not
// listed never leave the process), and @fastify/swagger turns them into the OpenAPI document. The shared ones
// are added to the instance with an $id and referenced as "<Id>#", which the OpenAPI document shows as
// components/schemas/<Id>.
import { PROTOCOLS } from "../decision/contract.js";

export const UUID_PATTERN = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";

const nullableString = { type: ["string", "null"] } as const;
const dateTime = { type: "string", format: "date-time" } as const;
const nullableDateTime = { type: ["string", "null"], format: "date-time" } as const;

export const errorSchema = {
  $id: "Error",
  type: "object",
  description: "Every error answer: a stable code and one line saying what was wrong.",
  required: ["error"],
  properties: {
    error: {
      type: "object",
      required: ["code", "message"],
      properties: {
        code: {
          type: "string",
          description:
            "Stable: a token check (malformed, expired, bad_signature, …), an approval refusal (not_found, " +
            "not_pending, expired, self_approval, not_an_approver, already_voted), or a request problem " +
            "(invalid_request, invalid_json, unsupported_media_type, forbidden, internal_error, …).",
        },
        message: { type: "string" },
      },
    },
  },
} as const;

export const identitySchema = {
  $id: "Identity",
  type: "object",
  description: "A verified identity, as in the policy contract.",
  required: ["sub", "iss", "email", "groups", "client_id", "actors"],
  properties: {
    sub: { type: "string" },
    iss: { type: "string" },
    email: nullableString,
    groups: { type: "array", items: { type: "string" } },
    client_id: nullableString,
    actors: {
      type: "array",
      description: "The delegation chain, original requester first, the party presenting the token last.",
      items: {
        type: "object",
        required: ["sub"],
        properties: { sub: { type: "string" }, iss: { type: "string" }, client_id: nullableString },
      },
    },
  },
} as const;

const approvalProperties = {
  id: { type: "string", format: "uuid" },
  status: { type: "string", enum: ["pending", "approved", "denied", "expired"] },
  requester: { $ref: "Identity#" },
  resource: { type: "string" },
  protocol: { type: "string", enum: [...PROTOCOLS] },
  command: {
    type: "object",
    required: ["text", "fingerprint"],
    properties: {
      text: { type: "string", description: "The exact command, for the approvers to read." },
      fingerprint: { type: "string", description: "The normalized command a grant is bound to." },
    },
  },
  reasons: {
    type: "array",
    items: {
      type: "object",
      required: ["code", "message"],
      properties: { code: { type: "string" }, message: { type: "string" } },
    },
  },
  rule: {
    type: "object",
    description: "Who may approve (any of groups), how many approvals it takes, how long the grant lasts.",
    required: ["groups", "min_approvals", "ttl_s"],
    properties: {
      groups: { type: "array", items: { type: "string" } },
      min_approvals: { type: "integer" },
      ttl_s: { type: "integer" },
    },
  },
  decision_id: { type: "string" },
  session_id: { type: "string" },
  created_at: dateTime,
  expires_at: { ...dateTime, description: "Approvers must decide before this time." },
  decided_at: nullableDateTime,
  grant_expires_at: {
    ...nullableDateTime,
    description: "Approved requests: until when the requester may run the command.",
  },
  approvals: { type: "integer", description: "Distinct approvals so far." },
} as const;

const approvalRequired = [
  "id",
  "status",
  "requester",
  "resource",
  "protocol",
  "command",
  "reasons",
  "rule",
  "decision_id",
  "session_id",
  "created_at",
  "expires_at",
  "decided_at",
  "grant_expires_at",
  "approvals",
] as const;

export const approvalSchema = {
  $id: "Approval",
  type: "object",
  required: approvalRequired,
  properties: approvalProperties,
} as const;

export const approvalWithVotesSchema = {
  $id: "ApprovalWithVotes",
  type: "object",
  required: [...approvalRequired, "votes"],
  properties: {
    ...approvalProperties,
    votes: {
      type: "array",
      items: {
        type: "object",
        required: ["approver", "vote", "comment", "created_at"],
        properties: {
          approver: { $ref: "Identity#" },
          vote: { type: "string", enum: ["approve", "deny"] },
          comment: nullableString,
          created_at: dateTime,
        },
      },
    },
  },
} as const;

const componentState = {
  type: "string",
  enum: ["not_ready", "ok", "warn", "error"],
  description:
    "not_ready: cannot do its job yet (starting, nothing loaded); ok; warn: working, needs attention; " +
    "error: cannot do its job. not_ready and error make the gateway not ready.",
} as const;

export const componentStatusSchema = {
  $id: "ComponentStatus",
  type: "object",
  description: "One component of the gateway (src/status/status.ts).",
  required: ["state"],
  properties: {
    state: componentState,
    message: { type: "string", description: "What is wrong, or what is in use." },
    details: {
      type: "object",
      additionalProperties: true,
      description: "Particulars of the component (revision, bytes used, last error, …); only in /v1/status.",
    },
  },
} as const;

export const statusSnapshotSchema = {
  $id: "StatusSnapshot",
  type: "object",
  description: "Every component's status, the worst state of all, and readiness.",
  required: ["state", "ready", "components"],
  properties: {
    state: { ...componentState, description: "The worst state of all components." },
    ready: { type: "boolean", description: "No component is not_ready or error." },
    components: {
      type: "object",
      description:
        "By name: engine, bundle:<source>, audit.spool, audit.sink:<name>, identity.verifier, " +
        "postgres.analyzer, listener:<protocol>, store, gateway.",
      additionalProperties: { $ref: "ComponentStatus#" },
    },
  },
} as const;

export const SHARED_SCHEMAS = [
  errorSchema,
  identitySchema,
  approvalSchema,
  approvalWithVotesSchema,
  componentStatusSchema,
  statusSnapshotSchema,
];

/** The error answers a route can give, for its response schema. */
export function errorResponses(...statuses: number[]): Record<string, { $ref: string }> {
  return Object.fromEntries(statuses.map((s) => [String(s), { $ref: "Error#" }]));
}

/** Marks an authenticated route in the OpenAPI document. */
export const bearerAuth = [{ bearerAuth: [] }];
