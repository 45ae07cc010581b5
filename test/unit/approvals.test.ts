// The approval workflow, the same tests on both store backends (PostgreSQL started by the harness, PGlite in a
// temp data directory): requests, votes, grants, expiry, waiting — and every refusal, each checked to leave
// the tables exactly as they were. The clock is injected, so expiry needs no sleeping.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import t, { type Test } from "tap";
import { ApprovalError, type ApprovalErrorCode } from "../../src/approvals/errors.js";
import { actorChain, checkVoter, describeChain } from "../../src/approvals/rules.js";
import { ApprovalService } from "../../src/approvals/service.js";
import type { NewApprovalRequest } from "../../src/approvals/types.js";
import type { Identity } from "../../src/decision/contract.js";
import { metrics } from "../../src/metrics.js";
import { openPgliteStore } from "../../src/store/pglite.js";
import { openPostgresStore } from "../../src/store/postgres.js";
import type { Store } from "../../src/store/store.js";
import { ddlRequest, person } from "../helpers/approvals.js";
import { startPostgres } from "../helpers/postgres.js";

const alice = person("alice", ["engineering"]);
const bob = person("bob", ["dba"]);
const carol = person("carol", ["dba", "engineering"]);
const dave = person("dave", ["engineering"]);
/** ci-bot acting for alice (RFC 8693 delegation): the original requester first. */
const ciBotForAlice: Identity = {
  ...alice,
  client_id: "ci-bot",
  actors: [{ sub: "alice" }, { sub: "ci-bot", client_id: "ci-bot" }],
};
/** The bot itself, somehow in the dba group. */
const ciBot: Identity = { ...person("ci-bot", ["dba"]), client_id: "ci-bot" };
/** bob, but presented by ci-bot: an agent of the requester in the approver's chain. */
const bobViaCiBot: Identity = { ...bob, client_id: "ci-bot", actors: [{ sub: "bob" }, { sub: "ci-bot" }] };

function request(overrides: Partial<NewApprovalRequest> = {}): NewApprovalRequest {
  return ddlRequest(alice, overrides);
}

t.test("rules without a database", async (t) => {
  t.same(actorChain(ciBotForAlice), ["alice", "ci-bot"]);
  t.same(actorChain({ ...alice, actors: [] }), ["alice"], "an empty chain is the identity itself");
  t.equal(describeChain(ciBotForAlice), "ci-bot on behalf of alice");
  t.doesNotThrow(() => checkVoter(ciBotForAlice, ["dba"], bob));
  // People sharing a public client (a CLI) are not each other's actors.
  t.doesNotThrow(() =>
    checkVoter({ ...alice, client_id: "pamgate-cli" }, ["dba"], { ...bob, client_id: "pamgate-cli" }),
  );
  t.throws(() => checkVoter(ciBotForAlice, ["dba"], bobViaCiBot), {
    code: "self_approval",
    message: /through ci-bot/,
  });
});

const server = await startPostgres();
t.teardown(() => server.stop());
const tmp = mkdtempSync(join(tmpdir(), "pamgate-approvals-"));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

const backends: Array<{ name: string; open: () => Promise<Store> }> = [
  { name: "postgres", open: () => openPostgresStore({ url: server.url }) },
  { name: "pglite", open: () => openPgliteStore({ dataDir: join(tmp, "data") }) },
];

