// The control-plane API with real parts: the development issuer (oidc-provider on loopback) issues the tokens,
// the TokenVerifier checks them, approvals live in a PGlite store in a temp directory, the engine holds a
// bundle built by opa. Requests go through fastify's inject. Every refusal is checked to leave the request
// exactly as it was, by reading it again from the store.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import t, { type Test } from "tap";
import { buildApi } from "../../src/api/index.js";
import { ObservableApprovalService } from "../../src/api/observable.js";
import type { ApprovalRequest, NewApprovalRequest } from "../../src/approvals/types.js";
import type { Identity } from "../../src/decision/contract.js";
import { DecisionEngine } from "../../src/decision/engine.js";
import { TokenVerifier } from "../../src/identity/verifier.js";
import { registry } from "../../src/metrics.js";
import { openStore } from "../../src/store/open.js";
import { ddlRequest } from "../helpers/approvals.js";
import { activeFrom, verdictPolicy } from "../helpers/bundles.js";
import { startTestIdp } from "../helpers/idp.js";

const idp = await startTestIdp(t, {
  users: {
    alice: { email: "alice@example.com", groups: ["engineering"] },
    carol: { email: "carol@example.com", groups: ["dba"] },
    dan: { email: null, groups: ["dba"] },
    dave: { email: null, groups: ["engineering"] },
    erin: { email: null, groups: ["pamgate-admins"] },
    // In the request's rule.groups (db-owners) but not in the gateway's approver groups.
    owen: { email: null, groups: ["db-owners"] },
  },
});
const verifier = new TokenVerifier([idp.issuerConfig()]);

const tmp = mkdtempSync(join(tmpdir(), "pamgate-api-"));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
const store = await openStore({ kind: "pglite", dataDir: tmp });
t.teardown(() => store.close());

// The approvals' clock, so the expiry case needs no sleeping.
let clock = Date.now();
const approvals = new ObservableApprovalService({
  store,
  now: () => new Date(clock),
  pendingTtlS: 600,
  sweepIntervalMs: 0,
});
await approvals.start();
t.teardown(() => approvals.close());

const engine = new DecisionEngine();
const api = buildApi({
  verifier,
  approvals,
  engine,
  adminGroups: ["pamgate-admins"],
  approverGroups: ["dba"],
});
await api.ready();
t.teardown(() => api.close());

const tokens: Record<string, string> = {};
for (const user of ["alice", "carol", "dan", "dave", "erin", "owen"]) tokens[user] = await idp.tokenFor(user);
const identities: Record<string, Identity> = {};
for (const [user, token] of Object.entries(tokens))
  identities[user] = (await verifier.verify(token)).identity;

async function createRequest(overrides: Partial<NewApprovalRequest> = {}): Promise<ApprovalRequest> {
  return approvals.create(ddlRequest(identities.alice as Identity, overrides));
}

// biome-ignore lint/suspicious/noExplicitAny: response bodies are read field by field and checked by the assertions
type Json = Record<string, any>;

async function call(
  method: "GET" | "POST",
  url: string,
  options: { as?: string; token?: string; body?: string; contentType?: string; headers?: Json } = {},
): Promise<{ status: number; body: Json; headers: Json; raw: string }> {
  const headers: Json = { ...options.headers };
  const token = options.token ?? (options.as ? tokens[options.as] : undefined);
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  if (options.body !== undefined) headers["content-type"] = options.contentType ?? "application/json";
  const res = await api.inject({ method, url, headers, payload: options.body });
  let body: Json = {};
  try {
    body = JSON.parse(res.body);
  } catch {}
  return { status: res.statusCode, body, headers: res.headers, raw: res.body };
}

/** Reads the request again and checks nothing about it changed. */
async function unchanged(t: Test, before: ApprovalRequest, what: string): Promise<void> {
  const { votes: _votes, ...after } = await approvals.get(before.id);
  t.same(after, before, `${what}: the request is unchanged`);
}

