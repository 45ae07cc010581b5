// The web console's server side without a browser: the OIDC sign-in (authorization code + PKCE against the
// development issuer, driven by hand with fetch), the session cookie accepted like a bearer token, the CSRF
// header rule, /v1/me, the approvals event stream (live, filtered by who may see, across the store's NOTIFY),
// and refusals — a forged login cookie, a foreign `return`, a sign-in from a non-loopback host. The browser
// itself is driven in console-browser.test.ts.
import type { AddressInfo } from "node:net";
import t from "tap";
import { buildApi } from "../../src/api/index.js";
import { ObservableApprovalService } from "../../src/api/observable.js";
import type { NewApprovalRequest } from "../../src/approvals/types.js";
import { DecisionEngine } from "../../src/decision/engine.js";
import { TokenVerifier } from "../../src/identity/verifier.js";
import { openStore } from "../../src/store/open.js";
import { startTestIdp } from "../helpers/idp.js";

const idp = await startTestIdp(t, {
  users: {
    alice: { email: "alice@example.com", groups: ["engineering"] },
    carol: { groups: ["dba"] },
    dave: { groups: ["marketing"] },
  },
});
const verifier = new TokenVerifier([idp.issuerConfig()]);
const store = await openStore({ kind: "pglite" });
t.teardown(() => store.close());
const approvals = new ObservableApprovalService({ store, sweepIntervalMs: 0 });
t.teardown(() => approvals.close());
const api = buildApi({
  verifier,
  approvals,
  engine: new DecisionEngine(),
  adminGroups: [],
  console: {
    login: { issuer: idp.issuer, clientId: idp.consoleClient, allowInsecureHttp: true },
    assets: async () => ({
      file: (p) =>
        p === "index.html"
          ? { body: Buffer.from("<!doctype html>app"), type: "text/html", etag: '"x"' }
          : undefined,
    }),
  },
});
await api.listen({ host: "127.0.0.1", port: 0 });
t.teardown(() => api.close());
const base = `http://127.0.0.1:${(api.server.address() as AddressInfo).port}`;

/** A cookie jar good enough for one origin pair on 127.0.0.1 (cookies ignore ports): name+path → value. */
class Browser {
  private readonly jar = new Map<string, { name: string; value: string; path: string }>();
  cookie(name: string): string | undefined {
    return [...this.jar.values()].find((c) => c.name === name)?.value;
  }
  set(name: string, value: string, path = "/") {
    this.jar.set(`${name}|${path}`, { name, value, path });
  }
  async go(url: string, init: RequestInit = {}): Promise<Response> {
    const path = new URL(url).pathname;
    const cookie = [...this.jar.values()]
      .filter((c) => path.startsWith(c.path))
      .map((c) => `${c.name}=${c.value}`)
      .join("; ");
    const headers = new Headers(init.headers);
    if (cookie) headers.set("cookie", cookie);
    const res = await fetch(url, { ...init, headers, redirect: "manual" });
    for (const line of res.headers.getSetCookie()) {
      const [pair = "", ...attrs] = line.split(";").map((s) => s.trim());
      const eq = pair.indexOf("=");
      const p = attrs.find((a) => a.toLowerCase().startsWith("path="))?.slice(5) ?? "/";
      const name = pair.slice(0, eq);
      const value = pair.slice(eq + 1);
      if (value === "" || attrs.some((a) => a.toLowerCase() === "max-age=0")) this.jar.delete(`${name}|${p}`);
      else this.jar.set(`${name}|${p}`, { name, value, path: p });
    }
    return res;
  }
  /** Follows redirects; on the dev issuer's login page submits `user`. Returns the final URL. */
  async signIn(start: string, user: string): Promise<{ url: string; res: Response }> {
    let url = start;
    for (let hops = 0; hops < 12; hops++) {
      let res = await this.go(url);
      const html = res.status === 200 ? await res.text() : "";
      const action = /<form method="post" action="([^"]+)"/.exec(html)?.[1];
      if (action)
        res = await this.go(new URL(action, url).href, {
          method: "POST",
          headers: { "content-type": "application/x-www-form-urlencoded" },
          body: `username=${encodeURIComponent(user)}`,
        });
      const next = res.headers.get("location");
      if (!next) return { url, res };
      url = new URL(next, url).href;
    }
    throw new Error("too many redirects");
  }
}

