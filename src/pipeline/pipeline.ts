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
import { gatewayReason } from "../decision/reasons.js";
import { metrics } from "../metrics.js";
import { errorText } from "../util/errors.js";
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
  /**
   * The command as the audit trail may show it (the decision event's `command_text`, searched by the console):
   * for PostgreSQL the statement with its literals replaced, per listeners.postgres.transcript.statement_text.
   * Absent: the event shows only what the policy input has.
   */
  logText?: string;
  /**
   * The command's identity for the engine's verdict memo (see DecisionEngine.evaluateCommand): requests with the
   * same key must carry the same `command`. Adapters whose analysis is cached pass the cached object; without a
   * key every command is evaluated.
   */
  memoKey?: object;
  /**
   * Asked before anything is recorded when the verdict masks: why the adapter cannot enforce these masks on this
   * command (a reason, which turns the command into a block), or null when it can. Without the hook a mask
   * verdict is always a block: a mask that cannot be applied must never become an allow.
   */
  checkMask?: (mask: readonly MaskRule[]) => Reason | null | Promise<Reason | null>;
  /**
   * The adapter will not run this command whatever the policy says (running it would invalidate the adapter's
   * own analysis of later commands, e.g. pg.search_path_change). The policy is still evaluated, so the record
   * shows both its verdict and this block.
   */
  refusal?: Reason;
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

/**
 * The audit trail as the pipeline uses it: resolves once the record is taken, rejects when it cannot be. A
 * trail at durability `write` resolves once the record is in the OS and returns `durable`, which settles once
 * it is on disk: the command may go ahead before, its result may reach the client only after.
 */
export interface AuditPort {
  recordDecision(
    decision: Decision,
    ctx: {
      session: SessionContext;
      action: string;
      approvalId: string | null;
      reasons: Reason[];
      commandText?: string;
    },
  ): Promise<AuditAck | undefined>;
}

/** What the trail answers for a record taken (the spool's receipt): `durable` only when it is not on disk yet. */
export interface AuditAck {
  seq?: number;
  durable?: Promise<void>;
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

/** What one command of a batch is heading for while the batch is decided. */
interface Plan {
  req: CommandRequest;
  decision: Decision;
  action: EnforcedAction | "approve";
  reasons: Reason[];
  approvalId: string | null;
}

export interface DecideHooks {
  /** Called when a command waits for an approval, with the request id, so the adapter can tell the user. */
  onHold?: (approvalId: string, verdict: Verdict) => void;
  /** Aborts an approval wait (the client went away). */
  signal?: AbortSignal;
  /**
   * The adapter holds each command's result until BatchOutcome.durable settles, so the pipeline may return once
   * the records are written (durability `write`). Without it the pipeline waits for the records to be durable.
   */
  holdsResults?: boolean;
}

/** The outcome of a batch: every command's outcome, and what the batch as a whole gets. */
export interface BatchOutcome {
  /** block when any command is blocked (then every outcome is a block), else mask when any masks, else allow. */
  action: EnforcedAction;
  /** One per request, in order. */
  outcomes: Outcome[];
  /** For a block: the reasons of the command that caused it (what the client is told). */
  reasons: Reason[];
  /** The session cannot continue (its token expired). */
  fatal: boolean;
  /**
   * Only with DecideHooks.holdsResults: settles once the batch's records are durable. The adapter releases the
   * results of these commands to the client only after it resolves, and ends the session if it rejects.
   */
  durable: Promise<void> | null;
}

export class CommandPipeline {
  private readonly log: Logger;

  constructor(
    readonly engine: DecisionEngine,
    private readonly options: PipelineOptions = {},
  ) {
    this.log = options.log ?? silentLogger;
  }

  /** How long commands decided from now on may be held for an approver (a configuration reload). */
  setApprovalTimeout(ms: number): void {
    this.options.approvalTimeoutMs = ms;
  }

  /** Decides one command: a batch of one. */
  async decide(session: SessionContext, req: CommandRequest, hooks: DecideHooks = {}): Promise<Outcome> {
    const batch = await this.decideBatch(session, [req], hooks);
    return batch.outcomes[0] as Outcome;
  }