function refused(
  t: Test,
  res: { status: number; body: Json; raw: string },
  status: number,
  code: string,
  message?: RegExp,
): void {
  t.equal(res.status, status, `status ${status}`);
  t.equal(res.body.error?.code, code, `code ${code}`);
  t.type(res.body.error?.message, "string");
  if (message) t.match(res.body.error?.message, message);
  t.notMatch(res.raw, /\n\s+at /, "no stack trace");
}

t.test("happy paths: list, get, approve with a comment, deny", async (t) => {
  const r1 = await createRequest();
  const r2 = await createRequest();

  const list = await call("GET", "/v1/approvals?status=pending", { as: "carol" });
  t.equal(list.status, 200);
  const ids = list.body.approvals.map((a: Json) => a.id);
  t.ok(ids.includes(r1.id) && ids.includes(r2.id), "carol (dba) sees both pending requests");
  t.equal(ids.indexOf(r2.id) < ids.indexOf(r1.id), true, "newest first");

  const got = await call("GET", `/v1/approvals/${r1.id}`, { as: "carol" });
  t.equal(got.status, 200);
  t.equal(got.body.status, "pending");
  t.equal(got.body.requester.sub, "alice");
  t.equal(got.body.command.text, r1.command.text);
  t.same(got.body.rule, { groups: ["dba"], min_approvals: 1, ttl_s: 600 });
  t.same(got.body.votes, []);
  t.match(got.body.created_at, /^\d{4}-\d\d-\d\dT/, "dates are RFC 3339 strings");

  const approved = await call("POST", `/v1/approvals/${r1.id}/approve`, {
    as: "carol",
    body: JSON.stringify({ comment: "ship it" }),
  });
  t.equal(approved.status, 200);
  t.equal(approved.body.status, "approved");
  t.equal(approved.body.approvals, 1);
  t.equal(approved.body.votes[0].approver.sub, "carol", "the approver is the token's identity");
  t.equal(approved.body.votes[0].comment, "ship it");
  t.type(approved.body.grant_expires_at, "string");
  const grant = await approvals.findGrant({
    requester: identities.alice as Identity,
    resource: "orders-db",
    fingerprint: r1.command.fingerprint,
  });
  t.equal(grant?.approval_id, r1.id, "the approval is a grant for alice");

  // No body at all, and an empty JSON body, both mean "no comment".
  const denied = await call("POST", `/v1/approvals/${r2.id}/deny`, { as: "dan" });
  t.equal(denied.status, 200);
  t.equal(denied.body.status, "denied");
  t.equal(denied.body.votes[0].approver.sub, "dan");
  t.equal(denied.body.votes[0].comment, null);

  const r3 = await createRequest();
  const empty = await call("POST", `/v1/approvals/${r3.id}/approve`, { as: "dan", body: "" });
  t.equal(empty.status, 200, "content-type json with an empty body is no body");

  const approvedList = await call("GET", "/v1/approvals?status=approved", { as: "carol" });
  t.ok(approvedList.body.approvals.every((a: Json) => a.status === "approved"));
  t.ok(approvedList.body.approvals.some((a: Json) => a.id === r1.id));
});

t.test(
  "two approvals needed: the first keeps it pending, a second vote by the same person is refused",
  async (t) => {
    const r = await createRequest({ rule: { groups: ["dba"], min_approvals: 2, ttl_s: 600 } });
    const first = await call("POST", `/v1/approvals/${r.id}/approve`, { as: "carol" });
    t.equal(first.body.status, "pending");
    t.equal(first.body.approvals, 1);
    const { votes: _, ...afterFirst } = await approvals.get(r.id);

    const again = await call("POST", `/v1/approvals/${r.id}/approve`, { as: "carol" });
    refused(t, again, 409, "already_voted", /carol has already voted/);
    await unchanged(t, afterFirst, "approving twice");
    const denyAfter = await call("POST", `/v1/approvals/${r.id}/deny`, { as: "carol" });
    refused(t, denyAfter, 409, "already_voted");
    await unchanged(t, afterFirst, "denying after approving");

    const second = await call("POST", `/v1/approvals/${r.id}/approve`, { as: "dan" });
    t.equal(second.body.status, "approved");
    t.same(second.body.votes.map((v: Json) => v.approver.sub).sort(), ["carol", "dan"]);
  },
);

