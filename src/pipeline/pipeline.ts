// The protocol-neutral command pipeline: identify → decide → (approve) → record → verdict to enforce.
//
// A protocol adapter turns one command into the policy's `command` object and calls `decide`; it gets back
// what to do — forward, forward with masking, or refuse with a reason — and enforces it in its own protocol.
// Everything here fails closed: an expired token, an audit trail that cannot take the record, an approval
// that is denied, expires or cannot be asked for — each is a block with a reason the user can act on.
import type {
  Decision,
  Identity,
  MaskRule,
  Protocol,
  Reason,
  Resource,
  Verdict,
} from "../decision/contract.js";
import type { DecisionEngine, SessionInput } from "../decision/engine.js";
import { errorText } from "../decision/wasm-policy.js";
import { metrics } from "../metrics.js";
import { type Logger, silentLogger } from "../util/log.js";

/** One authenticated client session, as every adapter describes it. */
export interface SessionContext {
  id: string;
  protocol: Protocol;
  resource: Resource;
  identity: Identity;
  /** When the presented token expires; checked before every command. */
  expiresAt: Date;
  clientAddr: string;
  /** The session's fixed policy input, serialized once. */
  input: SessionInput;
}

export interface CommandRequest {
  /** The policy's `command` object (protocol specific, see docs/policy-contract.md). */
  command: Record<string, unknown>;
  /** The exact command as the user sent it — shown to approvers. Never put into the policy input or logs. */
  text: string;
  /** A stable fingerprint of the command (literals removed), which approval grants are keyed by. */
  fingerprint: string;
}

export type EnforcedAction = "allow" | "mask" | "block";

export interface Outcome {
  action: EnforcedAction;
  /** The policy's verdict (for block: the reason may come from the pipeline instead, see `reasons`). */
  verdict: Verdict;
  reasons: Reason[];
  mask: MaskRule[];
  decision: Decision;
  approvalId: string | null;
  /** The session cannot continue (e.g. its token expired): the adapter should end it after reporting. */
  fatal: boolean;
}

/** The audit trail as the pipeline uses it: resolves once the record is durable, rejects when it cannot be. */
export interface AuditPort {
  recordDecision(
    decision: Decision,
    ctx: { session: SessionContext; action: string; approvalId: string | null; reasons: Reason[] },
  ): Promise<void>;
}

export type ApprovalOutcome = "approved" | "denied" | "expired" | "timeout";

/** Approvals as the pipeline uses them (src/approvals implements it). */
export interface ApprovalPort {
  findGrant(q: {
    requester: Identity;
    resource: string;
    fingerprint: string;
  }): Promise<{ approval_id: string } | null>;
  create(req: {
    requester: Identity;
    resource: string;
    protocol: Protocol;
    command: { text: string; fingerprint: string };
    reasons: Reason[];
    rule: NonNullable<Verdict["approval"]>;
    decisionId: string;
    sessionId: string;
  }): Promise<{ id: string }>;
  waitForOutcome(id: string, opts: { timeoutMs: number; signal?: AbortSignal }): Promise<ApprovalOutcome>;
}

export interface PipelineOptions {
  audit?: AuditPort;
  approvals?: ApprovalPort;
  /** How long a command may be held waiting for an approver. */
  approvalTimeoutMs?: number;
  log?: Logger;
  /** The clock for the token-expiry check, in ms since the epoch (default Date.now). */
  now?: () => number;
}

const reason = (code: string, message: string): Reason => ({ code, message });

export class CommandPipeline {
  private readonly log: Logger;

  constructor(
    readonly engine: DecisionEngine,
    private readonly options: PipelineOptions = {},
  ) {
    this.log = options.log ?? silentLogger;
  }