  /**
   * Decides the commands one client message carries (a multi-statement query), all or nothing: if any command is
   * blocked — by policy, by its adapter being unable to enforce its mask, by a denied approval, by the audit
   * trail — none of them runs, and every command's record says block (the others with `batch.blocked`, naming
   * the one that caused it). Approvals are asked only when nothing is blocked. Every record is durable before
   * this resolves and states what the client actually gets.
   */
  async decideBatch(
    session: SessionContext,
    reqs: readonly CommandRequest[],
    hooks: DecideHooks = {},
  ): Promise<BatchOutcome> {
    const now = this.options.now?.() ?? Date.now();
    const plans: Plan[] = reqs.map((req) => {
      const decision = this.engine.evaluateCommand(session.input, req.command, { memoKey: req.memoKey });
      if (decision.eval_ns > 0)
        metrics.evaluationSeconds.observe({ protocol: session.protocol }, decision.eval_ns / 1e9);
      else metrics.reusedVerdicts.inc({ protocol: session.protocol });
      const v = decision.verdict;
      return { req, decision, action: v.action, reasons: v.reasons, approvalId: null };
    });

    if (session.expiresAt.getTime() <= now) {
      const r = gatewayReason(
        "identity.token_expired",
        `your access token expired at ${session.expiresAt.toISOString()}; reconnect with a fresh token`,
      );
      for (const p of plans) block(p, [r]);
      return this.finish(session, plans, true, hooks);
    }

    // A refusal comes after the policy's own reasons when the policy blocks too, so the user sees both.
    for (const p of plans)
      if (p.req.refusal) block(p, p.action === "block" ? [...p.reasons, p.req.refusal] : [p.req.refusal]);

    // Can the adapter enforce each mask? Asked before anything is recorded, so the record says what happens.
    for (const p of plans) {
      const mask = p.decision.verdict.mask;
      if ((p.action !== "mask" && p.action !== "approve") || mask.length === 0) continue;
      if (!p.req.checkMask) {
        const r = `pamgate cannot mask ${session.protocol} responses, so this command is blocked`;
        block(p, [gatewayReason("mask.unsupported", r)]);
        continue;
      }
      try {
        const problem = await p.req.checkMask(mask);
        if (problem) block(p, [problem]);
      } catch (err) {
        block(p, [
          gatewayReason("mask.unavailable", `pamgate cannot prepare the masking: ${errorText(err)}`),
        ]);
      }
    }

    if (!plans.some((p) => p.action === "block")) {
      for (const p of plans) {
        if (p.action !== "approve") continue;
        await this.approve(session, p, hooks);
        if ((p.action as Plan["action"]) === "block") break;
      }
    }
    return this.finish(session, plans, false, hooks);
  }

  /** Resolves an `approve` plan to a grant (allow/mask under the approval) or a block. */
  private async approve(session: SessionContext, p: Plan, hooks: DecideHooks): Promise<void> {
    const { decision, req } = p;
    const verdict = decision.verdict;
    const approvals = this.options.approvals;
    const granted: EnforcedAction = verdict.mask.length > 0 ? "mask" : "allow";
    if (!approvals || !verdict.approval) {
      const r = gatewayReason(
        "approval.unavailable",
        "this command needs an approval, but approvals are not configured on this gateway",
      );
      block(p, [...verdict.reasons, r]);
      return;
    }
    try {
      const grant = await approvals.findGrant({
        requester: session.identity,
        resource: session.resource.name,
        fingerprint: req.fingerprint,
      });
      if (grant) {
        Object.assign(p, { action: granted, approvalId: grant.approval_id });
        return;
      }
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
      p.approvalId = request.id;
      // The request itself is a decision on record: who asked, for what, and why it needs approval.
      await this.record(session, p, "approve", verdict.reasons, request.id);
      hooks.onHold?.(request.id, verdict);
      const timeoutMs = this.options.approvalTimeoutMs ?? 5 * 60_000;
      const outcome = await approvals.waitForOutcome(request.id, { timeoutMs, signal: hooks.signal });
      if (outcome === "approved") {
        p.action = granted;
        return;
      }
      const why: Record<Exclude<ApprovalOutcome, "approved">, string> = {
        denied: `approval request ${request.id} was denied`,
        expired: `approval request ${request.id} expired before enough approvers said yes`,
        timeout: `no approval for request ${request.id} within ${Math.round(timeoutMs / 1000)} s; it stays open — run the command again once it is approved`,
      };
      block(p, [gatewayReason(`approval.${outcome}` as const, why[outcome])]);
    } catch (err) {
      block(p, [gatewayReason("approval.error", `the approval could not be processed: ${errorText(err)}`)]);
    }
  }