t.test("bad input: each a clear 4xx, the request unchanged", async (t) => {
  const r = await createRequest();
  const url = `/v1/approvals/${r.id}/approve`;

  refused(
    t,
    await call("POST", url, { as: "carol", body: "{not json" }),
    400,
    "invalid_json",
    /not valid JSON/,
  );
  await unchanged(t, r, "malformed JSON");
  refused(t, await call("POST", url, { as: "carol", body: '{"comment": "ok",}' }), 400, "invalid_json");
  refused(
    t,
    await call("POST", url, { as: "carol", body: "[]" }),
    400,
    "invalid_request",
    /body must be object/,
  );
  refused(t, await call("POST", url, { as: "carol", body: '"yes"' }), 400, "invalid_request");
  refused(
    t,
    await call("POST", url, { as: "carol", body: '{"coment": "typo"}' }),
    400,
    "invalid_request",
    /body has no property "coment" \(allowed: comment\)/,
  );
  refused(
    t,
    await call("POST", url, { as: "carol", body: '{"comment": 42}' }),
    400,
    "invalid_request",
    /body\/comment must be string/,
  );
  refused(
    t,
    await call("POST", url, { as: "carol", body: JSON.stringify({ comment: "x".repeat(2001) }) }),
    400,
    "invalid_request",
    /comment must NOT have more than 2000 characters/,
  );
  refused(
    t,
    await call("POST", url, { as: "carol", body: "ok", contentType: "text/plain" }),
    415,
    "unsupported_media_type",
    /must be JSON/,
  );
  refused(
    t,
    await call("POST", url, { as: "carol", body: JSON.stringify({ comment: "y".repeat(70_000) }) }),
    413,
    "payload_too_large",
  );
  await unchanged(t, r, "bodies fastify refused");

  refused(
    t,
    await call("POST", "/v1/approvals/not-a-uuid/approve", { as: "carol" }),
    400,
    "invalid_request",
    /params\/id must be an approval id/,
  );
  refused(
    t,
    await call("GET", `/v1/approvals/${crypto.randomUUID()}`, { as: "carol" }),
    404,
    "not_found",
    /no approval request with id/,
  );
  refused(
    t,
    await call("POST", `/v1/approvals/${crypto.randomUUID()}/deny`, { as: "carol" }),
    404,
    "not_found",
  );
  refused(
    t,
    await call("GET", "/v1/approvals?status=maybe", { as: "carol" }),
    400,
    "invalid_request",
    /querystring\/status must be one of: pending, approved, denied, expired/,
  );
  refused(t, await call("GET", "/v1/approvals?limit=0", { as: "carol" }), 400, "invalid_request", /limit/);
  refused(t, await call("GET", "/v1/approvals?bogus=1", { as: "carol" }), 400, "invalid_request", /bogus/);
  refused(t, await call("GET", "/v1/nothing-here", { as: "carol" }), 404, "no_such_route");

  // Nothing above changed it: a valid vote still goes through.
  await unchanged(t, r, "all of the above");
  t.equal((await call("POST", url, { as: "carol" })).body.status, "approved");
});