  /**
   * Decides one command. `onHold` is called (once) when the command waits for an approval, with the approval
   * request id, so the adapter can tell the user who is waiting.
   */
  async decide(
    session: SessionContext,
    req: CommandRequest,
    hooks: { onHold?: (approvalId: string, verdict: Verdict) => void; signal?: AbortSignal } = {},
  ): Promise<Outcome> {
    const now = this.options.now?.() ?? Date.now();
    const decision = this.engine.evaluateCommand(session.input, req.command);
    const verdict = decision.verdict;
    if (decision.eval_ns > 0)
      metrics.evaluationSeconds.observe({ protocol: session.protocol }, decision.eval_ns / 1e9);
    else metrics.reusedVerdicts.inc({ protocol: session.protocol });

    if (session.expiresAt.getTime() <= now) {
      const r = reason(
        "identity.token_expired",
        `your access token expired at ${session.expiresAt.toISOString()}; reconnect with a fresh token`,
      );
      return this.finish(session, decision, "block", [r], null, true);
    }

    if (verdict.action === "approve") return this.approve(session, req, decision, hooks);
    const action: EnforcedAction = verdict.action;
    return this.finish(session, decision, action, verdict.reasons, null, false);
  }

  private async approve(
    session: SessionContext,
    req: CommandRequest,
    decision: Decision,
    hooks: { onHold?: (approvalId: string, verdict: Verdict) => void; signal?: AbortSignal },
  ): Promise<Outcome> {
    const verdict = decision.verdict;
    const approvals = this.options.approvals;
    const granted = verdict.mask.length > 0 ? "mask" : "allow";
    if (!approvals || !verdict.approval) {
      const r = reason(
        "approval.unavailable",
        "this command needs an approval, but approvals are not configured on this gateway",
      );
      return this.finish(session, decision, "block", [...verdict.reasons, r], null, false);
    }
    try {
      const grant = await approvals.findGrant({
        requester: session.identity,
        resource: session.resource.name,
        fingerprint: req.fingerprint,
      });
      if (grant) return this.finish(session, decision, granted, verdict.reasons, grant.approval_id, false);

      const request = await approvals.create({
        requester: session.identity,
        resource: session.resource.name,
        protocol: session.protocol,
        command: { text: req.text, fingerprint: req.fingerprint },
        reasons: verdict.reasons,
        rule: verdict.approval,
        decisionId: decision.decision_id,
        sessionId: session.id,
      });
      // The request itself is a decision on record: who asked, for what, and why it needs approval.
      await this.record(session, decision, "approve", verdict.reasons, request.id);
      hooks.onHold?.(request.id, verdict);
      const timeoutMs = this.options.approvalTimeoutMs ?? 5 * 60_000;
      const outcome = await approvals.waitForOutcome(request.id, { timeoutMs, signal: hooks.signal });
      if (outcome === "approved")
        return this.finish(session, decision, granted, verdict.reasons, request.id, false);
      const why: Record<Exclude<ApprovalOutcome, "approved">, string> = {
        denied: `approval request ${request.id} was denied`,
        expired: `approval request ${request.id} expired before enough approvers said yes`,
        timeout: `no approval for request ${request.id} within ${Math.round(timeoutMs / 1000)} s; it stays open — run the command again once it is approved`,
      };
      return this.finish(
        session,
        decision,
        "block",
        [reason(`approval.${outcome}`, why[outcome])],
        request.id,
        false,
      );
    } catch (err) {
      const r = reason("approval.error", `the approval could not be processed: ${errorText(err)}`);
      return this.finish(session, decision, "block", [r], null, false);
    }
  }

  private async record(
    session: SessionContext,
    decision: Decision,
    action: string,
    reasons: Reason[],
    approvalId: string | null,
  ): Promise<void> {
    await this.options.audit?.recordDecision(decision, { session, action, approvalId, reasons });
  }

  /** Records the enforced outcome durably, then returns it. A failed record turns anything into a block. */
  private async finish(
    session: SessionContext,
    decision: Decision,
    action: EnforcedAction,
    reasons: Reason[],
    approvalId: string | null,
    fatal: boolean,
  ): Promise<Outcome> {
    let out: Outcome = {
      action,
      verdict: decision.verdict,
      reasons,
      mask: action === "mask" ? decision.verdict.mask : [],
      decision,
      approvalId,
      fatal,
    };
    try {
      await this.record(session, decision, action, reasons, approvalId);
    } catch (err) {
      this.log.error(
        { session: session.id, decision_id: decision.decision_id },
        `audit record failed: ${errorText(err)}`,
      );
      out = {
        ...out,
        action: "block",
        mask: [],
        reasons: [
          reason(
            "audit.unavailable",
            `the audit trail cannot record this command, so it is blocked: ${errorText(err)}`,
          ),
        ],
      };
    }
    metrics.decisions.inc({ action: out.action, protocol: session.protocol });
    return out;
  }
}
