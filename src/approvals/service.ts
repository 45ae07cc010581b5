// Just-in-time approvals. An `approve` verdict becomes a pending request; approvers from the rule's groups vote
// with their own identity; min_approvals distinct approvals approve it and make it a grant for the same
// identity, command fingerprint and resource for rule.ttl_s; one deny denies it; nobody decides in time and it
// expires. Every state change happens in a transaction under the request's row lock and announces itself with
// a NOTIFY in that same transaction, which every replica's waiters hear after the commit.
import { randomUUID } from "node:crypto";
import type { Identity } from "../decision/contract.js";
import { metrics } from "../metrics.js";
import { assertChannel, type Store, type Transaction } from "../store/store.js";
import { coalesce } from "../util/coalesce.js";
import { type Logger, silentLogger } from "../util/log.js";
import { ApprovalError } from "./errors.js";
import * as repo from "./repository.js";
import {
  actorChain,
  checkVoter,
  describeChain,
  parseApprovalId,
  validateIdentity,
  validateNewRequest,
} from "./rules.js";
import {
  APPROVAL_STATUSES,
  type ApprovalRequest,
  type ApprovalRequestWithVotes,
  type ApprovalStatus,
  type Grant,
  type NewApprovalRequest,
  type Outcome,
  type Vote,
} from "./types.js";
import { Waiters } from "./waiters.js";

export interface ApprovalServiceOptions {
  store: Store;
  /** The clock every timestamp and expiry is computed from. */
  now?: () => Date;
  /** How long a request stays pending. Default 900 s. */
  pendingTtlS?: number;
  /** How often pending requests past their deadline are expired (and their waiters woken). Default 10 s; 0 off. */
  sweepIntervalMs?: number;
  /**
   * How often the requests being waited on are re-read, in case a notification was lost (a LISTEN connection
   * that dropped). Notifications normally wake waiters at once; this bounds the delay when one does not.
   * Default 5 s.
   */
  pollIntervalMs?: number;
  /** The NOTIFY channel shared by all replicas. Default "pamgate_approvals". */
  channel?: string;
  log?: Logger;
}

export interface WaitOptions {
  timeoutMs: number;
  /** Aborting rejects the wait with the signal's reason (the client went away); the request stays as it is. */
  signal?: AbortSignal;
}

export interface ListFilter {
  status?: ApprovalStatus;
  /** Default 100, at most 1000. */
  limit?: number;
  offset?: number;
}

/** The notification payload: which request changed and what it is now. */
export interface Change {
  id: string;
  status: ApprovalStatus;
}

const TERMINAL: ReadonlySet<ApprovalStatus> = new Set(["approved", "denied", "expired"]);
const MAX_TIMER_MS = 2 ** 31 - 1;