t.test("refused votes: self-approval, outside the groups, not pending, expired", async (t) => {
  // carol asks; carol is in dba, but it is her own request.
  const own = await createRequest({ requester: identities.carol as Identity });
  refused(
    t,
    await call("POST", `/v1/approvals/${own.id}/approve`, { as: "carol" }),
    403,
    "self_approval",
    /carol took part in the request/,
  );
  await unchanged(t, own, "self-approval");

  // An agent acting for carol cannot approve her request either, nor can carol's token exchanged by a bot
  // approve a request that bot made for alice.
  const carolViaBot = await idp.delegatedToken(tokens.carol as string, "ci-bot");
  refused(
    t,
    await call("POST", `/v1/approvals/${own.id}/approve`, { token: carolViaBot }),
    403,
    "self_approval",
  );
  const botForAlice = (await verifier.verify(await idp.delegatedToken(tokens.alice as string, "ci-bot")))
    .identity;
  const viaBot = await createRequest({ requester: botForAlice });
  refused(
    t,
    await call("POST", `/v1/approvals/${viaBot.id}/approve`, { token: carolViaBot }),
    403,
    "self_approval",
    /through ci-bot/,
  );
  await unchanged(t, viaBot, "approval through the requester's agent");

  const r = await createRequest({ rule: { groups: ["dba", "db-owners"], min_approvals: 1, ttl_s: 600 } });
  refused(
    t,
    await call("POST", `/v1/approvals/${r.id}/approve`, { as: "dave" }),
    403,
    "not_an_approver",
    /dave is not in any approver group of this gateway \(dba\)/,
  );
  await unchanged(t, r, "approver outside the gateway's approver groups");
  refused(
    t,
    await call("POST", `/v1/approvals/${r.id}/approve`, { as: "owen" }),
    403,
    "not_an_approver",
    /approver group of this gateway/,
  );
  await unchanged(t, r, "in the request's groups but not the gateway's");
  refused(t, await call("POST", `/v1/approvals/${r.id}/approve`, { as: "erin" }), 403, "not_an_approver");
  await unchanged(t, r, "admins are not approvers");

  const engineersOnly = await createRequest({ rule: { groups: ["security"], min_approvals: 1, ttl_s: 600 } });
  refused(
    t,
    await call("POST", `/v1/approvals/${engineersOnly.id}/approve`, { as: "carol" }),
    403,
    "not_an_approver",
    /carol is not in any approver group of this request \(security\)/,
  );
  await unchanged(t, engineersOnly, "approver outside the request's rule.groups");

  await call("POST", `/v1/approvals/${r.id}/deny`, { as: "carol", body: '{"comment":"no"}' });
  const { votes: _, ...denied } = await approvals.get(r.id);
  refused(
    t,
    await call("POST", `/v1/approvals/${r.id}/approve`, { as: "dan" }),
    409,
    "not_pending",
    /already denied/,
  );
  await unchanged(t, denied, "approving a denied request");

  const late = await createRequest();
  clock += 601_000; // past the 600 s pending TTL
  refused(
    t,
    await call("POST", `/v1/approvals/${late.id}/approve`, { as: "carol" }),
    409,
    "expired",
    /expired at/,
  );
  const { votes: lateVotes, ...expired } = await approvals.get(late.id);
  t.equal(expired.status, "expired", "expired, and no vote recorded");
  t.same(lateVotes, []);
  refused(t, await call("POST", `/v1/approvals/${late.id}/deny`, { as: "carol" }), 409, "expired");
  await unchanged(t, expired, "denying an expired request");
});

t.test("who sees what", async (t) => {
  const mine = await createRequest(); // alice's, approvable by dba
  const security = await createRequest({ rule: { groups: ["security"], min_approvals: 1, ttl_s: 600 } });
  const carols = await createRequest({ requester: identities.carol as Identity });

  const ids = async (as: string) =>
    (await call("GET", "/v1/approvals?limit=1000", { as })).body.approvals.map((a: Json) => a.id) as string[];

  const alice = await ids("alice");
  t.ok(alice.includes(mine.id) && alice.includes(security.id), "alice sees her own requests");
  t.notOk(alice.includes(carols.id), "…not carol's");
  const carol = await ids("carol");
  t.ok(carol.includes(mine.id) && carol.includes(carols.id), "carol sees dba requests and her own");
  t.notOk(carol.includes(security.id), "…not one only security may approve");
  t.same(await ids("dave"), [], "dave (engineering, no requests) sees nothing");
  t.same(await ids("owen"), [], "owen is not an approver of this gateway: nothing");
  const erin = await ids("erin");
  t.ok(
    [mine.id, security.id, carols.id].every((id) => erin.includes(id)),
    "an admin sees everything",
  );

  t.equal((await call("GET", `/v1/approvals/${mine.id}`, { as: "alice" })).status, 200);
  t.equal((await call("GET", `/v1/approvals/${security.id}`, { as: "erin" })).status, 200);
  refused(
    t,
    await call("GET", `/v1/approvals/${security.id}`, { as: "carol" }),
    403,
    "forbidden",
    /carol may read only/,
  );
  refused(t, await call("GET", `/v1/approvals/${mine.id}`, { as: "dave" }), 403, "forbidden");

  // Paging over what one may see.
  const page1 = await call("GET", "/v1/approvals?limit=1", { as: "alice" });
  t.equal(page1.body.approvals.length, 1);
  t.equal(page1.body.next_offset, 1);
  const page2 = await call("GET", "/v1/approvals?limit=1&offset=1", { as: "alice" });
  t.not(page2.body.approvals[0].id, page1.body.approvals[0].id);
  const all = await call("GET", "/v1/approvals?limit=1000", { as: "erin" });
  t.equal(all.body.next_offset, null, "the last page says so");
});

