// Access-token verification: a JWT from a configured issuer becomes the policy `identity`, or one TokenError
// naming the check that failed. The checks, in order (the first failure is the error):
//
//   1. shape        a compact JWS of at most 16 KiB with a JSON header and payload       → malformed
//   2. alg          never `none`, never HS* (HMAC keyed with a public key is a known forgery),
//                   and on the issuer's allow-list                                       → alg_not_allowed
//   3. issuer       the unverified `iss` picks the configuration                         → unknown_issuer
//   4. key          by `kid` from the issuer's cached JWKS, refetched on an unknown kid   → unknown_key,
//                                                                                          issuer_unreachable
//   5. signature                                                                         → bad_signature
//   6. claims       exp, nbf (with leeway), aud, iss; exp and sub present                → expired,
//                                                                                          not_yet_valid,
//                                                                                          bad_audience, malformed
//   7. mapping      groups claim shape, the `act` chain (depth bounded)                  → malformed,
//                                                                                          delegation_too_deep
//
// Time claims are only judged once the signature holds, so an attacker learns nothing from editing them.
// Tokens are never logged: log lines carry `token` = the first 16 hex digits of the token's SHA-256 (the
// `tokenId` of the result), and the `jti` once verified.
import { createHash } from "node:crypto";
import { decodeJwt, decodeProtectedHeader, type JWTPayload, errors as joseErrors, jwtVerify } from "jose";
import type { Identity } from "../decision/contract.js";
import { metrics } from "../metrics.js";
import type { ComponentStatus } from "../status/status.js";
import { type Logger, silentLogger } from "../util/log.js";
import { DEFAULT_MAX_DELEGATION_DEPTH, identityFromClaims } from "./claims.js";
import {
  type IssuerConfig,
  IssuerConfigError,
  type ResolvedIssuerConfig,
  resolveIssuerConfig,
} from "./config.js";
import { TokenError } from "./errors.js";
import { type CandidateKey, IssuerKeys, type IssuerKeysStatus } from "./issuer-keys.js";

export interface VerifiedToken {
  identity: Identity;
  /** The token's `exp`: the gateway re-checks it before each command (TokenVerifier#checkExpiry). */
  expiresAt: Date;
  /** A fingerprint of the token (first 16 hex digits of its SHA-256), safe to log. Not the `jti`. */
  tokenId: string;
  /** All verified claims. */
  claims: JWTPayload;
}

export interface TokenVerifierOptions {
  log?: Logger;
  /** The clock, in ms since the epoch (default Date.now): token times, refetch cooldown and JWKS age. */
  now?: () => number;
  /** Least time between two JWKS fetches of one issuer (default 30 s). */
  jwksCooldownSeconds?: number;
  /** Age after which a JWKS is refreshed in the background (default 600 s). */
  jwksMaxAgeSeconds?: number;
  /** Least time between discovery attempts after a failure (default 5 s). */
  discoveryRetrySeconds?: number;
  /** Limit for one request to an issuer (default 5 s). */
  httpTimeoutSeconds?: number;
  /** Most nested `act` claims accepted (default 10). */
  maxDelegationDepth?: number;
}

/** Largest token accepted, bytes: far above real access tokens, small enough to parse cheaply. */
export const MAX_TOKEN_BYTES = 16 * 1024;

/** A log-safe fingerprint of a token: the first 16 hex digits of its SHA-256. */
export function tokenFingerprint(token: string): string {
  return createHash("sha256").update(token).digest("hex").slice(0, 16);
}

function iso(epochSeconds: number): string {
  const d = new Date(epochSeconds * 1000);
  return Number.isNaN(d.getTime()) ? String(epochSeconds) : d.toISOString();
}

function list(values: string[]): string {
  return values.map((v) => JSON.stringify(v)).join(", ");
}

/** A value taken from the (unverified) token, quoted and cut short for an error message. */
export function quoted(value: unknown, max = 120): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

interface Parsed {
  alg: string;
  kid: string | undefined;
  iss: string;
}