  /**
   * Takes one record. The trail's answer is returned as it is, not its `durable` promise: an async function
   * returning a promise would wait for it.
   */
  private async record(
    session: SessionContext,
    p: Plan,
    action: string,
    reasons: Reason[],
    approvalId: string | null,
  ): Promise<AuditAck | undefined> {
    return this.options.audit?.recordDecision(p.decision, {
      session,
      action,
      approvalId,
      reasons,
      commandText: p.req.logText,
    });
  }

  /**
   * Makes the batch all or nothing, records every command's enforced outcome durably, then returns them. A
   * record that fails turns the whole batch into a block.
   */
  private async finish(
    session: SessionContext,
    plans: Plan[],
    fatal: boolean,
    hooks: DecideHooks,
  ): Promise<BatchOutcome> {
    const culprit = plans.findIndex((p) => p.action === "block");
    if (culprit >= 0 && plans.length > 1) {
      const c = plans[culprit] as Plan;
      const codes = c.reasons.map((r) => r.code).join(", ");
      const r = gatewayReason(
        "batch.blocked",
        `command ${culprit + 1} of ${plans.length} in this message was blocked (${codes}), so none of them ran`,
      );
      for (const p of plans) if (p !== c && p.action !== "block") block(p, [r]);
    }
    // Every plan is settled by now (approvals resolved), so nothing is left at "approve".
    const results = await Promise.allSettled(
      plans.map((p) => this.record(session, p, p.action, p.reasons, p.approvalId)),
    );
    let failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
    let durable = failed ? null : durableOf(results as PromiseFulfilledResult<AuditAck | undefined>[]);
    if (durable && !hooks.holdsResults) {
      // The adapter cannot hold results back: the records must be on disk before the commands go ahead.
      try {
        await durable;
      } catch (err) {
        failed = { status: "rejected", reason: err };
      }
      durable = null;
    }
    if (failed) {
      const err = failed.reason as unknown;
      this.log.error(
        { session: session.id, decisions: plans.map((p) => p.decision.decision_id) },
        `audit record failed: ${errorText(err)}`,
      );
      // The records the trail did take (if any) name an action that now does not happen; the trail refusing
      // others means it is full or failing, so a superseding record would be refused too. Logged above.
      const r = gatewayReason(
        "audit.unavailable",
        `the audit trail cannot record this command, so it is blocked: ${errorText(err)}`,
      );
      for (const p of plans) block(p, [r]);
    }
    const outcomes = plans.map((p): Outcome => {
      const action = p.action as EnforcedAction;
      metrics.decisions.inc({ action, protocol: session.protocol });
      return {
        action,
        verdict: p.decision.verdict,
        reasons: p.reasons,
        mask: action === "mask" ? p.decision.verdict.mask : [],
        decision: p.decision,
        approvalId: p.approvalId,
        fatal,
      };
    });
    const blocked = outcomes.find((o) => o.action === "block");
    const cause = culprit >= 0 ? outcomes[culprit] : blocked;
    return {
      action: blocked ? "block" : outcomes.some((o) => o.action === "mask") ? "mask" : "allow",
      outcomes,
      reasons: cause?.reasons ?? [],
      fatal,
      durable: blocked ? null : durable,
    };
  }
}

/** One promise for the durability of a batch's records (usually all in one group commit: one promise). */
function durableOf(results: readonly PromiseFulfilledResult<AuditAck | undefined>[]): Promise<void> | null {
  let first: Promise<void> | undefined;
  let all: Promise<void>[] | undefined;
  for (const r of results) {
    const d = r.value ? r.value.durable : undefined;
    if (!d || d === first) continue;
    if (!first) first = d;
    else {
      all ??= [first];
      all.push(d);
    }
  }
  if (all) return Promise.all(all).then(() => undefined);
  return first ?? null;
}

function block(p: Plan, reasons: Reason[]): void {
  p.action = "block";
  p.reasons = reasons;
}