const pending = (requester: string, groups: string[], text: string): NewApprovalRequest => ({
  requester: {
    sub: requester,
    iss: idp.issuer,
    email: null,
    groups: [],
    client_id: null,
    actors: [{ sub: requester }],
  },
  resource: "orders-db",
  protocol: "postgres",
  command: { text, fingerprint: `fp-${crypto.randomUUID()}` },
  reasons: [{ code: "pg.ddl_needs_approval", message: "a schema change" }],
  rule: { groups, min_approvals: 1, ttl_s: 600 },
  decisionId: crypto.randomUUID(),
  sessionId: "s-1",
});

t.test("sign in with the authorization code flow and PKCE; the cookie is a session", async (t) => {
  const b = new Browser();
  const start = await b.go(`${base}/console/login?return=${encodeURIComponent("#/audit?identity=alice")}`);
  t.equal(start.status, 302);
  const authorize = new URL(start.headers.get("location") ?? "");
  t.equal(authorize.origin, idp.issuer, "to the issuer");
  t.equal(authorize.searchParams.get("code_challenge_method"), "S256");
  t.ok(authorize.searchParams.get("code_challenge"), "with a PKCE challenge");
  t.ok(authorize.searchParams.get("state"), "and a state");
  t.equal(authorize.searchParams.get("client_id"), "pamgate-console");
  const login = start.headers.getSetCookie().find((c) => c.startsWith("pamgate_login="));
  t.match(login, /HttpOnly/);
  t.match(login, /SameSite=Lax/);
  t.match(login, /Path=\/console\/callback/);

  const { url } = await b.signIn(authorize.href, "carol");
  t.equal(url, `${base}/console/#/audit?identity=alice`, "back where the sign-in started");
  t.ok(b.cookie("pamgate_session"), "a session cookie");
  t.notOk(b.cookie("pamgate_login"), "the login cookie is cleared");

  const me = await b.go(`${base}/v1/me`);
  t.equal(me.status, 200);
  const body = (await me.json()) as {
    identity: { sub: string; groups: string[] };
    rights: Record<string, boolean>;
  };
  t.equal(body.identity.sub, "carol");
  t.same(body.identity.groups, ["dba"]);
  t.same(body.rights, { admin: false, approver: true, auditor: false });

  const index = await b.go(`${base}/console/`);
  t.equal(index.status, 200);
  t.match(index.headers.get("content-security-policy"), /default-src 'self'/, "a strict CSP");

  t.test("a change needs the console header (CSRF)", async (t) => {
    const r = await approvals.create(pending("alice", ["dba"], "ALTER TABLE a ADD COLUMN b int"));
    const without = await b.go(`${base}/v1/approvals/${r.id}/approve`, { method: "POST" });
    t.equal(without.status, 403);
    t.match(await without.text(), /"code":"csrf"/);
    t.equal((await approvals.get(r.id)).status, "pending", "nothing changed");
    const withHeader = await b.go(`${base}/v1/approvals/${r.id}/approve`, {
      method: "POST",
      headers: { "x-pamgate-console": "1", "content-type": "application/json" },
      body: JSON.stringify({ comment: "from the console" }),
    });
    t.equal(withHeader.status, 200);
    t.equal(((await withHeader.json()) as { status: string }).status, "approved");
  });

  t.test("sign out clears the cookie", async (t) => {
    const out = await b.go(`${base}/console/logout`, {
      method: "POST",
      headers: { "x-pamgate-console": "1" },
    });
    t.equal(out.status, 204);
    t.notOk(b.cookie("pamgate_session"));
    t.equal((await b.go(`${base}/v1/me`)).status, 401);
  });
});

t.test("refused sign-ins", async (t) => {
  const b = new Browser();
  const start = await b.go(`${base}/console/login?return=${encodeURIComponent("https://evil.example/")}`);
  const { url } = await b.signIn(new URL(start.headers.get("location") ?? "").href, "alice");
  t.equal(url, `${base}/console/#/approvals`, "a return that is not one of the app's routes is ignored");

  const forged = new Browser();
  forged.set(
    "pamgate_login",
    Buffer.from(JSON.stringify({ verifier: "x".repeat(43), state: "s", back: "#/" })).toString("base64url"),
    "/console/callback",
  );
  const cb = await forged.go(`${base}/console/callback?code=stolen&state=s`);
  t.equal(cb.status, 400, "a code that this sign-in did not get is refused");
  t.match(await cb.text(), /Sign-in failed/);
  t.notOk(forged.cookie("pamgate_session"));

  const none = await new Browser().go(`${base}/console/callback?code=x&state=y`);
  t.equal(none.status, 400);
  t.match(await none.text(), /not started here/);

  const remote = await api.inject({ url: "/console/login", headers: { host: "pamgate.example.com" } });
  t.equal(remote.statusCode, 400);
  t.match(remote.body, /public_url/, "no redirect URI from a Host header that is not loopback");

  const bad = await new Browser().go(`${base}/v1/me`, { headers: { cookie: "pamgate_session=not-a-token" } });
  t.equal(bad.status, 401, "a cookie that is not a valid token is refused like a bad bearer token");
});