export class ApprovalService {
  private readonly store: Store;
  private readonly now: () => Date;
  private pendingTtlMs: number;
  private readonly channel: string;
  private readonly log: Logger;
  private readonly waiters = new Waiters();
  private readonly changeListeners = new Set<(change: Change) => void>();
  private readonly timers: NodeJS.Timeout[] = [];
  private started: Promise<void> | null = null;
  private unlisten: (() => Promise<void>) | null = null;
  private closed = false;
  private readonly gauge = coalesce(async () => {
    try {
      metrics.pendingApprovals.set(await repo.countPending(this.store, this.now()));
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, "approvals: cannot count pending requests");
    }
  });

  constructor(private readonly options: ApprovalServiceOptions) {
    this.store = options.store;
    this.now = options.now ?? (() => new Date());
    this.pendingTtlMs = (options.pendingTtlS ?? 900) * 1000;
    this.channel = options.channel ?? "pamgate_approvals";
    assertChannel(this.channel);
    this.log = options.log ?? silentLogger;
  }

  /** When requests created from now on expire unanswered (a configuration reload). */
  setPendingTtl(seconds: number): void {
    this.pendingTtlMs = seconds * 1000;
  }

  /** Subscribes to the replicas' notifications and starts the expiry sweep. Idempotent; waitForOutcome calls it. */
  start(): Promise<void> {
    this.started ??= this.subscribe().catch((err) => {
      this.started = null; // the database may be back next time
      throw err;
    });
    return this.started;
  }

  /**
   * Calls `listener` with every change of any request — created, voted on, decided, expired — on any replica
   * sharing the store (the NOTIFY each change sends in its transaction), after it committed. Starts the
   * subscription if needed. A listener must not throw; it should only start work. Returns the unsubscribe call.
   */
  async onChange(listener: (change: Change) => void): Promise<() => void> {
    this.changeListeners.add(listener);
    try {
      await this.start();
    } catch (err) {
      this.changeListeners.delete(listener);
      throw err;
    }
    return () => {
      this.changeListeners.delete(listener);
    };
  }

  /** Stops timers and the subscription; pending waits reject. The store stays open (the caller owns it). */
  async close(): Promise<void> {
    this.closed = true;
    this.waiters.failAll(new Error("the approval service is shutting down"));
    await this.started?.catch(() => {}); // a start in progress finishes first, so its timers are cleared too
    for (const timer of this.timers) clearInterval(timer);
    await this.unlisten?.();
    await this.gauge.idle();
  }

  async create(input: NewApprovalRequest): Promise<ApprovalRequest> {
    validateNewRequest(input);
    const now = this.now();
    const request: ApprovalRequest = {
      id: randomUUID(),
      status: "pending",
      requester: input.requester,
      resource: input.resource,
      protocol: input.protocol,
      command: { text: input.command.text, fingerprint: input.command.fingerprint },
      reasons: input.reasons,
      rule: {
        groups: [...input.rule.groups],
        min_approvals: input.rule.min_approvals,
        ttl_s: input.rule.ttl_s,
      },
      decision_id: input.decisionId,
      session_id: input.sessionId,
      created_at: now,
      expires_at: new Date(now.getTime() + this.pendingTtlMs),
      decided_at: null,
      grant_expires_at: null,
      approvals: 0,
    };
    await this.store.transaction(async (tx) => {
      await repo.insertRequest(tx, request, actorChain(input.requester));
      await this.announce(tx, { id: request.id, status: "pending" });
    });
    await this.gauge.trigger();
    this.log.info(
      {
        approval_id: request.id,
        requester: describeChain(input.requester),
        resource: request.resource,
        decision_id: request.decision_id,
      },
      "approval requested",
    );
    return request;
  }

  approve(
    id: string,
    approver: Identity,
    options: { comment?: string } = {},
  ): Promise<ApprovalRequestWithVotes> {
    return this.vote(id, approver, "approve", options.comment);
  }

  deny(
    id: string,
    approver: Identity,
    options: { comment?: string } = {},
  ): Promise<ApprovalRequestWithVotes> {
    return this.vote(id, approver, "deny", options.comment);
  }

  /** One request with its votes; a pending one past its deadline is expired first. */
  async get(id: string): Promise<ApprovalRequestWithVotes> {
    const request = await this.read(parseApprovalId(id));
    if (!request) throw notFound(id);
    return { ...request, votes: await repo.selectVotes(this.store, request.id) };
  }

  /** Newest first. Pending requests past their deadline are expired first, so the list never shows them pending. */
  async list(filter: ListFilter = {}): Promise<ApprovalRequest[]> {
    if (filter.status !== undefined && !APPROVAL_STATUSES.includes(filter.status)) {
      throw new ApprovalError("invalid", `unknown status ${JSON.stringify(filter.status)}`);
    }
    const limit = filter.limit ?? 100;
    const offset = filter.offset ?? 0;
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000 || !Number.isInteger(offset) || offset < 0) {
      throw new ApprovalError("invalid", "limit must be 1 to 1000 and offset a non-negative integer");
    }
    await this.sweep();
    return repo.listRequests(this.store, { status: filter.status, limit, offset });
  }

  /**
   * The live grant that lets `requester` run `fingerprint` on `resource`, or null. It must be the same identity:
   * the same issuer and subject and the same actor chain — a grant to alice is not one to an agent acting for
   * alice, nor the other way round.
   */
  async findGrant(query: {
    requester: Identity;
    resource: string;
    fingerprint: string;
  }): Promise<Grant | null> {
    validateIdentity(query.requester, "requester");
    if (typeof query.resource !== "string" || typeof query.fingerprint !== "string") {
      throw new ApprovalError("invalid", "resource and fingerprint must be strings");
    }
    return repo.selectGrant(
      this.store,
      {
        iss: query.requester.iss,
        sub: query.requester.sub,
        actorChain: actorChain(query.requester),
        resource: query.resource,
        fingerprint: query.fingerprint,
      },
      this.now(),
    );
  }

  /**
   * Resolves with the request's outcome as soon as any replica decides it, or "timeout" after `timeoutMs`.
   * An id that does not exist rejects with not_found.
   */
  async waitForOutcome(id: string, options: WaitOptions): Promise<Outcome> {
    const requestId = parseApprovalId(id);
    const { timeoutMs, signal } = options;
    if (!Number.isFinite(timeoutMs) || timeoutMs < 0) {
      throw new ApprovalError("invalid", "timeoutMs must be a non-negative number");
    }
    signal?.throwIfAborted();
    await this.start();
    if (this.closed) throw new Error("the approval service is shut down");

    return new Promise<Outcome>((resolve, reject) => {
      let done = false;
      const timers: NodeJS.Timeout[] = [];
      const finish = (settle: () => void) => {
        if (done) return;
        done = true;
        remove();
        for (const timer of timers) clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        settle();
      };
      const onAbort = () => finish(() => reject(signal?.reason));
      // Registered before the first read: an outcome announced while that read is in flight still lands here.
      const remove = this.waiters.add(requestId, {
        settle: (outcome) => finish(() => resolve(outcome)),
        fail: (err) => finish(() => reject(err)),
      });
      timers.push(setTimeout(() => finish(() => resolve("timeout")), Math.min(timeoutMs, MAX_TIMER_MS)));
      signal?.addEventListener("abort", onAbort, { once: true });
      if (signal?.aborted) return onAbort(); // aborted while start() was awaited: no event will come

      this.read(requestId).then(
        (request) => {
          if (!request) return finish(() => reject(notFound(id)));
          if (TERMINAL.has(request.status)) return this.waiters.settle(requestId, request.status as Outcome);
          // Wake at the deadline rather than at the next sweep.
          const untilExpiry = request.expires_at.getTime() - this.now().getTime();
          if (untilExpiry < timeoutMs) {
            timers.push(setTimeout(() => void this.recheck([requestId]), Math.max(0, untilExpiry) + 5));
          }
        },
        (err) => finish(() => reject(err)),
      );
    });
  }

  /** Expires every pending request past its deadline and wakes its waiters. Returns how many expired. */
  async sweep(): Promise<number> {
    const expired = await this.store.transaction(async (tx) => {
      const ids = await repo.expireDue(tx, this.now());
      for (const id of ids) await this.announce(tx, { id, status: "expired" });
      return ids;
    });
    if (expired.length > 0) {
      this.log.info({ approval_ids: expired }, "approval requests expired");
      await this.gauge.trigger();
    }
    return expired.length;
  }

  private async vote(
    rawId: string,
    approver: Identity,
    vote: Vote["vote"],
    comment: string | undefined,
  ): Promise<ApprovalRequestWithVotes> {
    const id = parseApprovalId(rawId);
    validateIdentity(approver, "approver");
    if (comment !== undefined && typeof comment !== "string") {
      throw new ApprovalError("invalid", "comment must be a string");
    }
    const now = this.now();
    // A refusal throws inside the transaction, so it rolls back and leaves everything as it was. A request past
    // its deadline is refused as expired but not marked here (the sweep or the next read does that), to keep
    // that rule without exception.
    const result = await this.store.transaction(async (tx) => {
      const request = (await repo.lockRequest(tx, id)) ? await repo.selectRequest(tx, id) : null;
      if (!request) throw notFound(rawId);
      if (request.status === "expired" || (request.status === "pending" && request.expires_at <= now)) {
        throw expiredError(request);
      }
      if (request.status !== "pending") {
        throw new ApprovalError("not_pending", `approval request ${id} is already ${request.status}`);
      }
      checkVoter(request.requester, request.rule.groups, approver);
      if (await repo.hasVoted(tx, id, approver.sub)) {
        throw new ApprovalError(
          "already_voted",
          `${approver.sub} has already voted on approval request ${id}`,
        );
      }
      await repo.insertVote(tx, id, approver, vote, comment ?? null, now);
      let status: ApprovalStatus = "pending";
      if (vote === "deny") {
        status = "denied";
        await repo.decide(tx, id, status, now, null);
      } else if ((await repo.countApprovals(tx, id)) >= request.rule.min_approvals) {
        status = "approved";
        await repo.decide(tx, id, status, now, new Date(now.getTime() + request.rule.ttl_s * 1000));
      }
      await this.announce(tx, { id, status });
      const updated = await repo.selectRequest(tx, id);
      if (!updated) throw new Error(`approval request ${id} vanished inside its transaction`);
      return { ...updated, votes: await repo.selectVotes(tx, id) };
    });
    await this.gauge.trigger();
    this.log.info(
      { approval_id: id, approver: describeChain(approver), vote, status: result.status },
      `approval ${vote === "approve" ? "approved" : "denied"} by ${approver.sub}`,
    );
    return result;
  }

  /** The request, expiring it first if it is pending past its deadline (lazy expiry on read). */
  private async read(id: string): Promise<ApprovalRequest | null> {
    const request = await repo.selectRequest(this.store, id);
    if (request?.status !== "pending" || request.expires_at > this.now()) return request;
    await this.store.transaction(async (tx) => {
      if ((await repo.expireDue(tx, this.now(), id)).length > 0) {
        await this.announce(tx, { id, status: "expired" });
      }
    });
    await this.gauge.trigger();
    return repo.selectRequest(this.store, id);
  }

  private announce(tx: Transaction, change: Change): Promise<void> {
    return tx.notify(this.channel, JSON.stringify(change));
  }

  private async subscribe(): Promise<void> {
    this.unlisten = await this.store.listen(this.channel, (payload) => this.onNotification(payload), {
      onReconnect: () => void this.recheck(this.waiters.ids()),
    });
    const poll = setInterval(() => {
      if (this.waiters.size > 0) void this.recheck(this.waiters.ids(), true);
    }, this.options.pollIntervalMs ?? 5000);
    this.timers.push(poll);
    const sweepMs = this.options.sweepIntervalMs ?? 10_000;
    if (sweepMs > 0) {
      this.timers.push(
        setInterval(() => {
          this.sweep().catch((err) =>
            this.log.warn({ err: (err as Error).message }, "approvals: sweep failed"),
          );
        }, sweepMs),
      );
    }
    // Timers never keep the process alive: a gateway shutting down should not wait for the next sweep.
    for (const timer of this.timers) timer.unref();
    await this.gauge.trigger();
  }

  private onNotification(payload: string): void {
    let change: Partial<Change> | null = null;
    try {
      change = JSON.parse(payload) as Partial<Change> | null;
    } catch {}
    if (typeof change?.id !== "string" || typeof change.status !== "string") {
      // Anyone with access to the database can NOTIFY on the channel; such noise must not break waiters.
      this.log.warn({ payload: payload.slice(0, 200) }, "approvals: ignoring a malformed notification");
      return;
    }
    if (TERMINAL.has(change.status)) this.waiters.settle(change.id, change.status as Outcome);
    for (const listener of this.changeListeners) {
      try {
        listener(change as Change);
      } catch (err) {
        this.log.error({ err: (err as Error).message }, "approvals: a change listener failed");
      }
    }
    void this.gauge.trigger(); // another replica may have changed the count
  }

  /** Re-reads requests being waited on and settles the decided ones: the safety net for lost notifications. */
  private async recheck(ids: string[], sweepFirst = false): Promise<void> {
    if (ids.length === 0 || this.closed) return;
    try {
      if (sweepFirst) await this.sweep();
      else for (const id of ids) await this.read(id);
      const statuses = await repo.selectStatuses(this.store, ids);
      for (const [id, status] of statuses) {
        if (TERMINAL.has(status)) this.waiters.settle(id, status as Outcome);
      }
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, "approvals: re-checking waited requests failed");
    }
  }
}

function notFound(id: string): ApprovalError {
  return new ApprovalError("not_found", `no approval request with id ${JSON.stringify(id)}`);
}

function expiredError(request: ApprovalRequest): ApprovalError {
  return new ApprovalError(
    "expired",
    `approval request ${request.id} expired at ${request.expires_at.toISOString()} without a decision`,
  );
}
