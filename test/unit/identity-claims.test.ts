// From claims to the policy identity (pure), and issuer configuration validation.
import t from "tap";
import { groupsFromClaims, identityFromClaims } from "../../src/identity/claims.js";
import { IssuerConfigError, resolveIssuerConfig } from "../../src/identity/config.js";
import { TokenError } from "../../src/identity/errors.js";
import { isLoopback } from "../../src/util/net.js";

const ISS = "https://idp.example.com";
const base = { iss: ISS, aud: "pamgate", exp: 2_000_000_000 };

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    if (err instanceof TokenError) return err.code;
    throw err;
  }
  return undefined;
}

t.test("a person: sub, iss, email, groups, client_id, a chain of one", async (t) => {
  const identity = identityFromClaims(
    { ...base, sub: "alice", email: "alice@example.com", groups: ["engineering"], client_id: "pamgate-cli" },
    {},
  );
  t.same(identity, {
    sub: "alice",
    iss: ISS,
    email: "alice@example.com",
    groups: ["engineering"],
    client_id: "pamgate-cli",
    actors: [{ sub: "alice", client_id: "pamgate-cli" }],
  });
});

t.test("a machine without email or groups; client_id falls back to azp, then null", async (t) => {
  t.same(identityFromClaims({ ...base, sub: "ci-bot", azp: "ci-bot" }, {}), {
    sub: "ci-bot",
    iss: ISS,
    email: null,
    groups: [],
    client_id: "ci-bot",
    actors: [{ sub: "ci-bot", client_id: "ci-bot" }],
  });
  const bare = identityFromClaims({ ...base, sub: "svc" }, {});
  t.equal(bare.client_id, null);
  t.same(bare.actors, [{ sub: "svc", client_id: null }]);
  t.equal(identityFromClaims({ ...base, sub: "x", client_id: "a", azp: "b" }, {}).client_id, "a");
});

t.test("RFC 8693 act: original requester first, the presenting party last", async (t) => {
  const identity = identityFromClaims(
    {
      ...base,
      sub: "alice",
      client_id: "ci-bot",
      act: { sub: "ci-bot", client_id: "ci-bot", act: { sub: "agent-x", iss: "https://agents.example.com" } },
    },
    {},
  );
  t.same(identity.actors, [
    { sub: "alice" },
    { sub: "agent-x", iss: "https://agents.example.com" },
    { sub: "ci-bot", client_id: "ci-bot" },
  ]);
  t.equal(identity.sub, "alice", "the token's subject stays the principal");
  t.equal(identity.client_id, "ci-bot");
});

t.test("delegation depth is bounded", async (t) => {
  const nested = (depth: number): Record<string, unknown> => {
    let act: Record<string, unknown> | undefined;
    for (let i = depth; i >= 1; i--) act = act ? { sub: `agent-${i}`, act } : { sub: `agent-${i}` };
    return { ...base, sub: "alice", ...(act ? { act } : {}) };
  };
  const ten = identityFromClaims(nested(10), {});
  t.equal(ten.actors.length, 11);
  t.equal(ten.actors[10]?.sub, "agent-1", "the outermost act is the last actor");
  t.equal(ten.actors[1]?.sub, "agent-10", "the innermost act acted first");
  t.equal(
    code(() => identityFromClaims(nested(11), {})),
    "delegation_too_deep",
  );
  t.throws(() => identityFromClaims(nested(11), {}), { message: /nested deeper than 10 actors/ });
  t.equal(
    code(() => identityFromClaims(nested(3), {}, { maxDelegationDepth: 2 })),
    "delegation_too_deep",
  );
});

t.test("malformed claims name the claim", async (t) => {
  t.throws(() => identityFromClaims({ ...base }, {}), {
    code: "malformed",
    message: 'token has no "sub" claim',
  });
  t.throws(() => identityFromClaims({ ...base, sub: 42 }, {}), {
    code: "malformed",
    message: /"sub" must be/,
  });
  t.throws(() => identityFromClaims({ ...base, sub: "a", email: 7 }, {}), {
    code: "malformed",
    message: 'token claim "email" is a number, expected a string',
  });
  t.throws(() => identityFromClaims({ ...base, sub: "a", act: "ci-bot" }, {}), {
    code: "malformed",
    message: "act claim at depth 1 is a string, expected an object",
  });
  t.throws(() => identityFromClaims({ ...base, sub: "a", act: { sub: "b", act: { client_id: "c" } } }, {}), {
    code: "malformed",
    message: 'act claim at depth 2 has no "sub" claim',
  });
});

