// The callers of waitForOutcome in this process, by approval id. Whatever learns an outcome first — a
// notification from any replica, the safety poll, the expiry timer — settles every waiter of that id once.
import type { Outcome } from "./types.js";

export interface Waiter {
  settle(outcome: Outcome): void;
  fail(error: Error): void;
}

export class Waiters {
  private readonly byId = new Map<string, Set<Waiter>>();

  /** Registers a waiter; returns its removal. */
  add(id: string, waiter: Waiter): () => void {
    let set = this.byId.get(id);
    if (!set) {
      set = new Set();
      this.byId.set(id, set);
    }
    set.add(waiter);
    return () => {
      const current = this.byId.get(id);
      if (current?.delete(waiter) && current.size === 0) this.byId.delete(id);
    };
  }

  settle(id: string, outcome: Outcome): void {
    const set = this.byId.get(id);
    if (!set) return;
    this.byId.delete(id);
    for (const waiter of set) waiter.settle(outcome);
  }

  failAll(error: Error): void {
    const all = [...this.byId.values()];
    this.byId.clear();
    for (const set of all) for (const waiter of set) waiter.fail(error);
  }

  ids(): string[] {
    return [...this.byId.keys()];
  }

  get size(): number {
    return this.byId.size;
  }
}