t.test("401: no token, a wrong scheme, garbage, expired, forged — each names the check", async (t) => {
  const rejections = async (reason: string) =>
    (await registry.getSingleMetric("pamgate_token_rejections_total")?.get())?.values.find(
      (v) => v.labels.reason === reason,
    )?.value ?? 0;
  const expiredBefore = await rejections("expired");
  const malformedBefore = await rejections("malformed");

  const none = await call("GET", "/v1/approvals");
  refused(t, none, 401, "malformed", /no access token: send the header Authorization: Bearer/);
  t.equal(none.headers["www-authenticate"], 'Bearer realm="pamgate"');

  const basic = await call("GET", "/v1/approvals", { headers: { authorization: "Basic YWxpY2U6c2VjcmV0" } });
  refused(t, basic, 401, "malformed", /must be "Bearer <access token>"/);

  const garbage = await call("GET", "/v1/approvals", { token: "garbage" });
  refused(t, garbage, 401, "malformed", /not a JWT/);
  t.match(garbage.headers["www-authenticate"], /error="invalid_token"/);

  const expired = await call("GET", "/v1/approvals", { token: await idp.bad.expired() });
  refused(t, expired, 401, "expired", /token expired at/);
  refused(
    t,
    await call("GET", "/v1/status/bundle", { token: await idp.bad.tamperedSignature() }),
    401,
    "bad_signature",
  );
  refused(t, await call("GET", "/v1/approvals", { token: await idp.bad.algNone() }), 401, "alg_not_allowed");
  refused(
    t,
    await call("GET", "/v1/approvals", { token: await idp.bad.wrongAudience() }),
    401,
    "bad_audience",
  );
  const r = await createRequest();
  refused(
    t,
    await call("POST", `/v1/approvals/${r.id}/approve`, { token: await idp.bad.tamperedPayload() }),
    401,
    "bad_signature",
  );
  await unchanged(t, r, "a vote with a forged token");

  t.equal(await rejections("expired"), expiredBefore + 1, "the expired token is counted");
  t.equal(
    await rejections("malformed"),
    malformedBefore + 3,
    "so are the missing, the Basic and the garbage ones",
  );
});

t.test("/metrics: Prometheus text from the shared registry, no token", async (t) => {
  const res = await api.inject({ method: "GET", url: "/metrics" });
  t.equal(res.statusCode, 200);
  t.match(res.headers["content-type"], /^text\/plain; version=0\.0\.4/);
  for (const name of [
    "pamgate_decisions_total",
    "pamgate_policy_evaluation_seconds",
    "pamgate_pending_approvals",
    "pamgate_token_rejections_total",
    "pamgate_webhook_deliveries_total",
  ]) {
    t.match(res.body, new RegExp(`^# TYPE ${name} `, "m"), name);
  }
  t.match(res.body, /^pamgate_token_rejections_total\{reason="expired"\} [1-9]/m, "API rejections show");
  t.match(res.body, /^pamgate_pending_approvals \d+/m);
});