export class TokenVerifier {
  private readonly issuers = new Map<string, IssuerKeys>();
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly maxDelegationDepth: number;

  constructor(issuers: IssuerConfig[], options: TokenVerifierOptions = {}) {
    if (!Array.isArray(issuers) || issuers.length === 0)
      throw new IssuerConfigError("at least one trusted issuer must be configured");
    this.log = options.log ?? silentLogger;
    this.now = options.now ?? Date.now;
    this.maxDelegationDepth = options.maxDelegationDepth ?? DEFAULT_MAX_DELEGATION_DEPTH;
    const keyOptions = {
      log: this.log,
      now: this.now,
      cooldownMs: (options.jwksCooldownSeconds ?? 30) * 1000,
      maxAgeMs: (options.jwksMaxAgeSeconds ?? 600) * 1000,
      discoveryRetryMs: (options.discoveryRetrySeconds ?? 5) * 1000,
      timeoutMs: (options.httpTimeoutSeconds ?? 5) * 1000,
    };
    for (const config of issuers) {
      const resolved = resolveIssuerConfig(config);
      if (this.issuers.has(resolved.issuer))
        throw new IssuerConfigError(`issuer ${JSON.stringify(resolved.issuer)} is configured twice`);
      this.issuers.set(resolved.issuer, new IssuerKeys(resolved, keyOptions));
    }
  }

  /** The configured issuers, defaults applied. */
  get issuerConfigs(): ResolvedIssuerConfig[] {
    return [...this.issuers.values()].map((i) => i.config);
  }

  /** Per issuer: jwks_uri, cached kids, fetch count, last error — for health and readiness. */
  status(): IssuerKeysStatus[] {
    return [...this.issuers.values()].map((i) => i.status());
  }

  /**
   * The verifier in the gateway's status model. `warn` when an issuer's latest discovery or JWKS fetch failed:
   * tokens signed by keys already cached still verify, a token needing another key fails (issuer_unreachable).
   * Keys are fetched on first use, so an issuer not contacted yet is no problem. `error` without any issuer
   * (the constructor refuses that; this is the fail-closed answer should it ever happen).
   */
  componentStatus(): ComponentStatus {
    const issuers = this.status();
    const details = {
      issuers: issuers.map((i) => ({
        issuer: i.issuer,
        jwks_uri: i.jwksUri,
        kids: i.kids,
        fetches: i.fetches,
        fetched_at: i.fetchedAt?.toISOString() ?? null,
        last_error: i.lastError,
      })),
    };
    if (issuers.length === 0) {
      return {
        state: "error",
        message: "no trusted token issuer is configured: every token is refused",
        details,
      };
    }
    const failing = issuers.filter((i) => i.lastError !== null);
    if (failing.length > 0) {
      const what = failing
        .map((i) => {
          const cached = i.kids.length > 0 ? `${i.kids.length} cached keys still verify` : "no cached keys";
          return `${i.issuer}: ${i.lastError} (${cached})`;
        })
        .join("; ");
      return { state: "warn", message: `token issuer keys could not be fetched: ${what}`, details };
    }
    return { state: "ok", details };
  }

  /**
   * Discovers every issuer and fetches its JWKS now, so the first token does not wait for it. Resolves with
   * the issuers that failed (their tokens fail with issuer_unreachable until they come back).
   */
  async warmUp(): Promise<{ issuer: string; error: string }[]> {
    const failed: { issuer: string; error: string }[] = [];
    await Promise.all(
      [...this.issuers.values()].map((keys) =>
        keys.warmUp().catch((err: unknown) => {
          failed.push({
            issuer: keys.config.issuer,
            error: err instanceof Error ? err.message : String(err),
          });
        }),
      ),
    );
    return failed;
  }

