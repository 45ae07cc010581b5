// The limits every listener applies to connections that have not authenticated yet, the same way for every
// protocol (the adapter only says it in its protocol):
//
//   - listeners.<protocol>.auth_timeout_s: a connection has this long, from the moment it is accepted, to finish
//     its start-up and authentication (TLS, the protocol's greeting, the token). Then it is told why (where the
//     protocol can say it) and closed.
//   - listeners.<protocol>.max_unauthenticated_connections: at most this many connections of the listener are in
//     that phase at once; beyond it a new connection is refused at once, and connections that have authenticated
//     are not affected. A slow or hostile client can hold a slot for auth_timeout_s at most.
//
// A listener keeps one PendingConnections, admits each accepted connection with `admit`, and calls
// `authenticated()` once the session is open (or `release()` when the connection ends before). Counted per process
// (each worker, each replica).
import { Type } from "@sinclair/typebox";
import type { Protocol } from "../decision/contract.js";

export const DEFAULT_AUTH_TIMEOUT_S = 30;
export const DEFAULT_MAX_UNAUTHENTICATED = 256;

/** The schema fields of the limits every listener shares (spread into each adapter's listener schema). */
export const listenerLimitProperties = {
  /** Seconds a connection has, from accept, to finish start-up and authentication (default 30). */
  auth_timeout_s: Type.Optional(Type.Integer({ minimum: 1, maximum: 600 })),
  /** Connections not yet authenticated, at most, at once (default 256); beyond it new ones are refused. */
  max_unauthenticated_connections: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000 })),
};

export interface ListenerLimitsConfig {
  auth_timeout_s?: number;
  max_unauthenticated_connections?: number;
}

/** One accepted connection that has not authenticated yet. */
export interface PendingConnection {
  /** Milliseconds left until its deadline (0 once passed). */
  remainingMs(): number;
  /** Whether the deadline passed before it authenticated (its onTimeout was called). */
  readonly expired: boolean;
  /** It authenticated: its slot is freed and its deadline cancelled. Idempotent. */
  authenticated(): void;
  /** It ended (or was refused) before authenticating: its slot is freed and its deadline cancelled. Idempotent. */
  release(): void;
}

export class PendingConnections {
  readonly timeoutMs: number;
  readonly max: number;
  private pendingCount = 0;
  private refusedTotal = 0;
  private timedOutTotal = 0;

  constructor(
    readonly protocol: Protocol,
    config: ListenerLimitsConfig,
  ) {
    this.timeoutMs = (config.auth_timeout_s ?? DEFAULT_AUTH_TIMEOUT_S) * 1000;
    this.max = config.max_unauthenticated_connections ?? DEFAULT_MAX_UNAUTHENTICATED;
  }

  /**
   * Admits a connection just accepted, or returns null (and counts a refusal) when `max` connections are pending
   * already. `onTimeout` is called once, at the deadline, unless the connection authenticated or was released
   * first; it must tell the client `timeoutMessage` where the protocol can, and close the connection.
   */
  admit(onTimeout: () => void): PendingConnection | null {
    if (this.pendingCount >= this.max) {
      this.refusedTotal++;
      return null;
    }
    this.pendingCount++;
    const deadline = Date.now() + this.timeoutMs;
    let done = false;
    let expired = false;
    const finish = () => {
      if (done) return false;
      done = true;
      clearTimeout(timer);
      this.pendingCount--;
      return true;
    };
    const timer = setTimeout(() => {
      if (!finish()) return;
      expired = true;
      this.timedOutTotal++;
      onTimeout();
    }, this.timeoutMs);
    timer.unref();
    return {
      remainingMs: () => Math.max(0, deadline - Date.now()),
      get expired() {
        return expired;
      },
      authenticated: () => void finish(),
      release: () => void finish(),
    };
  }

  /** Connections pending authentication now. */
  get pending(): number {
    return this.pendingCount;
  }

  /** For the listener's status details. */
  stats(): { pending_auth: number; refused_pending_limit: number; auth_timeouts: number } {
    return {
      pending_auth: this.pendingCount,
      refused_pending_limit: this.refusedTotal,
      auth_timeouts: this.timedOutTotal,
    };
  }

  /** What a client whose start-up and authentication took too long is told. */
  get timeoutMessage(): string {
    return `pamgate: start-up and authentication not completed within ${this.timeoutMs / 1000} s (listeners.${this.protocol}.auth_timeout_s)`;
  }

  /** What a client refused for the pending limit is told. */
  get busyMessage(): string {
    return `pamgate: too many connections pending authentication on this listener (listeners.${this.protocol}.max_unauthenticated_connections = ${this.max}); try again shortly`;
  }
}
