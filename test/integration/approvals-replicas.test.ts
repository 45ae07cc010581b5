// Two gateway replicas against one real PostgreSQL, each with its own pool, LISTEN connection and
// ApprovalService, as two processes would have: a request created on A and decided on B wakes A's waiter
// through LISTEN/NOTIFY — well within the one-second wait the tests allow.
import t from "tap";
import { ApprovalService } from "../../src/approvals/service.js";
import type { NewApprovalRequest } from "../../src/approvals/types.js";
import { openPostgresStore } from "../../src/store/postgres.js";
import { ddlRequest, person } from "../helpers/approvals.js";
import { startPostgres } from "../helpers/postgres.js";

const alice = person("alice", ["engineering"]);
const bob = person("bob", ["dba"]);

const newRequest = (): NewApprovalRequest =>
  ddlRequest(alice, {
    command: { text: "ALTER TABLE orders ADD COLUMN note text", fingerprint: "fp-alter-orders-note" },
    rule: { groups: ["dba"], min_approvals: 1, ttl_s: 300 },
    sessionId: "session-a",
  });

const server = await startPostgres();
t.teardown(() => server.stop());

// One clock for both replicas, so the expiry test can move time forward.
let clock = Date.now();
const now = () => new Date(clock);

/**
 * A replica. The safety poll is set to a minute, so a waiter that wakes within the test's one-second timeout
 * was woken by a notification, not by polling.
 */
async function replica() {
  const store = await openPostgresStore({ url: server.url });
  const service = new ApprovalService({
    store,
    now,
    pendingTtlS: 900,
    sweepIntervalMs: 0,
    pollIntervalMs: 60_000,
  });
  await service.start();
  return {
    service,
    async close() {
      await service.close();
      await store.close();
    },
  };
}

// Both start (and migrate) at once, as replicas of one deployment do.
const [a, b] = await Promise.all([replica(), replica()]);
t.teardown(async () => {
  await a.close();
  await b.close();
});

t.test("created on A, approved on B: A's waiter wakes", async (t) => {
  const request = await a.service.create(newRequest());
  const waiting = a.service.waitForOutcome(request.id, { timeoutMs: 1000 });
  const approved = await b.service.approve(request.id, bob);
  t.equal(approved.status, "approved");
  t.equal(await waiting, "approved");
  const grant = await a.service.findGrant({
    requester: alice,
    resource: "orders-db",
    fingerprint: "fp-alter-orders-note",
  });
  t.equal(grant?.approval_id, request.id, "A sees the grant B's approval created");
});

t.test("created on A, denied on B: A's waiter hears it", async (t) => {
  const request = await a.service.create(newRequest());
  const waiting = a.service.waitForOutcome(request.id, { timeoutMs: 1000 });
  await b.service.deny(request.id, bob, { comment: "not today" });
  t.equal(await waiting, "denied");
  t.equal((await a.service.get(request.id)).votes[0]?.comment, "not today");
});

t.test("expired by B's sweep: A's waiter hears it", async (t) => {
  const request = await a.service.create(newRequest());
  const waiting = a.service.waitForOutcome(request.id, { timeoutMs: 1000 });
  await new Promise((r) => setTimeout(r, 50)); // A has read it as pending
  clock += 900_000;
  await b.service.sweep();
  t.equal(await waiting, "expired");
  t.equal((await b.service.get(request.id)).status, "expired");
});

t.test("several waiters on both replicas all wake", async (t) => {
  const request = await b.service.create(newRequest());
  const waits = [a, a, b].map((r) => r.service.waitForOutcome(request.id, { timeoutMs: 1000 }));
  await a.service.approve(request.id, bob);
  t.same(await Promise.all(waits), ["approved", "approved", "approved"]);
});

t.test("approved while A's LISTEN connection is down: A re-reads on reconnect", async (t) => {
  const request = await a.service.create(newRequest());
  const waiting = a.service.waitForOutcome(request.id, { timeoutMs: 2000 });
  await new Promise((r) => setTimeout(r, 50));
  const admin = await openPostgresStore({ url: server.url });
  t.teardown(() => admin.close());
  const killed = await admin.query(
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'pamgate-listen'",
  );
  t.equal(killed.length, 2, "both replicas' LISTEN connections are gone");
  await b.service.approve(request.id, bob); // its NOTIFY reaches nobody
  t.equal(await waiting, "approved", "the reconnect's re-check finds it (the poll is a minute away)");
});
