// Token verification against a real OpenID provider (oidc-provider via the development issuer) over real HTTP on
// loopback: the tokens it issues for people, machines and delegation chains, every kind of bad token, key
// rotation, the JWKS refetch rate limit, the provider going away, a custom groups claim, and logs that never
// hold a token.
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { Writable } from "node:stream";
import { decodeJwt } from "jose";
import { pino } from "pino";
import t from "tap";
import { generateSigningKey, startDevIssuer } from "../../src/identity/dev-issuer.js";
import { TokenError, type TokenErrorCode } from "../../src/identity/errors.js";
import { TokenVerifier, type TokenVerifierOptions } from "../../src/identity/verifier.js";
import { metrics } from "../../src/metrics.js";
import type { Logger } from "../../src/util/log.js";
import { ALICE, startTestIdp, type TestIdp } from "../helpers/idp.js";

/** A clock the test moves forward. */
function testClock() {
  let offsetMs = 0;
  return {
    now: () => Date.now() + offsetMs,
    advance(seconds: number) {
      offsetMs += seconds * 1000;
    },
  };
}

function captureLog(): { log: Logger; text: () => string } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      lines.push(String(chunk));
      done();
    },
  });
  return { log: pino({ level: "debug" }, stream), text: () => lines.join("") };
}

function verifierFor(idp: TestIdp, options: TokenVerifierOptions = {}) {
  return new TokenVerifier([idp.issuerConfig()], options);
}

/** The TokenError verify throws, or a failure when it resolves or throws anything else. */
async function rejection(verifier: TokenVerifier, token: string): Promise<TokenError> {
  try {
    const verified = await verifier.verify(token);
    throw new Error(`expected a TokenError, got identity ${JSON.stringify(verified.identity)}`);
  } catch (err) {
    if (err instanceof TokenError) return err;
    throw err;
  }
}

async function rejections(reason: TokenErrorCode): Promise<number> {
  const { values } = await metrics.tokenRejections.get();
  return values.find((v) => v.labels.reason === reason)?.value ?? 0;
}

const idp = await startTestIdp(t);

t.test("good tokens from the provider map to the policy identity", async (t) => {
  const verifier = verifierFor(idp);
  const iss = idp.issuer;

  const person = await idp.tokenFor("alice");
  const p = await verifier.verify(person);
  t.same(p.identity, {
    sub: "alice",
    iss,
    email: "alice@example.com",
    groups: ["engineering", "dba"],
    client_id: "pamgate-cli",
    actors: [{ sub: "alice", client_id: "pamgate-cli" }],
  });
  t.equal(p.expiresAt.getTime(), (decodeJwt(person).exp as number) * 1000, "expiresAt is the token's exp");
  t.match(p.tokenId, /^[0-9a-f]{16}$/);
  t.equal(p.claims.jti, decodeJwt(person).jti);
  t.same((await verifier.verify(`Bearer ${person}`)).identity, p.identity, "a Bearer prefix is accepted");

  const bob = await verifier.verify(await idp.tokenFor("bob"));
  t.equal(bob.identity.email, null);
  t.same(bob.identity.groups, []);

  const machine = await verifier.verify(await idp.machineToken("ci-bot"));
  t.same(machine.identity, {
    sub: "ci-bot",
    iss,
    email: null,
    groups: [],
    client_id: "ci-bot",
    actors: [{ sub: "ci-bot", client_id: "ci-bot" }],
  });

  const oneHop = await idp.delegatedToken(person, "ci-bot");
  t.same(decodeJwt(oneHop).act, { sub: "ci-bot", client_id: "ci-bot" }, "the provider wrote the act claim");
  t.same((await verifier.verify(oneHop)).identity, {
    sub: "alice",
    iss,
    email: "alice@example.com",
    groups: ["engineering", "dba"],
    client_id: "ci-bot",
    actors: [{ sub: "alice" }, { sub: "ci-bot", client_id: "ci-bot" }],
  });

  // agent-x acts for alice, then ci-bot exchanges agent-x's delegated token: alice ← agent-x ← ci-bot.
  const viaAgent = await idp.delegatedToken(person, "agent-x");
  const twoHops = await idp.delegatedToken(viaAgent, "ci-bot");
  t.same(decodeJwt(twoHops).act, {
    sub: "ci-bot",
    client_id: "ci-bot",
    act: { sub: "agent-x", client_id: "agent-x" },
  });
  const two = await verifier.verify(twoHops);
  t.same(two.identity.actors, [
    { sub: "alice" },
    { sub: "agent-x", client_id: "agent-x" },
    { sub: "ci-bot", client_id: "ci-bot" },
  ]);
  t.equal(two.identity.sub, "alice", "the original requester stays the subject");
  t.equal(two.identity.client_id, "ci-bot", "the presenting client");
  t.ok(
    two.expiresAt.getTime() <= p.expiresAt.getTime(),
    "a delegated token does not outlive the token it was exchanged for",
  );

  t.equal(idp.requests("/jwks"), 1, "one verifier, one JWKS fetch for all of them");
});