t.test("groups: configured claim, dotted paths, URL-style names, shapes", async (t) => {
  const claims = {
    groups: ["g"],
    realm_access: { roles: ["admin", "dev", "admin"] },
    "https://example.com/groups": ["ns"],
    one: "solo",
    bad: [1, "x"],
    obj: { a: 1 },
  };
  t.same(groupsFromClaims(claims), ["g"]);
  t.same(groupsFromClaims(claims, "realm_access.roles"), ["admin", "dev"], "deduplicated");
  t.same(groupsFromClaims(claims, "https://example.com/groups"), ["ns"], "exact name before path walking");
  t.same(groupsFromClaims(claims, "one"), ["solo"], "a single string becomes a list");
  t.same(groupsFromClaims(claims, "missing.path"), []);
  t.throws(() => groupsFromClaims(claims, "bad"), {
    code: "malformed",
    message: 'groups claim "bad" is an array with non-string members; expected an array of strings',
  });
  t.throws(() => groupsFromClaims(claims, "obj"), { code: "malformed", message: /is a object/ });
  t.same(identityFromClaims({ ...base, sub: "a", ...claims }, { groupsClaim: "realm_access.roles" }).groups, [
    "admin",
    "dev",
  ]);
});

t.test("issuer configuration: defaults and refusals", async (t) => {
  t.same(resolveIssuerConfig({ issuer: ISS, audience: "pamgate" }), {
    issuer: ISS,
    audience: ["pamgate"],
    groupsClaim: "groups",
    algorithms: ["RS256", "ES256", "PS256", "EdDSA"],
    leewaySeconds: 30,
    allowInsecureHttp: false,
  });
  const bad = (config: object, message: RegExp) =>
    t.throws(() => resolveIssuerConfig({ issuer: ISS, audience: "pamgate", ...config }), {
      name: "IssuerConfigError",
      message,
    });
  bad({ algorithms: ["RS256", "none"] }, /"none" \(unsigned tokens\) can never be allowed/);
  bad({ algorithms: ["HS256"] }, /HS256 is a shared-secret algorithm/);
  bad({ algorithms: ["XS1"] }, /unsupported algorithm "XS1"/);
  bad({ algorithms: [] }, /non-empty list/);
  bad({ audience: [] }, /audience must be/);
  bad({ leewaySeconds: 3600 }, /leewaySeconds must be between 0 and 300/);
  bad({ groupsClaim: "a..b" }, /groupsClaim/);
  bad({ issuer: "http://idp.example.com" }, /is http: use https/);
  bad({ issuer: "http://idp.example.com", allowInsecureHttp: true }, /only honoured for loopback issuers/);
  t.equal(
    resolveIssuerConfig({ issuer: "http://127.0.0.1:8080", audience: "p", allowInsecureHttp: true }).issuer,
    "http://127.0.0.1:8080",
  );
  t.ok(resolveIssuerConfig({ issuer: "http://[::1]:8080", audience: "p", allowInsecureHttp: true }));
  t.type(new IssuerConfigError("x"), Error);
});

t.test("loopback hosts", async (t) => {
  for (const h of ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"]) t.ok(isLoopback(h), h);
  for (const h of ["0.0.0.0", "10.0.0.1", "::", "example.com", "127.example.com", "localhost.evil.com"])
    t.notOk(isLoopback(h), h);
});

t.test("TokenError: a stable code, one line, no stack", async (t) => {
  const err = new TokenError("bad_audience", 'token audience "x" does not include "pamgate"');
  t.equal(err.code, "bad_audience");
  t.equal(String(err), 'bad_audience: token audience "x" does not include "pamgate"');
  t.equal(err.stack, 'TokenError [bad_audience]: token audience "x" does not include "pamgate"');
  t.same(JSON.parse(JSON.stringify(err)), {
    code: "bad_audience",
    message: 'token audience "x" does not include "pamgate"',
  });
  t.type(err, Error);
});