  /** Verifies an access token (with or without a "Bearer " prefix). Throws TokenError, and nothing else. */
  async verify(token: string): Promise<VerifiedToken> {
    const raw = typeof token === "string" ? token.replace(/^Bearer\s+/i, "").trim() : "";
    const tokenId = raw === "" ? "(empty)" : tokenFingerprint(raw);
    try {
      const verified = await this.verifyOrThrow(raw, tokenId);
      this.log.debug(
        {
          token: tokenId,
          jti: verified.claims.jti,
          iss: verified.identity.iss,
          sub: verified.identity.sub,
          actors: verified.identity.actors.map((a) => a.sub),
        },
        "identity: token verified",
      );
      return verified;
    } catch (err) {
      const error =
        err instanceof TokenError
          ? err
          : new TokenError("internal_error", "token verification failed unexpectedly; see the gateway log");
      if (!(err instanceof TokenError)) {
        // Our bug, not the caller's: keep the details (no token in them) for the operator.
        this.log.error(
          {
            token: tokenId,
            err: err instanceof Error ? { message: err.message, stack: err.stack } : String(err),
          },
          "identity: unexpected error verifying a token",
        );
      }
      metrics.tokenRejections.inc({ reason: error.code });
      this.log.warn({ token: tokenId, reason: error.code }, `identity: token rejected: ${error.message}`);
      throw error;
    }
  }

  /** Throws TokenError "expired" when a verified token has expired since (leeway included). */
  checkExpiry(verified: VerifiedToken): void {
    const config = this.issuers.get(verified.identity.iss)?.config;
    const leewayMs = (config?.leewaySeconds ?? 0) * 1000;
    const now = this.now();
    if (now > verified.expiresAt.getTime() + leewayMs) {
      metrics.tokenRejections.inc({ reason: "expired" });
      throw new TokenError(
        "expired",
        `token expired at ${verified.expiresAt.toISOString()} (now ${new Date(now).toISOString()})`,
      );
    }
  }

  private parse(token: string): Parsed {
    if (token === "") throw new TokenError("malformed", "no token");
    if (token.length > MAX_TOKEN_BYTES)
      throw new TokenError("malformed", `token is longer than ${MAX_TOKEN_BYTES} bytes`);
    const segments = token.split(".").length;
    if (segments === 5) throw new TokenError("malformed", "encrypted tokens (JWE) are not supported");
    if (segments !== 3)
      throw new TokenError("malformed", `not a JWT: expected 3 dot-separated segments, got ${segments}`);
    let header: ReturnType<typeof decodeProtectedHeader>;
    let payload: JWTPayload;
    try {
      header = decodeProtectedHeader(token);
    } catch {
      throw new TokenError("malformed", "the JWT header is not base64url-encoded JSON");
    }
    try {
      payload = decodeJwt(token);
    } catch {
      throw new TokenError("malformed", "the JWT payload is not base64url-encoded JSON");
    }
    const { alg, kid } = header;
    if (typeof alg !== "string" || alg === "")
      throw new TokenError("malformed", 'the JWT header has no "alg"');
    if (alg.toLowerCase() === "none")
      throw new TokenError("alg_not_allowed", 'alg "none": unsigned tokens are never accepted');
    if (/^HS/i.test(alg))
      throw new TokenError(
        "alg_not_allowed",
        `alg ${quoted(alg, 20)}: HMAC-signed tokens are never accepted (a token MACed with the issuer's public key as the secret is a known forgery)`,
      );
    if (kid !== undefined && typeof kid !== "string")
      throw new TokenError("malformed", 'the JWT header "kid" is not a string');
    if (typeof payload.iss !== "string" || payload.iss === "")
      throw new TokenError("malformed", 'the token has no "iss" claim');
    return { alg, kid, iss: payload.iss };
  }

