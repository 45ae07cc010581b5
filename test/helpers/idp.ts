// A real identity provider for tests: the development issuer (oidc-provider, in-process on 127.0.0.1, a random
// port) with signing keys this helper generated, so that besides the good tokens the provider issues it can
// also forge the bad ones the provider would never produce: expired, not yet valid, wrong issuer, an unknown
// signing key, a tampered signature, alg "none", and HS256 keyed with the issuer's public key.
import { randomUUID } from "node:crypto";
import { exportSPKI, importJWK, type JWK, type JWTPayload, SignJWT, UnsecuredJWT } from "jose";
import {
  type DevIssuer,
  type DevIssuerOptions,
  generateSigningKey,
  publicJwk,
  startDevIssuer,
} from "../../src/identity/dev-issuer.js";

export const ALICE = { email: "alice@example.com", groups: ["engineering", "dba"] };
export const BOB = { email: null, groups: [] as string[] };

export interface TestIdp extends DevIssuer {
  /** The private key that currently signs (the provider's, as given to it). */
  signingKey(): JWK;
  /**
   * Signs `claims` (merged over a valid person token's claims for alice) with the provider's current key, or
   * with `options.key`. `options.header` is merged into the protected header.
   */
  forge(claims?: JWTPayload, options?: { key?: JWK; header?: Record<string, unknown> }): Promise<string>;
  /** Rotates to a fresh key this helper knows; resolves with its kid. */
  rotate(): Promise<string>;
  bad: {
    expired(): Promise<string>;
    notYetValid(): Promise<string>;
    wrongAudience(): Promise<string>;
    wrongIssuer(): Promise<string>;
    unknownKey(): Promise<string>;
    tamperedSignature(): Promise<string>;
    tamperedPayload(): Promise<string>;
    algNone(): Promise<string>;
    hs256WithPublicKey(): Promise<string>;
  };
}

interface Teardown {
  teardown(fn: () => unknown): void;
}

const nowSeconds = () => Math.floor(Date.now() / 1000);

/** Changes one character in the middle of a base64url segment (never the last one: it may hold only padding bits). */
export function flipChar(segment: string): string {
  const i = Math.floor(segment.length / 2);
  const c = segment[i] === "A" ? "B" : "A";
  return segment.slice(0, i) + c + segment.slice(i + 1);
}

export async function startTestIdp(t: Teardown, options: Partial<DevIssuerOptions> = {}): Promise<TestIdp> {
  const keys = options.keys ?? [await generateSigningKey("RS256")];
  const idp = await startDevIssuer({
    users: { alice: ALICE, bob: BOB },
    clients: ["ci-bot", "agent-x", "deploy-agent"],
    extraAudiences: ["other-service"],
    ...options,
    keys,
  });
  t.teardown(() => idp.stop());
  let current = keys[0] as JWK;

  const baseClaims = (): JWTPayload => ({
    iss: idp.issuer,
    aud: idp.audience,
    sub: "alice",
    client_id: idp.personClient,
    email: ALICE.email,
    groups: [...ALICE.groups],
    jti: randomUUID(),
    iat: nowSeconds(),
    exp: nowSeconds() + 300,
  });

  const forge: TestIdp["forge"] = async (claims = {}, opts = {}) => {
    const jwk = opts.key ?? current;
    const alg = jwk.alg ?? "RS256";
    const key = await importJWK(jwk, alg);
    return new SignJWT({ ...baseClaims(), ...claims })
      .setProtectedHeader({ alg, typ: "at+jwt", kid: jwk.kid, ...opts.header })
      .sign(key);
  };

  return {
    ...idp,
    signingKey: () => current,
    forge,
    async rotate() {
      const next = await generateSigningKey("RS256");
      current = next;
      return idp.rotateKeys(next);
    },
    bad: {
      expired: () => forge({ iat: nowSeconds() - 7200, exp: nowSeconds() - 3600 }),
      notYetValid: () => forge({ nbf: nowSeconds() + 3600 }),
      // The provider itself issues this one: a token for another resource server.
      wrongAudience: () => idp.tokenFor("alice", { audience: "other-service" }),
      wrongIssuer: () => forge({ iss: "http://127.0.0.1:9/not-a-trusted-issuer" }),
      async unknownKey() {
        const stranger = await generateSigningKey("RS256");
        return forge({}, { key: stranger });
      },
      async tamperedSignature() {
        const [h, p, s] = (await idp.tokenFor("alice")).split(".") as [string, string, string];
        return `${h}.${p}.${flipChar(s)}`;
      },
      async tamperedPayload() {
        // Alice promotes herself: same header and signature, groups edited.
        const [h, p, s] = (await idp.tokenFor("alice")).split(".") as [string, string, string];
        const claims = JSON.parse(Buffer.from(p, "base64url").toString());
        claims.groups = [...claims.groups, "admin"];
        return `${h}.${Buffer.from(JSON.stringify(claims)).toString("base64url")}.${s}`;
      },
      algNone: async () => new UnsecuredJWT(baseClaims()).encode(),
      async hs256WithPublicKey() {
        // The classic key-confusion forgery: HMAC keyed with the issuer's public key (PEM), which anyone can
        // download from the JWKS, under the real kid.
        const pub = publicJwk(current);
        const pem = await exportSPKI((await importJWK(pub, "RS256", { extractable: true })) as CryptoKey);
        return new SignJWT(baseClaims())
          .setProtectedHeader({ alg: "HS256", typ: "at+jwt", kid: current.kid })
          .sign(new TextEncoder().encode(pem));
      },
    },
  };
}