for (const backend of backends) {
  t.test(backend.name, async (t) => {
    const store = await backend.open();
    let clock = Date.parse("2026-11-26T08:00:00Z");
    const now = () => new Date(clock);
    const advance = (seconds: number) => {
      clock += seconds * 1000;
    };
    const service = new ApprovalService({
      store,
      now,
      pendingTtlS: 900,
      sweepIntervalMs: 0,
      pollIntervalMs: 200,
    });
    await service.start();
    t.teardown(async () => {
      await service.close();
      await store.close();
    });

    /** Both tables, in full: what "state unchanged" is checked against. */
    const snapshot = async () =>
      JSON.stringify([
        await store.query("SELECT * FROM approval_requests ORDER BY id"),
        await store.query("SELECT * FROM approval_votes ORDER BY request_id, approver_sub"),
      ]);
    /** Asserts `call` fails with `code` and leaves both tables as they were. */
    const refuses = async (
      t: Test,
      call: () => Promise<unknown>,
      code: ApprovalErrorCode,
      message?: RegExp,
    ): Promise<void> => {
      const before = await snapshot();
      const err = await call().then(
        () => null,
        (e: unknown) => e,
      );
      t.type(err, ApprovalError, `refused with an ApprovalError (${code})`);
      t.equal((err as ApprovalError).code, code);
      if (message) t.match((err as ApprovalError).message, message);
      t.notMatch((err as Error).message, /syntax|SQL|relation|column/i, "no SQL error leaks");
      t.equal(await snapshot(), before, "state unchanged");
    };
    const gaugeMatchesStore = async (t: Test) => {
      const [row] = await store.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM approval_requests WHERE status = 'pending' AND expires_at > $1",
        [now()],
      );
      t.equal(
        (await metrics.pendingApprovals.get()).values[0]?.value,
        row?.n,
        "the pending gauge matches the store",
      );
    };

    t.test("create: a pending request that expires after the pending TTL", async (t) => {
      const input = request();
      const created = await service.create(input);
      t.match(created.id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      t.equal(created.status, "pending");
      t.same(created.created_at, now());
      t.same(created.expires_at, new Date(clock + 900_000));
      t.same(created.rule, input.rule);
      const got = await service.get(created.id);
      t.same(got, { ...created, votes: [] }, "what get returns is what create returned");
      t.equal(got.command.text, input.command.text);
      t.equal(got.decision_id, input.decisionId);
      t.same(got.requester, alice);
      t.ok((await service.list({ status: "pending" })).some((r) => r.id === created.id));
      await gaugeMatchesStore(t);
    });

    t.test("create: malformed input is refused and nothing is stored", async (t) => {
      const bad: Array<[string, Partial<NewApprovalRequest>]> = [
        ["no groups", { rule: { groups: [], min_approvals: 1, ttl_s: 60 } }],
        ["zero approvals", { rule: { groups: ["dba"], min_approvals: 0, ttl_s: 60 } }],
        ["fractional ttl", { rule: { groups: ["dba"], min_approvals: 1, ttl_s: 1.5 } }],
        ["unknown protocol", { protocol: "ftp" as never }],
        ["no fingerprint", { command: { text: "DROP TABLE x", fingerprint: "" } }],
        ["no resource", { resource: "" }],
        ["requester without sub", { requester: { ...alice, sub: "" } }],
        ["requester without actors", { requester: { ...alice, actors: undefined as never } }],
      ];
      for (const [what, overrides] of bad) {
        t.test(what, (t) => refuses(t, () => service.create(request(overrides)), "invalid"));
      }
    });

    t.test("one approval from the rule's groups approves it and grants the command", async (t) => {
      const created = await service.create(
        request({ rule: { groups: ["dba"], min_approvals: 1, ttl_s: 600 } }),
      );
      advance(100);
      const approvedAt = now();
      const approved = await service.approve(created.id, bob, { comment: "looks fine" });
      t.equal(approved.status, "approved");
      t.same(approved.decided_at, approvedAt);
      t.same(
        approved.grant_expires_at,
        new Date(approvedAt.getTime() + 600_000),
        "ttl_s counts from the approval",
      );
      t.equal(approved.approvals, 1);
      t.match(approved.votes, [{ approver: { sub: "bob" }, vote: "approve", comment: "looks fine" }]);
      await gaugeMatchesStore(t);

      const key = { requester: alice, resource: "orders-db", fingerprint: created.command.fingerprint };
      t.match(await service.findGrant(key), {
        approval_id: created.id,
        requester_sub: "alice",
        actor_chain: ["alice"],
        granted_at: approvedAt,
        expires_at: approved.grant_expires_at,
      });
      t.equal(await service.findGrant({ ...key, fingerprint: "another" }), null, "another command: no grant");
      t.equal(
        await service.findGrant({ ...key, resource: "billing-db" }),
        null,
        "another resource: no grant",
      );
      t.equal(await service.findGrant({ ...key, requester: ciBotForAlice }), null, "alice's agent: no grant");
      t.equal(await service.findGrant({ ...key, requester: dave }), null, "someone else: no grant");
      t.equal(
        await service.findGrant({ ...key, requester: { ...alice, iss: "https://other.example" } }),
        null,
        "the same sub from another issuer: no grant",
      );
      advance(599);
      t.ok(await service.findGrant(key), "still valid just before ttl_s");
      advance(1);
      t.equal(await service.findGrant(key), null, "gone after ttl_s");

      await refuses(t, () => service.approve(created.id, carol), "not_pending", /already approved/);
      await refuses(t, () => service.deny(created.id, carol), "not_pending");
      await refuses(t, () => service.approve(created.id, bob), "not_pending", /already approved/);
    });

    t.test("a grant for a delegated request is for the same chain only", async (t) => {
      const created = await service.create(request({ requester: ciBotForAlice }));
      await service.approve(created.id, bob);
      const key = { resource: "orders-db", fingerprint: created.command.fingerprint };
      t.ok(await service.findGrant({ ...key, requester: ciBotForAlice }));
      t.equal(await service.findGrant({ ...key, requester: alice }), null, "alice directly: no grant");
      const otherBot = { ...ciBotForAlice, actors: [{ sub: "alice" }, { sub: "other-bot" }] };
      t.equal(
        await service.findGrant({ ...key, requester: otherBot }),
        null,
        "another agent for alice: no grant",
      );
    });

    t.test("min_approvals counts distinct approvers", async (t) => {
      const created = await service.create(
        request({ rule: { groups: ["dba"], min_approvals: 2, ttl_s: 60 } }),
      );
      const once = await service.approve(created.id, bob);
      t.equal(once.status, "pending");
      t.equal(once.approvals, 1);
      t.equal(
        await service.findGrant({
          requester: alice,
          resource: "orders-db",
          fingerprint: created.command.fingerprint,
        }),
        null,
      );
      await refuses(t, () => service.approve(created.id, bob), "already_voted", /bob has already voted/);
      await refuses(t, () => service.deny(created.id, bob), "already_voted");
      advance(1);
      const twice = await service.approve(created.id, carol);
      t.equal(twice.status, "approved");
      t.same(
        twice.votes.map((v) => [v.approver.sub, v.vote]),
        [
          ["bob", "approve"],
          ["carol", "approve"],
        ],
      );
      await gaugeMatchesStore(t);
    });

    t.test("a deny by an eligible approver denies", async (t) => {
      const created = await service.create(
        request({ rule: { groups: ["dba"], min_approvals: 2, ttl_s: 60 } }),
      );
      await service.approve(created.id, carol);
      const denied = await service.deny(created.id, bob, { comment: "not during the freeze" });
      t.equal(denied.status, "denied");
      t.same(denied.decided_at, now());
      t.equal(denied.grant_expires_at, null);
      t.equal(
        await service.findGrant({
          requester: alice,
          resource: "orders-db",
          fingerprint: created.command.fingerprint,
        }),
        null,
      );
      await refuses(
        t,
        () => service.approve(created.id, person("erin", ["dba"])),
        "not_pending",
        /already denied/,
      );
      await refuses(t, () => service.deny(created.id, bob), "not_pending");
      t.equal(await service.waitForOutcome(created.id, { timeoutMs: 1000 }), "denied");
      await gaugeMatchesStore(t);
    });

    t.test("the requester and everyone in its actor chain can never vote", async (t) => {
      const created = await service.create(request({ requester: ciBotForAlice }));
      const aliceAsDba = { ...alice, groups: ["dba"] };
      await refuses(t, () => service.approve(created.id, aliceAsDba), "self_approval", /alice took part/);
      await refuses(t, () => service.deny(created.id, aliceAsDba), "self_approval");
      await refuses(t, () => service.approve(created.id, ciBot), "self_approval", /ci-bot took part/);
      await refuses(
        t,
        () => service.approve(created.id, bobViaCiBot),
        "self_approval",
        /bob \(through ci-bot\)/,
      );
      t.equal(
        (await service.approve(created.id, bob)).status,
        "approved",
        "an uninvolved approver still can",
      );
    });

    t.test("an approver outside the rule's groups is refused", async (t) => {
      const created = await service.create(request());
      await refuses(
        t,
        () => service.approve(created.id, dave),
        "not_an_approver",
        /dave is not in any approver group of this request \(dba\)/,
      );
      await refuses(t, () => service.deny(created.id, dave), "not_an_approver");
      await refuses(t, () => service.approve(created.id, { ...bob, groups: [] }), "not_an_approver");
      await refuses(t, () => service.approve(created.id, { ...bob, sub: "" }), "invalid");
      await refuses(t, () => service.approve(created.id, bob, { comment: 42 as never }), "invalid");
      t.equal((await service.get(created.id)).status, "pending");
    });

    t.test("unknown and malformed ids are not found, before any SQL", async (t) => {
      const unknown = crypto.randomUUID();
      await refuses(t, () => service.get(unknown), "not_found", /no approval request with id/);
      await refuses(t, () => service.approve(unknown, bob), "not_found");
      await refuses(t, () => service.deny(unknown, bob), "not_found");
      await refuses(t, () => service.waitForOutcome(unknown, { timeoutMs: 1000 }), "not_found");
      const malformed = [
        "",
        "nope",
        "1; DROP TABLE approval_requests",
        "' OR '1'='1",
        `${unknown}x`,
        `{${unknown}}`,
        "x".repeat(10_000),
        42,
        null,
        { id: unknown },
      ] as unknown as string[];
      for (const id of malformed) {
        await refuses(t, () => service.get(id), "not_found", /approval ids are UUIDs/);
        await refuses(t, () => service.approve(id, bob), "not_found");
        await refuses(t, () => service.deny(id, bob), "not_found");
        await refuses(t, () => service.waitForOutcome(id, { timeoutMs: 10 }), "not_found");
      }
      const created = await service.create(request());
      t.equal(
        (await service.get(created.id.toUpperCase())).id,
        created.id,
        "ids are case-insensitive, as UUIDs are",
      );
    });

    t.test("a request nobody decides in time expires", async (t) => {
      const created = await service.create(request());
      advance(899);
      t.equal((await service.get(created.id)).status, "pending", "pending until the TTL");
      advance(1);
      await refuses(t, () => service.approve(created.id, bob), "expired", /expired at .* without a decision/);
      await refuses(t, () => service.deny(created.id, bob), "expired");
      const got = await service.get(created.id);
      t.equal(got.status, "expired", "reading it past its deadline marks it expired");
      t.same(got.decided_at, created.expires_at);
      t.same(got.votes, []);
      await refuses(t, () => service.approve(created.id, bob), "expired");
      await refuses(t, () => service.deny(created.id, carol), "expired");
      t.notOk((await service.list({ status: "pending" })).some((r) => r.id === created.id));
      t.equal(await service.waitForOutcome(created.id, { timeoutMs: 1000 }), "expired");
      await gaugeMatchesStore(t);
    });

    t.test("the sweep expires overdue requests and wakes their waiters", async (t) => {
      advance(901);
      await service.sweep(); // earlier tests' leftovers
      const a = await service.create(request());
      const b = await service.create(request());
      advance(900);
      t.equal(await service.sweep(), 2);
      t.equal(await service.sweep(), 0, "each expires once");
      t.same(
        (await Promise.all([a.id, b.id].map((id) => service.get(id)))).map((r) => r.status),
        ["expired", "expired"],
      );

      const c = await service.create(request());
      const waiting = service.waitForOutcome(c.id, { timeoutMs: 5000 });
      await new Promise((r) => setTimeout(r, 50)); // the wait has read the request: still pending
      advance(900);
      await service.sweep();
      t.equal(await waiting, "expired", "the waiter wakes from the sweep's notification");
      await gaugeMatchesStore(t);
    });

    t.test("waitForOutcome", async (t) => {
      const approved = await service.create(request());
      const waiting = service.waitForOutcome(approved.id, { timeoutMs: 5000 });
      const second = service.waitForOutcome(approved.id, { timeoutMs: 5000 });
      await service.approve(approved.id, bob);
      t.equal(await waiting, "approved");
      t.equal(await second, "approved", "every waiter of the request wakes");
      t.equal(
        await service.waitForOutcome(approved.id, { timeoutMs: 5000 }),
        "approved",
        "decided already: at once",
      );

      const denied = await service.create(request());
      const waitDenied = service.waitForOutcome(denied.id, { timeoutMs: 5000 });
      await service.deny(denied.id, carol);
      t.equal(await waitDenied, "denied");

      const undecided = await service.create(request());
      const started = Date.now();
      t.equal(await service.waitForOutcome(undecided.id, { timeoutMs: 50 }), "timeout");
      t.ok(Date.now() - started < 1000);
      const controller = new AbortController();
      const aborted = service.waitForOutcome(undecided.id, { timeoutMs: 5000, signal: controller.signal });
      controller.abort(new Error("client went away"));
      await t.rejects(aborted, /client went away/);
      await t.rejects(
        service.waitForOutcome(undecided.id, { timeoutMs: 10, signal: controller.signal }),
        /went away/,
      );
      await refuses(t, () => service.waitForOutcome(undecided.id, { timeoutMs: -1 }), "invalid");
      t.equal((await service.get(undecided.id)).status, "pending", "waiting changes nothing");
    });

    t.test("a lost notification is caught by the re-check poll", async (t) => {
      const created = await service.create(request());
      const waiting = service.waitForOutcome(created.id, { timeoutMs: 5000 });
      await new Promise((r) => setTimeout(r, 50)); // the wait has read it as pending
      // Decide it behind the service's back: no NOTIFY, as if the LISTEN connection had been down.
      await store.query(
        `UPDATE approval_requests SET status = 'approved', decided_at = $2, grant_expires_at = $2 WHERE id = $1`,
        [created.id, now()],
      );
      // Nothing else can wake it before the 5 s timeout: no NOTIFY was sent, the deadline is 900 s away.
      t.equal(await waiting, "approved", "the poll (every 200 ms here) found it");
    });

    t.test("list: newest first, filtered by status", async (t) => {
      advance(901); // earlier tests' pending requests expire
      const a = await service.create(request());
      advance(1);
      const b = await service.create(request());
      advance(1);
      const c = await service.create(request());
      const d = await service.create(request()); // the same instant as c: insertion order decides
      await service.approve(a.id, bob);
      await service.deny(b.id, bob);
      await service.deny(d.id, bob);
      const ids = (rs: Array<{ id: string }>) => rs.map((r) => r.id);
      t.same(ids(await service.list({ limit: 4 })), [d.id, c.id, b.id, a.id]);
      t.ok(ids(await service.list({ status: "approved" })).includes(a.id));
      t.notOk(ids(await service.list({ status: "approved" })).includes(b.id));
      t.same(ids(await service.list({ status: "pending" })), [c.id]);
      t.same(ids(await service.list({ limit: 1, offset: 2 })), [b.id]);
      t.same((await service.list({ status: "approved", limit: 1 }))[0]?.approvals, 1);
      await refuses(t, () => service.list({ status: "maybe" as never }), "invalid");
      await refuses(t, () => service.list({ limit: 0 }), "invalid");
      await refuses(t, () => service.list({ limit: 5000 }), "invalid");
    });

    t.test("a waiter wakes at the deadline by itself (real clock, no sweep, no poll)", async (t) => {
      const realTime = new ApprovalService({
        store,
        pendingTtlS: 0.3,
        sweepIntervalMs: 0,
        pollIntervalMs: 60_000,
      });
      t.teardown(() => realTime.close());
      const created = await realTime.create(request());
      const started = Date.now();
      t.equal(await realTime.waitForOutcome(created.id, { timeoutMs: 5000 }), "expired");
      t.ok(Date.now() - started < 2000, "at the deadline, not at the timeout");
      t.equal((await realTime.get(created.id)).status, "expired");
    });

    if (backend.name === "postgres") {
      t.test("concurrent votes are serialised by the row lock", async (t) => {
        const created = await service.create(
          request({ rule: { groups: ["dba"], min_approvals: 2, ttl_s: 60 } }),
        );
        // Separate pools, as separate replicas would use.
        const other = await openPostgresStore({ url: server.url });
        t.teardown(() => other.close());
        const replica = new ApprovalService({ store: other, now, sweepIntervalMs: 0 });
        t.teardown(() => replica.close());
        const results = await Promise.all([
          service.approve(created.id, bob),
          replica.approve(created.id, carol),
        ]);
        t.same(results.map((r) => r.approvals).sort(), [1, 2]);
        t.equal((await service.get(created.id)).status, "approved");

        const twice = await service.create(
          request({ rule: { groups: ["dba"], min_approvals: 2, ttl_s: 60 } }),
        );
        const settled = await Promise.allSettled([
          service.approve(twice.id, bob),
          replica.approve(twice.id, bob),
        ]);
        t.same(settled.map((s) => s.status).sort(), ["fulfilled", "rejected"]);
        t.match(
          settled.find((s) => s.status === "rejected"),
          { reason: { code: "already_voted" } },
        );
        const after = await service.get(twice.id);
        t.equal(after.votes.length, 1);
        t.equal(after.status, "pending");
      });
    }
  });
}