t.test("/openapi.json: an OpenAPI 3 document with every route", async (t) => {
  const res = await api.inject({ method: "GET", url: "/openapi.json" });
  t.equal(res.statusCode, 200);
  t.match(res.headers["content-type"], /application\/json/);
  const doc = JSON.parse(res.body);
  t.match(doc.openapi, /^3\./);
  t.type(doc.info?.title, "string");
  const ops = {
    "/v1/approvals": ["get"],
    "/v1/approvals/{id}": ["get"],
    "/v1/approvals/{id}/approve": ["post"],
    "/v1/approvals/{id}/deny": ["post"],
    "/v1/status": ["get"],
    "/v1/status/bundle": ["get"],
    "/healthz": ["get"],
    "/readyz": ["get"],
    "/metrics": ["get"],
  };
  for (const [path, methods] of Object.entries(ops)) {
    for (const m of methods) t.ok(doc.paths?.[path]?.[m], `${m.toUpperCase()} ${path}`);
  }
  t.notOk(doc.paths["/openapi.json"], "the document does not list itself");
  t.same(doc.components.securitySchemes.bearerAuth, {
    type: "http",
    scheme: "bearer",
    bearerFormat: "JWT",
    description: doc.components.securitySchemes.bearerAuth.description,
  });
  t.same(doc.paths["/v1/approvals/{id}/approve"].post.security, [{ bearerAuth: [] }]);
  t.notOk(doc.paths["/healthz"].get.security, "probes need no token");
  t.ok(doc.components.schemas.ApprovalWithVotes, "shared schemas are named components");
  t.ok(doc.paths["/v1/approvals/{id}/approve"].post.responses["409"], "refusals are documented");
  t.equal(doc.paths["/v1/approvals/{id}/deny"].post.requestBody.required, false, "a vote's body is optional");
  // Every $ref points at something that exists.
  const refs = [...res.body.matchAll(/"\$ref": "#\/components\/schemas\/([^"]+)"/g)].map(
    (m) => m[1] as string,
  );
  t.ok(refs.length > 0);
  for (const ref of new Set(refs)) t.ok(doc.components.schemas[ref], `$ref ${ref} resolves`);
});

t.test("bundle status, liveness and readiness", async (t) => {
  t.same((await call("GET", "/healthz")).body, { status: "ok" });
  refused(t, await call("GET", "/v1/status/bundle"), 401, "malformed");

  const before = await call("GET", "/readyz");
  t.equal(before.status, 503, "no bundle: not ready");
  t.equal(before.body.status, "not_ready");
  t.match(before.body.reasons, [/no policy bundle is loaded/]);
  t.match(before.body, {
    state: "not_ready",
    ready: false,
    components: {
      engine: { state: "not_ready", message: "no policy bundle is loaded yet" },
      store: { state: "ok" },
    },
  });
  t.same((await call("GET", "/v1/status/bundle", { as: "dave" })).body, {
    revision: null,
    loaded_at: null,
    source: null,
    last_error: null,
    activations: 0,
  });

  engine.recordRejection("bundle signature does not verify");
  const rejected = await call("GET", "/readyz");
  t.match(rejected.body.reasons, [/the last one was rejected: bundle signature does not verify/]);

  engine.activate(
    await activeFrom(
      verdictPolicy('{"action": "allow", "reasons": [{"code": "t", "message": "test"}]}', "rev-api-1"),
    ),
  );
  const after = await call("GET", "/readyz");
  t.equal(after.status, 200, "a bundle and a store that answers: ready");
  t.same(after.body, {
    status: "ready",
    reasons: [],
    revision: "rev-api-1",
    state: "ok",
    ready: true,
    components: {
      engine: { state: "ok", message: "revision rev-api-1 from test" },
      store: { state: "ok" },
    },
  });
  refused(t, await call("GET", "/v1/status"), 401, "malformed");
  const all = await call("GET", "/v1/status", { as: "dave" });
  t.equal(all.status, 200);
  t.match(all.body, {
    state: "ok",
    ready: true,
    components: {
      engine: { state: "ok", details: { revision: "rev-api-1", source: "test", activations: 1 } },
      store: { state: "ok" },
    },
  });
  const status = await call("GET", "/v1/status/bundle", { as: "dave" });
  t.equal(status.body.revision, "rev-api-1");
  t.equal(status.body.activations, 1);
  t.equal(status.body.last_error, null);
  t.match(status.body.loaded_at, /^\d{4}-/);
  t.equal(status.body.source, "test");
});