  private async verifyOrThrow(token: string, tokenId: string): Promise<VerifiedToken> {
    const { alg, kid, iss } = this.parse(token);
    const keys = this.issuers.get(iss);
    if (!keys)
      throw new TokenError(
        "unknown_issuer",
        `issuer ${quoted(iss)} is not trusted (trusted: ${list([...this.issuers.keys()])})`,
      );
    const { config } = keys;
    if (!config.algorithms.includes(alg))
      throw new TokenError(
        "alg_not_allowed",
        `alg ${quoted(alg)} is not allowed for ${config.issuer} (allowed: ${config.algorithms.join(", ")})`,
      );

    const candidates = await keys.candidates(alg, kid);
    const payload = await this.verifyWith(token, candidates, config);

    const identity = identityFromClaims(payload, config, { maxDelegationDepth: this.maxDelegationDepth });
    return {
      identity,
      expiresAt: new Date((payload.exp as number) * 1000),
      tokenId,
      claims: payload,
    };
  }

  /** Tries each candidate key (one, unless the token has no kid); maps jose's errors to one TokenError. */
  private async verifyWith(
    token: string,
    candidates: CandidateKey[],
    config: ResolvedIssuerConfig,
  ): Promise<JWTPayload> {
    for (const [i, { key }] of candidates.entries()) {
      try {
        const { payload } = await jwtVerify(token, key, {
          issuer: config.issuer,
          audience: config.audience,
          algorithms: config.algorithms,
          clockTolerance: config.leewaySeconds,
          currentDate: new Date(this.now()),
          requiredClaims: ["exp", "sub"],
        });
        return payload;
      } catch (err) {
        const last = i === candidates.length - 1;
        if (err instanceof joseErrors.JWSSignatureVerificationFailed && !last) continue;
        throw this.mapJoseError(err, config);
      }
    }
    throw new TokenError("unknown_key", `no key of ${config.issuer} fits the token`);
  }

  private mapJoseError(err: unknown, config: ResolvedIssuerConfig): Error {
    const leeway = `leeway ${config.leewaySeconds} s`;
    const now = new Date(this.now()).toISOString();
    if (err instanceof joseErrors.JWSSignatureVerificationFailed)
      return new TokenError(
        "bad_signature",
        `the signature does not verify with the key of ${config.issuer}`,
      );
    if (err instanceof joseErrors.JWTExpired) {
      const exp = err.payload.exp;
      return new TokenError(
        "expired",
        typeof exp === "number" ? `token expired at ${iso(exp)} (now ${now}, ${leeway})` : "token expired",
      );
    }
    if (err instanceof joseErrors.JWTClaimValidationFailed) {
      const { claim, reason, payload } = err;
      if (reason === "missing") return new TokenError("malformed", `the token has no ${quoted(claim)} claim`);
      if (reason === "invalid")
        return new TokenError("malformed", `the token's ${quoted(claim)} claim is invalid`);
      if (claim === "nbf") {
        const nbf = payload.nbf;
        return new TokenError(
          "not_yet_valid",
          typeof nbf === "number"
            ? `token is not valid before ${iso(nbf)} (now ${now}, ${leeway})`
            : "token is not yet valid",
        );
      }
      if (claim === "aud")
        return new TokenError(
          "bad_audience",
          `token audience ${quoted(payload.aud ?? null)} does not include ${config.audience.length > 1 ? "any of " : ""}${list(config.audience)}`,
        );
      if (claim === "iss")
        return new TokenError("unknown_issuer", `token issuer ${quoted(payload.iss)} does not match`);
      if (claim === "iat")
        return new TokenError("not_yet_valid", `token was issued in the future (iat; now ${now}, ${leeway})`);
      return new TokenError("malformed", `claim "${claim}" failed validation: ${err.message}`);
    }
    if (err instanceof joseErrors.JOSEAlgNotAllowed)
      return new TokenError("alg_not_allowed", `alg not allowed for ${config.issuer}`);
    if (
      err instanceof joseErrors.JWSInvalid ||
      err instanceof joseErrors.JWTInvalid ||
      err instanceof joseErrors.JOSENotSupported
    )
      return new TokenError("malformed", `not a valid JWT: ${err.message}`);
    if (err instanceof TokenError) return err;
    return err instanceof Error ? err : new Error(String(err));
  }
}
