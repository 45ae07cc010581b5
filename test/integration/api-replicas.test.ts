// Two control planes against one real PostgreSQL (started by the test harness), as two gateway replicas run:
// each has its own pool, LISTEN connection, ApprovalService and API listening on 127.0.0.1. A request created
// on replica A and approved — or denied — through replica B's HTTP API wakes the waiter on A within a second.
// The services' safety poll is a minute, so a waiter that wakes in time was woken by LISTEN/NOTIFY.
import type { AddressInfo } from "node:net";
import t from "tap";
import { buildApi } from "../../src/api/index.js";
import { ObservableApprovalService } from "../../src/api/observable.js";
import type { NewApprovalRequest } from "../../src/approvals/types.js";
import { DecisionEngine } from "../../src/decision/engine.js";
import { TokenVerifier } from "../../src/identity/verifier.js";
import { openStore } from "../../src/store/open.js";
import { startTestIdp } from "../helpers/idp.js";
import { startPostgres } from "../helpers/postgres.js";

const server = await startPostgres();
t.teardown(() => server.stop());
const idp = await startTestIdp(t, {
  users: { alice: { groups: ["engineering"] }, carol: { groups: ["dba"] } },
});

async function replica(name: string) {
  const store = await openStore({ kind: "postgres", url: server.url });
  const approvals = new ObservableApprovalService({ store, sweepIntervalMs: 0, pollIntervalMs: 60_000 });
  await approvals.start();
  // Each replica verifies tokens itself, as separate processes would.
  const verifier = new TokenVerifier([idp.issuerConfig()]);
  const api = buildApi({ verifier, approvals, engine: new DecisionEngine(), adminGroups: [], store });
  await api.listen({ host: "127.0.0.1", port: 0 });
  const { port } = api.server.address() as AddressInfo;
  return {
    name,
    approvals,
    verifier,
    url: `http://127.0.0.1:${port}`,
    async close() {
      await api.close();
      await approvals.close();
      await store.close();
    },
  };
}

// Both start (and migrate) at once, as replicas of one deployment do.
const [a, b] = await Promise.all([replica("A"), replica("B")]);
t.teardown(async () => {
  await a.close();
  await b.close();
});

const aliceToken = await idp.tokenFor("alice");
const carolToken = await idp.tokenFor("carol");
const alice = (await a.verifier.verify(aliceToken)).identity;

const newRequest = (): NewApprovalRequest => ({
  requester: alice,
  resource: "orders-db",
  protocol: "postgres",
  command: { text: "ALTER TABLE orders ADD COLUMN note text", fingerprint: `fp-${crypto.randomUUID()}` },
  reasons: [{ code: "pg.ddl_needs_approval", message: "ALTER TABLE is a schema change (DDL)" }],
  rule: { groups: ["dba"], min_approvals: 1, ttl_s: 300 },
  decisionId: crypto.randomUUID(),
  sessionId: "session-a",
});

async function vote(base: string, id: string, verb: "approve" | "deny", body?: object) {
  const res = await fetch(`${base}/v1/approvals/${id}/${verb}`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${carolToken}`,
      ...(body ? { "content-type": "application/json" } : {}),
    },
    body: body ? JSON.stringify(body) : undefined,
  });
  return {
    status: res.status,
    body: (await res.json()) as { status?: string; error?: { code: string; message: string } },
  };
}

t.test("created on A, approved through B's API: A's waiter wakes within a second", async (t) => {
  const request = await a.approvals.create(newRequest());
  const started = performance.now();
  const waiting = a.approvals.waitForOutcome(request.id, { timeoutMs: 1000 });

  // B lists it (it is in B's store view at once) and approves it over HTTP.
  const list = await fetch(`${b.url}/v1/approvals?status=pending`, {
    headers: { authorization: `Bearer ${carolToken}` },
  });
  t.ok(((await list.json()) as { approvals: { id: string }[] }).approvals.some((r) => r.id === request.id));
  const approved = await vote(b.url, request.id, "approve", { comment: "from replica B" });
  t.equal(approved.status, 200);
  t.equal(approved.body.status, "approved");

  t.equal(await waiting, "approved", "A's waiter heard it");
  const woke = performance.now() - started;
  t.ok(woke < 1000, `woke after ${Math.round(woke)} ms`);

  const grant = await a.approvals.findGrant({
    requester: alice,
    resource: "orders-db",
    fingerprint: request.command.fingerprint,
  });
  t.equal(grant?.approval_id, request.id, "A sees the grant B's approval created");
  const onA = await fetch(`${a.url}/v1/approvals/${request.id}`, {
    headers: { authorization: `Bearer ${aliceToken}` },
  });
  const body = (await onA.json()) as { status: string; votes: { comment: string }[] };
  t.equal(body.status, "approved", "A's API shows the outcome");
  t.equal(body.votes[0]?.comment, "from replica B");
});

t.test("created on A, denied through B's API: A's waiter wakes; a second vote on A is refused", async (t) => {
  const request = await a.approvals.create(newRequest());
  const started = performance.now();
  const waiting = a.approvals.waitForOutcome(request.id, { timeoutMs: 1000 });
  t.equal((await vote(b.url, request.id, "deny")).body.status, "denied");
  t.equal(await waiting, "denied");
  t.ok(performance.now() - started < 1000);
  const again = await vote(a.url, request.id, "approve");
  t.equal(again.status, 409);
  t.equal(again.body.error?.code, "not_pending");
});

t.test("the same vote sent to both replicas at once is counted once", async (t) => {
  const request = await a.approvals.create(newRequest());
  const results = await Promise.all([vote(a.url, request.id, "approve"), vote(b.url, request.id, "approve")]);
  const statuses = results.map((r) => r.status).sort();
  t.same(statuses, [200, 409], "one succeeds, the other is refused");
  const loser = results.find((r) => r.status === 409);
  t.match(loser?.body.error?.code, /^(already_voted|not_pending)$/);
  const final = await b.approvals.get(request.id);
  t.equal(final.votes.length, 1);
});