/** Reads server-sent events from a streaming response until `count` `approval` events arrived. */
async function readEvents(
  res: Response,
  count: number,
  timeoutMs = 10_000,
): Promise<Array<{ event: string; data: unknown }>> {
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  const events: Array<{ event: string; data: unknown }> = [];
  let buffer = "";
  const deadline = Date.now() + timeoutMs;
  while (events.filter((e) => e.event === "approval").length < count) {
    const left = deadline - Date.now();
    if (left <= 0) break;
    const chunk = await Promise.race([
      reader.read(),
      new Promise<null>((r) => setTimeout(() => r(null), left)),
    ]);
    if (chunk === null || chunk.done) break;
    buffer += decoder.decode(chunk.value, { stream: true });
    let end = buffer.indexOf("\n\n");
    while (end >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = /^event: (.*)$/m.exec(block)?.[1];
      const data = /^data: (.*)$/m.exec(block)?.[1];
      if (event && data) events.push({ event, data: JSON.parse(data) });
      end = buffer.indexOf("\n\n");
    }
  }
  await reader.cancel();
  return events;
}

t.test("the approvals event stream: live, and only what the subscriber may see", async (t) => {
  const carol = await idp.tokenFor("carol");
  const dave = await idp.tokenFor("dave");
  const open = (token: string) =>
    fetch(`${base}/v1/approvals/events`, { headers: { authorization: `Bearer ${token}` } });
  const [carolStream, daveStream] = await Promise.all([open(carol), open(dave)]);
  t.equal(carolStream.status, 200);
  t.match(carolStream.headers.get("content-type"), /text\/event-stream/);

  const forCarol = readEvents(carolStream, 3);
  const forDave = readEvents(daveStream, 1);
  const visible = await approvals.create(pending("alice", ["dba"], "ALTER TABLE x ADD COLUMN y int"));
  await approvals.create(pending("alice", ["security"], "DROP TABLE secret"));
  const carolIdentity = (await verifier.verify(carol)).identity;
  await approvals.deny(visible.id, carolIdentity, { comment: "not now" });
  const mine = await approvals.create(pending("dave", ["security"], "TRUNCATE t"));
  // Events arrive in order, so a last visible request proves the hidden ones before it were not sent.
  const sentinel = await approvals.create(pending("alice", ["dba"], "VACUUM FULL"));

  const seen = await forCarol;
  const carolIds = seen
    .filter((e) => e.event === "approval")
    .map((e) => e.data as { id: string; status: string });
  t.same(
    carolIds.map((e) => [e.id, e.status]),
    [
      [visible.id, "pending"],
      [visible.id, "denied"],
      [sentinel.id, "pending"],
    ],
    "carol hears of the request for dba as it arrives and as it is denied, and of nothing else",
  );
  const daveSeen = (await forDave)
    .filter((e) => e.event === "approval")
    .map((e) => (e.data as { id: string }).id);
  t.same(daveSeen, [mine.id], "dave hears only of his own request");

  const noToken = await fetch(`${base}/v1/approvals/events`);
  t.equal(noToken.status, 401);
});

t.test("the stream ends with `expired` when the token does", async (t) => {
  const short = await startTestIdp(t, { users: { carol: { groups: ["dba"] } }, accessTokenTtlSeconds: 2 });
  const v = new TokenVerifier([short.issuerConfig()]);
  const a = buildApi({ verifier: v, approvals, engine: new DecisionEngine(), adminGroups: [] });
  await a.listen({ host: "127.0.0.1", port: 0 });
  t.teardown(() => a.close());
  const res = await fetch(
    `http://127.0.0.1:${(a.server.address() as AddressInfo).port}/v1/approvals/events`,
    {
      headers: { authorization: `Bearer ${await short.tokenFor("carol")}` },
    },
  );
  const text = await res.text(); // the server ends the stream
  t.match(text, /event: expired/);
});

t.test("without a sign-in configured the console says so", async (t) => {
  const a = buildApi({ verifier, approvals, engine: new DecisionEngine(), adminGroups: [] });
  t.teardown(() => a.close());
  const login = await a.inject({ url: "/console/login" });
  t.equal(login.statusCode, 404);
  t.match(login.body, /listeners\.api\.console/);
  const index = await a.inject({ url: "/console/" });
  t.equal(index.statusCode, 503);
});
