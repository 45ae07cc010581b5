// What the proxy expects back from the upstream server, in order.
//
// The server answers frontend messages strictly in order, so every message the proxy forwards (or injects)
// that produces a response pushes an Expectation; each response frame is matched against the oldest one. This
// is how the proxy knows which DataRows belong to a masked statement, which ErrorResponse is the one it caused
// on purpose to block a statement, and which responses to its own injected messages the client must not see.
import type { Reason } from "../../decision/contract.js";
import type { MaskPlan } from "./masking.js";
import type { FieldDescription } from "./wire.js";

/** A masked statement's rules, waiting for its RowDescription to become a plan. */
export interface MaskContext {
  masks: ReadonlyArray<{ field: string; strategy: "redact" | "partial" | "hash" }>;
  /** Set once the columns are known. */
  plan: MaskPlan | null;
  /** For COPY … TO: the plan comes from the table's columns instead of a RowDescription. */
  copyPlan?: MaskPlan;
}

export type Expectation =
  /** Parse → ParseComplete. */
  | { kind: "parse" }
  /** Bind → BindComplete. */
  | { kind: "bind" }
  /** Close → CloseComplete. */
  | { kind: "close" }
  /** Describe statement → ParameterDescription, then RowDescription or NoData. */
  | { kind: "describe-statement"; statement: string }
  /**
   * Describe portal → RowDescription or NoData. `swallow`: the proxy injected it to learn a masked portal's
   * columns; the client did not ask and must not see the answer.
   */
  | { kind: "describe-portal"; portal: string; swallow: boolean; mask: MaskContext | null }
  /** Execute → DataRow* then CommandComplete / EmptyQueryResponse / PortalSuspended (or a COPY sub-protocol). */
  | { kind: "execute"; mask: MaskContext | null }
  /** Sync → ReadyForQuery. */
  | { kind: "sync" }
  /** Query (simple protocol) → any number of result sets, then ReadyForQuery. */
  | { kind: "query"; mask: MaskContext | null }
  /**
   * A message the proxy substituted to make the server fail on purpose (so transaction and error-skip state stay
   * exactly as PostgreSQL's own); its ErrorResponse is replaced by the policy's. `simple`: it stands in for a
   * Query and is followed by ReadyForQuery.
   */
  | { kind: "blocked"; reasons: Reason[]; sqlstate: string; simple: boolean };

/** A FIFO without the O(n) shift of a plain array. */
export class ExpectationQueue {
  private items: Expectation[] = [];
  private head = 0;
  /**
   * The server is discarding messages until Sync (skipToSync found no Sync queued): what the proxy forwards
   * meanwhile gets no answer, so its expectations are not kept. Without this, a Query the server discarded kept
   * its expectation, the answers of every later message were matched one expectation off, and a masked result
   * was taken for another statement's and passed unmasked (regression tests: test/unit/pg-expectations.test.ts,
   * test/integration/fuzz-gateway.test.ts).
   */
  private skipping = false;

  push(e: Expectation): void {
    if (this.skipping) {
      if (e.kind !== "sync") return;
      this.skipping = false;
    }
    this.items.push(e);
  }

  peek(): Expectation | undefined {
    return this.items[this.head];
  }

  shift(): Expectation | undefined {
    const e = this.items[this.head];
    if (e === undefined) return undefined;
    this.items[this.head] = undefined as unknown as Expectation;
    this.head++;
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return e;
  }

  /**
   * After an ErrorResponse in the extended protocol the server discards messages until Sync: drop what the
   * proxy expected from them, keeping the Sync.
   */
  skipToSync(): void {
    while (this.peek() && this.peek()?.kind !== "sync") this.shift();
    // No Sync forwarded yet: the server goes on discarding until the client sends one.
    if (!this.peek()) this.skipping = true;
  }

  get length(): number {
    return this.items.length - this.head;
  }
}

/** The remembered RowDescription of a prepared statement or portal (for masking without a fresh Describe). */
export type Columns = FieldDescription[];