t.test("readiness: a store that does not answer and the gateway's own checks", async (t) => {
  let storeUp = false;
  let listening = false;
  const other = buildApi({
    verifier,
    approvals,
    engine,
    adminGroups: [],
    store: {
      query: async () => {
        if (!storeUp) throw new Error("connect ECONNREFUSED 127.0.0.1:5432");
        return [];
      },
    },
    ready: () => ({ ok: listening, reasons: listening ? [] : ["the PostgreSQL listener is not up yet"] }),
  });
  t.teardown(() => other.close());
  const down = await other.inject({ url: "/readyz" });
  t.equal(down.statusCode, 503);
  t.same(down.json().reasons, [
    "the store does not answer: connect ECONNREFUSED 127.0.0.1:5432",
    "the PostgreSQL listener is not up yet",
  ]);
  t.match(down.json().components, {
    store: { state: "error" },
    gateway: { state: "not_ready", message: "the PostgreSQL listener is not up yet" },
  });
  storeUp = true;
  listening = true;
  t.equal((await other.inject({ url: "/readyz" })).statusCode, 200);
});

t.test("readiness follows the gateway's status registry: an error anywhere is a 503 naming it", async (t) => {
  const { StatusRegistry } = await import("../../src/status/status.js");
  const status = new StatusRegistry();
  status.register("engine", () => engine.componentStatus());
  let spool: import("../../src/status/status.js").ComponentStatus = {
    state: "warn",
    message: "audit spool 85 % full",
    details: { used_bytes: 85 },
  };
  status.register("audit.spool", () => spool);
  const other = buildApi({ verifier, approvals, engine, adminGroups: [], status });
  t.teardown(() => other.close());

  const warned = await other.inject({ url: "/readyz" });
  t.equal(warned.statusCode, 200, "a warning keeps it ready");
  t.match(warned.json(), { status: "ready", state: "warn", ready: true });
  t.same(warned.json().components["audit.spool"], { state: "warn", message: "audit spool 85 % full" });

  spool = { state: "error", message: "audit spool full: 65536 bytes of 65536" };
  const full = await other.inject({ url: "/readyz" });
  t.equal(full.statusCode, 503);
  t.match(full.json(), {
    status: "not_ready",
    state: "error",
    ready: false,
    reasons: ["audit spool full: 65536 bytes of 65536"],
    components: { "audit.spool": { state: "error" }, engine: { state: "ok" } },
  });
});

t.test("a webhook without an observable approval service is a startup error", async (t) => {
  const { ApprovalService } = await import("../../src/approvals/service.js");
  const plain = new ApprovalService({ store });
  t.throws(
    () =>
      buildApi({
        verifier,
        approvals: plain,
        engine,
        adminGroups: [],
        webhook: { url: "http://127.0.0.1:9/" },
      }),
    /ObservableApprovalService/,
  );
});

t.test("an unexpected failure is a 500 naming the request id, without a stack trace", async (t) => {
  const broken = Object.create(approvals) as typeof approvals;
  broken.list = async () => {
    throw new Error("connection terminated unexpectedly");
  };
  const other = buildApi({ verifier, approvals: broken, engine, adminGroups: ["pamgate-admins"] });
  t.teardown(() => other.close());
  const res = await other.inject({
    url: "/v1/approvals",
    headers: { authorization: `Bearer ${tokens.erin}` },
  });
  t.equal(res.statusCode, 500);
  const body = res.json();
  t.equal(body.error.code, "internal_error");
  t.match(body.error.message, /the gateway log has the details \(request id req-\w+\)/);
  t.notMatch(res.body, /connection terminated|\n\s+at /, "neither the cause nor a stack reaches the client");
});
