// The approval webhook against real HTTP receivers (node:http on 127.0.0.1:0): a new request created through
// the gateway's ObservableApprovalService is announced with a Slack-compatible message; a receiver failing
// twice gets it on the third attempt; a refusal is not retried; creating a request never waits for delivery.
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import t, { type Test } from "tap";
import { buildApi } from "../../src/api/index.js";
import { ObservableApprovalService } from "../../src/api/observable.js";
import { slackMessage, WebhookNotifier } from "../../src/api/webhook.js";
import type { ApprovalRequest, NewApprovalRequest } from "../../src/approvals/types.js";
import type { Identity } from "../../src/decision/contract.js";
import { DecisionEngine } from "../../src/decision/engine.js";
import { TokenVerifier } from "../../src/identity/verifier.js";
import { openStore } from "../../src/store/open.js";
import { startTestIdp } from "../helpers/idp.js";

interface Delivery {
  at: number;
  headers: IncomingMessage["headers"];
  body: string;
}

/** A receiver answering each POST with the next status of `statuses` (the last one repeats). */
async function receiver(
  t: Test,
  statuses: number[],
  options: { delayMs?: number; headers?: Record<string, string> } = {},
): Promise<{ url: string; deliveries: Delivery[]; received: (count: number) => Promise<void> }> {
  const deliveries: Delivery[] = [];
  const waiting: Array<{ count: number; resolve: () => void }> = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      deliveries.push({ at: Date.now(), headers: req.headers, body: Buffer.concat(chunks).toString() });
      const status = statuses[Math.min(deliveries.length - 1, statuses.length - 1)] as number;
      const answer = () => {
        res.writeHead(status, options.headers).end(status < 300 ? "ok" : "no");
        for (const w of waiting.filter((w) => deliveries.length >= w.count)) w.resolve();
      };
      if (options.delayMs) setTimeout(answer, options.delayMs);
      else answer();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/services/T000/B000/not-a-secret`,
    deliveries,
    received: (count) =>
      deliveries.length >= count
        ? Promise.resolve()
        : new Promise((resolve) => waiting.push({ count, resolve })),
  };
}

const idp = await startTestIdp(t);
const verifier = new TokenVerifier([idp.issuerConfig()]);
const store = await openStore({ kind: "pglite" });
t.teardown(() => store.close());
const alice = (await verifier.verify(await idp.tokenFor("alice"))).identity;

const newRequest = (overrides: Partial<NewApprovalRequest> = {}): NewApprovalRequest => ({
  requester: alice,
  resource: "orders-db",
  protocol: "postgres",
  command: { text: "ALTER TABLE orders ADD COLUMN note text", fingerprint: "fp-note" },
  reasons: [
    {
      code: "pg.ddl_needs_approval",
      message: "ALTER TABLE is a schema change (DDL) and needs approval from dba.",
    },
  ],
  rule: { groups: ["dba"], min_approvals: 1, ttl_s: 600 },
  decisionId: crypto.randomUUID(),
  sessionId: "session-1",
  ...overrides,
});

/** An API with the webhook pointing at `url`, on its own approval service. */
async function apiWith(t: Test, webhook: Parameters<typeof buildApi>[0]["webhook"]) {
  const approvals = new ObservableApprovalService({ store, sweepIntervalMs: 0 });
  const api = buildApi({ verifier, approvals, engine: new DecisionEngine(), adminGroups: [], webhook });
  await api.ready();
  t.teardown(async () => {
    await api.close();
    await approvals.close();
  });
  return { api, approvals };
}

t.test("a new request is announced with a Slack-compatible message", async (t) => {
  const hook = await receiver(t, [200]);
  const { approvals } = await apiWith(t, { url: hook.url, headers: { "x-pamgate-signature": "s3cret" } });
  const request = await approvals.create(newRequest());
  await hook.received(1);
  t.equal(hook.deliveries.length, 1);
  const [delivery] = hook.deliveries as [Delivery];
  t.match(delivery.headers["content-type"], /^application\/json/);
  t.equal(delivery.headers["x-pamgate-signature"], "s3cret", "configured headers are sent");
  const payload = JSON.parse(delivery.body);
  t.match(
    payload.text,
    /^Approval needed: alice wants to run `ALTER TABLE orders ADD COLUMN note text` on orders-db/,
  );
  t.match(payload.text, new RegExp(`pamgate approvals approve ${request.id}`));
  t.ok(Array.isArray(payload.blocks) && payload.blocks.length >= 4, "Block Kit blocks");
  t.equal(payload.blocks[0].type, "header");
  const all = JSON.stringify(payload.blocks);
  t.match(all, /\*Requester\*\\nalice \(alice@example\.com\)/);
  t.match(all, /```ALTER TABLE orders ADD COLUMN note text```/);
  t.match(all, /\[pg\.ddl_needs_approval\]/);
  t.match(all, /dba: 1 approval needed/);
  t.match(all, new RegExp(`pamgate approvals approve ${request.id}`));
  // Every block type is one Slack knows, and text objects are within Slack's limits.
  for (const block of payload.blocks) t.ok(["header", "section", "context"].includes(block.type), block.type);
});

t.test("a receiver failing twice gets it on the third attempt, with growing delays", async (t) => {
  const hook = await receiver(t, [500, 503, 200]);
  const { approvals } = await apiWith(t, { url: hook.url, maxAttempts: 5, initialDelayMs: 50 });
  await approvals.create(newRequest());
  await hook.received(3);
  await new Promise((r) => setTimeout(r, 200));
  t.equal(hook.deliveries.length, 3, "three attempts, then it stops");
  const [a, b, c] = hook.deliveries.map((d) => d.at) as [number, number, number];
  t.ok(b - a >= 20, `first retry after ${b - a} ms (backoff 50 ms, jitter to half)`);
  t.ok(c - b >= 45, `second retry after ${c - b} ms (backoff 100 ms, jitter to half)`);
  t.equal(hook.deliveries[0]?.body, hook.deliveries[2]?.body, "the same message each time");
});

t.test("attempts are bounded; a 4xx refusal is not retried", async (t) => {
  const down = await receiver(t, [502]);
  const refusing = await receiver(t, [404]);
  const logged: string[] = [];
  const log = {
    info() {},
    debug() {},
    warn(_o: object, msg: string) {
      logged.push(`warn ${msg}`);
    },
    error(_o: object, msg: string) {
      logged.push(`error ${msg}`);
    },
  };
  const notifier = new WebhookNotifier(
    { url: down.url, maxAttempts: 3, initialDelayMs: 10 },
    { log: log as never },
  );
  const refused = new WebhookNotifier(
    { url: refusing.url, maxAttempts: 3, initialDelayMs: 10 },
    { log: log as never },
  );
  const request = sample();
  notifier.notify(request);
  refused.notify(request);
  await notifier.idle();
  await refused.idle();
  t.equal(down.deliveries.length, 3, "3 attempts against a 502, no more");
  t.equal(refusing.deliveries.length, 1, "a 404 is final");
  t.ok(
    logged.some((l) => /^error webhook: giving up .*502.*after 3 attempts/.test(l)),
    "the failure is logged",
  );
  t.ok(logged.some((l) => /^error webhook: giving up .*404.*not retried/.test(l)));
  t.notOk(logged.join("\n").includes("not-a-secret"), "the URL's secret path is never logged");
});

t.test("creating a request never waits for the webhook", async (t) => {
  const slow = await receiver(t, [200], { delayMs: 1500 });
  const { approvals } = await apiWith(t, { url: slow.url });
  const started = performance.now();
  await approvals.create(newRequest());
  const took = performance.now() - started;
  t.ok(took < 500, `create() returned after ${Math.round(took)} ms while the receiver takes 1.5 s`);
  await slow.received(1);
});

t.test("an unreachable receiver is retried, then given up; closing abandons pending retries", async (t) => {
  const gone = await receiver(t, [200]);
  const url = gone.url.replace(/:\d+\//, ":9/"); // nothing listens on port 9
  const notifier = new WebhookNotifier({ url, maxAttempts: 2, initialDelayMs: 10 });
  notifier.notify(sample());
  await notifier.idle();
  const slow = new WebhookNotifier({ url, maxAttempts: 5, initialDelayMs: 60_000 });
  slow.notify(sample());
  const started = performance.now();
  await slow.close();
  t.ok(performance.now() - started < 2000, "close() does not wait out a minute of backoff");
});

t.test("the message escapes Slack markup and cannot break out of its code block", async (t) => {
  const message = slackMessage(
    sample({
      command: { text: "SELECT '<!channel>' || '```' FROM t WHERE a < 1 && b > 2", fingerprint: "x" },
      resource: "db<@U123>",
    }),
  );
  const text = JSON.stringify(message);
  t.notMatch(text, /<!channel>|<@U123>/, "no mentions smuggled in");
  t.match(text, /&lt;!channel&gt;/);
  t.match(text, /&amp;&amp;/);
  const code = (message.blocks[2] as { text: { text: string } }).text.text;
  t.equal(code.match(/```/g)?.length, 2, "exactly one code block");
  const long = slackMessage(sample({ command: { text: "x".repeat(10_000), fingerprint: "x" } }));
  t.ok(
    (long.blocks[2] as { text: { text: string } }).text.text.length <= 3000,
    "within Slack's 3000 characters",
  );
});

t.test("configuration mistakes are caught at startup", async (t) => {
  t.throws(() => new WebhookNotifier({ url: "not a url" }), /not a valid URL/);
  t.throws(() => new WebhookNotifier({ url: "ftp://example.com/x" }), /must be http\(s\)/);
  t.throws(() => new WebhookNotifier({ url: "https://example.com/x", maxAttempts: 0 }), /maxAttempts/);
});

function sample(overrides: Partial<ApprovalRequest> = {}): ApprovalRequest {
  const now = new Date();
  return {
    id: crypto.randomUUID(),
    status: "pending",
    requester: alice as Identity,
    resource: "orders-db",
    protocol: "postgres",
    command: { text: "ALTER TABLE orders ADD COLUMN note text", fingerprint: "fp" },
    reasons: [{ code: "pg.ddl_needs_approval", message: "DDL" }],
    rule: { groups: ["dba"], min_approvals: 1, ttl_s: 600 },
    decision_id: "d",
    session_id: "s",
    created_at: now,
    expires_at: new Date(now.getTime() + 600_000),
    decided_at: null,
    grant_expires_at: null,
    approvals: 0,
    ...overrides,
  };
}
