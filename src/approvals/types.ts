// What the approval workflow hands out. Field names follow the policy contract's snake_case, so the control
// plane can return these objects as JSON unchanged.
import type { ApprovalRule, Identity, Protocol, Reason } from "../decision/contract.js";

export type ApprovalStatus = "pending" | "approved" | "denied" | "expired";
export const APPROVAL_STATUSES: readonly ApprovalStatus[] = ["pending", "approved", "denied", "expired"];

export type Outcome = "approved" | "denied" | "expired" | "timeout";

/** What the gateway passes when a verdict is `approve`. */
export interface NewApprovalRequest {
  requester: Identity;
  resource: string;
  protocol: Protocol;
  command: {
    /** The exact command, e.g. the SQL text, for the approvers to read. */
    text: string;
    /** The normalized fingerprint a grant is bound to. */
    fingerprint: string;
  };
  reasons: Reason[];
  /** The verdict's `approval`: who may approve, how many, and how long the grant lasts. */
  rule: ApprovalRule;
  decisionId: string;
  sessionId: string;
}

export interface ApprovalRequest {
  id: string;
  status: ApprovalStatus;
  requester: Identity;
  resource: string;
  protocol: Protocol;
  command: { text: string; fingerprint: string };
  reasons: Reason[];
  rule: ApprovalRule;
  decision_id: string;
  session_id: string;
  created_at: Date;
  /** The end of the pending period: approvers must decide before it. */
  expires_at: Date;
  /** When it stopped being pending (approved, denied or expired). */
  decided_at: Date | null;
  /** Approved only: until when the grant lets the requester run the command. */
  grant_expires_at: Date | null;
  /** Distinct approvals so far. */
  approvals: number;
}

export interface Vote {
  approver: Identity;
  vote: "approve" | "deny";
  comment: string | null;
  created_at: Date;
}

export interface ApprovalRequestWithVotes extends ApprovalRequest {
  votes: Vote[];
}

/** Permission to run one command fingerprint on one resource, for one identity, until `expires_at`. */
export interface Grant {
  approval_id: string;
  requester_sub: string;
  actor_chain: string[];
  resource: string;
  fingerprint: string;
  granted_at: Date;
  expires_at: Date;
}
