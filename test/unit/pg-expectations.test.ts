// The proxy's queue of expected server answers (src/proxy/postgres/responses.ts) follows PostgreSQL's error-skip:
// after an extended-protocol error the server discards every message until Sync, including messages the proxy
// forwards after the error arrived. Regressions for the mask bypasses test/integration/fuzz-gateway.test.ts
// found (there against a real server); here a property over random push/error/answer sequences against a model
// of the server.
import fc from "fast-check";
import t from "tap";
import { type Expectation, ExpectationQueue } from "../../src/proxy/postgres/responses.js";

const query = (): Expectation => ({ kind: "query", mask: null });

t.test("a message forwarded while the server skips to Sync gets no expectation", async (t) => {
  const q = new ExpectationQueue();
  q.push({ kind: "parse" });
  // ErrorResponse to the Parse: the session shifts it and skips to Sync; no Sync was forwarded yet.
  q.shift();
  q.skipToSync();
  q.push(query()); // the server will discard this Query
  q.push({ kind: "bind" });
  q.push({ kind: "sync" });
  t.equal(q.length, 1, "only the Sync is expected");
  t.equal(q.peek()?.kind, "sync");
  q.shift(); // its ReadyForQuery
  q.push(query()); // after the Sync, the next Query is answered again
  t.equal(q.peek()?.kind, "query");
});

t.test("a skip that finds a Sync queued stops there, and expectations after it are kept", async (t) => {
  const q = new ExpectationQueue();
  q.push({ kind: "parse" });
  q.push({ kind: "bind" });
  q.push({ kind: "sync" });
  q.push(query());
  q.shift();
  q.skipToSync();
  t.same([q.shift()?.kind, q.shift()?.kind], ["sync", "query"]);
  q.push(query());
  t.equal(q.length, 1, "not skipping: a Sync was queued");
});

/**
 * A model: the client sends messages (each of which the server answers, unless it skips), the server fails some
 * extended-protocol message, and answers arrive in order. The queue's head must always be the expectation of the
 * message the next answer belongs to.
 */
t.test("the queue's head always matches the message the server answers next", async (t) => {
  type Op = { op: "send"; kind: "parse" | "bind" | "query" | "sync" } | { op: "answer"; fail: boolean };
  const arbOp: fc.Arbitrary<Op> = fc.oneof(
    fc.record({
      op: fc.constant("send" as const),
      kind: fc.constantFrom("parse", "bind", "query", "sync") as fc.Arbitrary<
        "parse" | "bind" | "query" | "sync"
      >,
    }),
    fc.record({ op: fc.constant("answer" as const), fail: fc.boolean() }),
  );
  fc.assert(
    fc.property(fc.array(arbOp, { maxLength: 60 }), (ops) => {
      const q = new ExpectationQueue();
      // The server: messages it received and has not answered; whether it discards until Sync.
      const inbox: Array<{ kind: string; id: number }> = [];
      let skipping = false;
      let id = 0;
      const pushed = new Map<Expectation, number>();
      for (const o of ops) {
        if (o.op === "send") {
          const e: Expectation = o.kind === "query" ? query() : { kind: o.kind };
          pushed.set(e, ++id);
          q.push(e);
          inbox.push({ kind: o.kind, id });
          continue;
        }
        // The server takes its next message.
        const m = inbox.shift();
        if (!m) continue;
        if (skipping && m.kind !== "sync") continue; // discarded: no answer
        if (m.kind === "sync") skipping = false;
        // Its answer arrives: the queue's head must be this message's expectation.
        const head = q.peek();
        if (!head || pushed.get(head) !== m.id) return false;
        const fails = o.fail && (m.kind === "parse" || m.kind === "bind");
        q.shift();
        if (fails) {
          // The session on an extended-protocol ErrorResponse: shift (done above) and skip to Sync.
          q.skipToSync();
          skipping = true;
        }
      }
      return true;
    }),
    { numRuns: 3000 },
  );
  t.pass();
});