t.test("the provider refuses a token exchange with a forged subject token", async (t) => {
  await t.rejects(idp.delegatedToken(await idp.bad.unknownKey(), "ci-bot"), {
    message:
      "dev issuer: the token exchange for ci-bot refused: invalid_grant: subject_token is not a valid token of this issuer: no applicable key found in the JSON Web Key Set",
  });
  await t.rejects(idp.tokenFor("mallory"), {
    message: 'dev issuer: a token for mallory refused: invalid_grant: no development user "mallory"',
  });
  await t.rejects(idp.delegatedToken(await idp.bad.expired(), "ci-bot"), { message: /"exp" claim/ });
});

t.test("every bad token gets its own code and a one-line message", async (t) => {
  // No refetch cooldown here, so the unknown key is looked for in a freshly fetched JWKS.
  const verifier = verifierFor(idp, { jwksCooldownSeconds: 0 });
  await verifier.verify(await idp.tokenFor("alice")); // warm the JWKS cache
  const cases: [string, () => Promise<string>, TokenErrorCode, RegExp][] = [
    ["expired", idp.bad.expired, "expired", /^token expired at \S+Z \(now \S+Z, leeway 30 s\)$/],
    [
      "not yet valid",
      idp.bad.notYetValid,
      "not_yet_valid",
      /^token is not valid before \S+Z \(now \S+Z, leeway 30 s\)$/,
    ],
    [
      "wrong audience",
      idp.bad.wrongAudience,
      "bad_audience",
      /^token audience "other-service" does not include "pamgate"$/,
    ],
    [
      "wrong issuer",
      idp.bad.wrongIssuer,
      "unknown_issuer",
      /^issuer "http:\/\/127\.0\.0\.1:9\/not-a-trusted-issuer" is not trusted \(trusted: "http:\/\/127\.0\.0\.1:\d+"\)$/,
    ],
    [
      "unknown signing key",
      idp.bad.unknownKey,
      "unknown_key",
      /^key "[\w-]+" is not in the JWKS of http:\/\/127\.0\.0\.1:\d+, even after refetching it$/,
    ],
    [
      "tampered signature",
      idp.bad.tamperedSignature,
      "bad_signature",
      /^the signature does not verify with the key of http/,
    ],
    ["tampered payload", idp.bad.tamperedPayload, "bad_signature", /^the signature does not verify/],
    ["alg none", idp.bad.algNone, "alg_not_allowed", /^alg "none": unsigned tokens are never accepted$/],
    [
      "HS256 keyed with the public key",
      idp.bad.hs256WithPublicKey,
      "alg_not_allowed",
      /^alg "HS256": HMAC-signed tokens are never accepted \(a token MACed with the issuer's public key as the secret is a known forgery\)$/,
    ],
    [
      "not a JWT",
      async () => "not-a-token",
      "malformed",
      /^not a JWT: expected 3 dot-separated segments, got 1$/,
    ],
    ["garbage segments", async () => "a.b.c", "malformed", /^the JWT header is not base64url-encoded JSON$/],
    ["JWE", async () => "a.b.c.d.e", "malformed", /^encrypted tokens \(JWE\) are not supported$/],
    ["empty", async () => "", "malformed", /^no token$/],
    ["no exp", () => idp.forge({ exp: undefined }), "malformed", /^the token has no "exp" claim$/],
    [
      "deep delegation",
      () => idp.forge({ act: deepAct(11) }),
      "delegation_too_deep",
      /nested deeper than 10 actors/,
    ],
    [
      "ES256 header on an RSA key",
      () => withHeader(idp.tokenFor("alice"), { alg: "ES256" }),
      "alg_not_allowed",
      /^token header says alg ES256, but key "[\w-]+" of http\S+ is an RSA key for RS256$/,
    ],
  ];
  for (const [name, make, expected, message] of cases) {
    const token = await make();
    const before = await rejections(expected);
    const err = await rejection(verifier, token);
    t.equal(err.code, expected, `${name}: code`);
    t.match(err.message, message, `${name}: message`);
    t.notMatch(err.message, /\n| {4}at /, `${name}: one line, no stack`);
    if (token.length > 20)
      t.notOk(err.message.includes(token.split(".")[1] ?? "?"), `${name}: no token in the message`);
    t.equal(await rejections(expected), before + 1, `${name}: counted in pamgate_token_rejections_total`);
  }
  t.same(JSON.parse(JSON.stringify(await rejection(verifier, "x"))), {
    code: "malformed",
    message: "not a JWT: expected 3 dot-separated segments, got 1",
  });
});

/** The token with its header fields changed (the signature is left as it was). */
async function withHeader(token: Promise<string>, fields: Record<string, unknown>): Promise<string> {
  const [h, p, s] = (await token).split(".") as [string, string, string];
  const header = { ...JSON.parse(Buffer.from(h, "base64url").toString()), ...fields };
  return `${Buffer.from(JSON.stringify(header)).toString("base64url")}.${p}.${s}`;
}

function deepAct(depth: number): Record<string, unknown> {
  let act: Record<string, unknown> = { sub: "agent-1", client_id: "agent-1" };
  for (let i = 2; i <= depth; i++) act = { sub: `agent-${i}`, client_id: `agent-${i}`, act };
  return act;
}

t.test("leeway: 30 s of clock skew on exp and nbf is tolerated, and configurable", async (t) => {
  const now = Math.floor(Date.now() / 1000);
  const lenient = verifierFor(idp);
  t.ok(await lenient.verify(await idp.forge({ exp: now - 10 })), "expired 10 s ago");
  t.ok(await lenient.verify(await idp.forge({ nbf: now + 10 })), "valid in 10 s");
  const strict = new TokenVerifier([{ ...idp.issuerConfig(), leewaySeconds: 0 }]);
  t.equal((await rejection(strict, await idp.forge({ exp: now - 10 }))).code, "expired");
  t.equal((await rejection(strict, await idp.forge({ nbf: now + 10 }))).code, "not_yet_valid");
});

t.test("an algorithm outside the issuer's allow-list is refused before any key is fetched", async (t) => {
  const other = await startTestIdp(t);
  const verifier = new TokenVerifier([{ ...other.issuerConfig(), algorithms: ["ES256"] }]);
  const err = await rejection(verifier, await other.tokenFor("alice"));
  t.equal(err.code, "alg_not_allowed");
  t.equal(err.message, `alg "RS256" is not allowed for ${other.issuer} (allowed: ES256)`);
  t.equal(other.requests("/jwks"), 0);
});

t.test("expiry is re-checked on later commands", async (t) => {
  const clock = testClock();
  const verifier = verifierFor(idp, { now: clock.now });
  const verified = await verifier.verify(await idp.tokenFor("alice"));
  verifier.checkExpiry(verified);
  clock.advance(600 + 31);
  t.throws(() => verifier.checkExpiry(verified), { code: "expired", message: /^token expired at / });
});

t.test("key rotation: an unknown kid triggers one JWKS refetch, after the cooldown", async (t) => {
  const rot = await startTestIdp(t);
  const clock = testClock();
  const verifier = verifierFor(rot, { now: clock.now });
  const old = await rot.tokenFor("alice");
  await verifier.verify(old);
  t.equal(rot.requests("/jwks"), 1);

  const oldKid = rot.signingKey().kid;
  const newKid = await rot.rotate();
  const fresh = await rot.tokenFor("alice");
  t.equal(JSON.parse(Buffer.from(fresh.split(".")[0] as string, "base64url").toString()).kid, newKid);
  t.same(
    rot.jwks().keys.map((k) => k.kid),
    [newKid, oldKid],
    "the new key signs, the old key stays published",
  );

  // Within 30 s of the last fetch the verifier will not refetch, and says so.
  const early = await rejection(verifier, fresh);
  t.equal(early.code, "unknown_key");
  t.match(early.message, / \(last requested [\d.]+ s ago; the next refetch is allowed in [\d.]+ s\)$/);
  t.equal(rot.requests("/jwks"), 1);

  clock.advance(31);
  const verified = await verifier.verify(fresh);
  t.equal(verified.identity.sub, "alice");
  t.equal(rot.requests("/jwks"), 2, "exactly one refetch");
  t.ok(await verifier.verify(old), "the old key still verifies tokens it signed");
  t.same(
    verifier.status()[0]?.kids,
    rot.jwks().keys.map((k) => k.kid),
  );
});

t.test("refetch rate limit: a flood of unknown kids costs one JWKS fetch per cooldown", async (t) => {
  const flood = await startTestIdp(t);
  const clock = testClock();
  const verifier = verifierFor(flood, { now: clock.now });
  await verifier.verify(await flood.tokenFor("alice"));
  clock.advance(31);
  const before = flood.requests("/jwks");

  const forged = await Promise.all(
    Array.from({ length: 50 }, (_, i) => flood.forge({}, { header: { kid: `made-up-${i}` } })),
  );
  const errors = await Promise.all(forged.map((tok) => rejection(verifier, tok)));
  t.same(new Set(errors.map((e) => e.code)), new Set(["unknown_key"]));
  t.equal(flood.requests("/jwks") - before, 1, "50 concurrent unknown kids: one fetch");

  const stranger = await generateSigningKey();
  const strangers = (prefix: string, n: number) =>
    Promise.all(
      Array.from({ length: n }, (_, i) =>
        flood.forge({}, { key: stranger, header: { kid: `${prefix}-${i}` } }),
      ),
    );
  for (const tok of await strangers("later", 20)) await rejection(verifier, tok);
  t.equal(flood.requests("/jwks") - before, 1, "20 more within the cooldown: no fetch");

  clock.advance(31);
  for (const tok of await strangers("after", 5)) await rejection(verifier, tok);
  t.equal(flood.requests("/jwks") - before, 2, "after the cooldown: one more");
  t.ok(await verifier.verify(await flood.tokenFor("alice")), "good tokens keep verifying throughout");
});

t.test("the provider goes away: cached keys keep verifying, unknown keys fail closed", async (t) => {
  const gone = await startDevIssuer({ users: { alice: ALICE }, clients: ["ci-bot"] });
  const clock = testClock();
  const verifier = new TokenVerifier([gone.issuerConfig()], { now: clock.now, jwksMaxAgeSeconds: 60 });
  const person = await gone.tokenFor("alice");
  const machine = await gone.machineToken("ci-bot");
  await verifier.verify(person);
  await gone.rotateKeys(); // a key the verifier has never seen…
  const unseen = await gone.tokenFor("alice"); // …signs this one
  await gone.stop();

  t.equal((await verifier.verify(machine)).identity.sub, "ci-bot", "known kid, provider down: verifies");

  const early = await rejection(verifier, unseen);
  t.equal(early.code, "unknown_key", "within the cooldown: unknown_key, no fetch attempted");

  clock.advance(31);
  const late = await rejection(verifier, unseen);
  t.equal(late.code, "issuer_unreachable");
  t.match(
    late.message,
    /^key "[\w-]+" is not in the cached JWKS of http:\/\/127\.0\.0\.1:\d+ and refetching it failed: fetch failed \(ECONNREFUSED\)$/,
  );

  clock.advance(40); // past the JWKS max age (60 s here): the background refresh fails, the cached keys stay
  const fetchesBefore = verifier.status()[0]?.fetches ?? 0;
  t.ok(await verifier.verify(person), "a stale cache answers at once");
  for (let i = 0; i < 100 && (verifier.status()[0]?.fetches ?? 0) === fetchesBefore; i++)
    await new Promise((r) => setTimeout(r, 20));
  t.equal(verifier.status()[0]?.fetches, fetchesBefore + 1, "the background refresh was tried");
  t.match(verifier.status()[0]?.lastError, /ECONNREFUSED/);
  t.ok(await verifier.verify(person), "still verifying after the failed refresh");

  const cold = new TokenVerifier([gone.issuerConfig()]);
  const err = await rejection(cold, person);
  t.equal(err.code, "issuer_unreachable", "never reached the issuer: fails closed");
  t.match(err.message, /^discovery of http:\/\/127\.0\.0\.1:\d+ failed: /);
  const again = await rejection(cold, person);
  t.match(again.message, /retrying in \d/, "discovery retries are spaced out too");
  const failed = await cold.warmUp();
  t.equal(failed.length, 1);
  t.equal(failed[0]?.issuer, gone.issuer);
  t.match(failed[0]?.error, /^discovery of http:\/\/127\.0\.0\.1:\d+ failed/);
});

t.test("a broken JWKS endpoint: issuer_unreachable, and retries are spaced out", async (t) => {
  // An IdP whose discovery works but whose JWKS answers 500 (e.g. mid-deploy).
  let jwksRequests = 0;
  const server = createServer((req, res) => {
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    if (req.url === "/.well-known/openid-configuration") {
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ issuer: base, jwks_uri: `${base}/jwks` }));
    } else {
      jwksRequests++;
      res.writeHead(500).end("oops");
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.teardown(() => new Promise((resolve) => server.close(resolve)));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const verifier = new TokenVerifier([{ issuer, audience: "pamgate", allowInsecureHttp: true }]);
  const token = await idp.forge({ iss: issuer });

  const first = await rejection(verifier, token);
  t.equal(first.code, "issuer_unreachable");
  t.equal(first.message, `fetching the JWKS of ${issuer} failed: HTTP 500 from ${issuer}/jwks`);
  const second = await rejection(verifier, token);
  t.equal(second.code, "issuer_unreachable");
  t.match(
    second.message,
    /^fetching the JWKS of \S+ failed [\d.]+ s ago \(HTTP 500 from \S+\); retrying in [\d.]+ s$/,
  );
  t.equal(jwksRequests, 1);
});

t.test("groups from a custom claim", async (t) => {
  const kc = await startTestIdp(t, { groupsClaim: "realm_access.roles" });
  const token = await kc.tokenFor("alice");
  t.same(decodeJwt(token).realm_access, { roles: ALICE.groups }, "the provider nests the groups");
  t.equal(decodeJwt(token).groups, undefined);
  const verifier = verifierFor(kc);
  t.same((await verifier.verify(token)).identity.groups, ALICE.groups);
  const defaults = new TokenVerifier([{ ...kc.issuerConfig(), groupsClaim: undefined }]);
  t.same((await defaults.verify(token)).identity.groups, [], "only the configured claim counts");
});

t.test("two trusted issuers: each token verifies against its own issuer's keys only", async (t) => {
  const second = await startTestIdp(t);
  const verifier = new TokenVerifier([idp.issuerConfig(), second.issuerConfig()]);
  t.equal((await verifier.verify(await idp.tokenFor("alice"))).identity.iss, idp.issuer);
  t.equal((await verifier.verify(await second.tokenFor("alice"))).identity.iss, second.issuer);
  const crossed = await idp.forge({ iss: second.issuer }); // signed by the first, claims the second
  t.equal((await rejection(verifier, crossed)).code, "unknown_key");
});

t.test("tokens never reach the log, fingerprints and reasons do", async (t) => {
  const { log, text } = captureLog();
  const verifier = verifierFor(idp, { log });
  const good = [await idp.tokenFor("alice"), await idp.delegatedToken(await idp.tokenFor("alice"), "ci-bot")];
  const bad = [
    await idp.bad.expired(),
    await idp.bad.tamperedSignature(),
    await idp.bad.algNone(),
    await idp.bad.hs256WithPublicKey(),
    await idp.bad.wrongAudience(),
    await idp.bad.unknownKey(),
  ];
  const fingerprints: string[] = [];
  for (const token of good) fingerprints.push((await verifier.verify(token)).tokenId);
  for (const token of bad) await rejection(verifier, token);
  const out = text();
  t.match(out, /"msg":"identity: token verified"/);
  t.match(out, /"reason":"bad_signature"/);
  for (const fp of fingerprints) t.ok(out.includes(fp), `fingerprint ${fp} logged`);
  for (const token of [...good, ...bad]) {
    const [header, payload, signature] = token.split(".");
    t.notOk(out.includes(token), "no whole token");
    t.notOk(payload && out.includes(payload), "no payload segment");
    t.notOk(signature && out.includes(signature), "no signature segment");
    t.notOk(header && header.length > 40 && out.includes(header), "no header segment");
  }
  t.notMatch(out, /eyJ[\w-]{20,}/, "nothing that looks like a JWT");
});

t.test("the development issuer binds loopback only", async (t) => {
  for (const host of ["0.0.0.0", "::", "192.0.2.1", "example.com"]) {
    await t.rejects(startDevIssuer({ host, users: {} }), {
      message: /the development issuer only binds loopback addresses \(127\.0\.0\.1, ::1\); refusing/,
    });
  }
  const v6 = await startDevIssuer({ host: "::1", users: { alice: ALICE } }).catch(() => null);
  if (v6) {
    t.teardown(() => v6.stop());
    t.match(v6.issuer, /^http:\/\/\[::1\]:\d+$/);
    const verified = await new TokenVerifier([v6.issuerConfig()]).verify(await v6.tokenFor("alice"));
    t.same(verified.identity.groups, ALICE.groups);
  }
});
