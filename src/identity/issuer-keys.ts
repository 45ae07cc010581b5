// One trusted issuer's signing keys: its discovery document (openid-client) and its JWKS, cached.
//
// - The JWKS is fetched on first use and kept. A token whose `kid` is not in it triggers one refetch — a key
//   rotation at the IdP — but at most one per cooldown (default 30 s), and concurrent requests share one
//   fetch: a flood of tokens with made-up `kid`s costs the IdP one request per cooldown.
// - After maxAge (default 10 min) the JWKS is refreshed in the background while the cached keys keep answering,
//   so keys the IdP has withdrawn stop verifying without adding latency.
// - A failed fetch never discards the cached keys: with the IdP down, tokens signed by known keys keep
//   verifying; a token needing a key we do not have fails closed (issuer_unreachable, or unknown_key within the
//   cooldown).
//
// Why not jose's createRemoteJWKSet: once its cache is older than cacheMaxAge it must reload before answering,
// so an unreachable IdP would stop known keys verifying; and its errors cannot tell "the IdP is down" from
// "the key does not exist", which are different codes here.
import { type CryptoKey, importJWK, type JWK } from "jose";
import { allowInsecureRequests, discovery } from "openid-client";
import { errorText } from "../util/errors.js";
import type { Logger } from "../util/log.js";
import { insecureUrlProblem, type ResolvedIssuerConfig } from "./config.js";
import { TokenError } from "./errors.js";

export interface IssuerKeysOptions {
  log: Logger;
  now: () => number;
  /** Least time between two JWKS fetches (unknown-kid refetches and background refreshes), ms. */
  cooldownMs: number;
  /** Age after which the JWKS is refreshed in the background, ms. */
  maxAgeMs: number;
  /** Least time between two discovery attempts after a failure, ms. */
  discoveryRetryMs: number;
  /** Limit for one HTTP request (discovery or JWKS), ms. */
  timeoutMs: number;
}

export interface IssuerKeysStatus {
  issuer: string;
  jwksUri: string | null;
  kids: string[];
  /** Completed JWKS fetches (successful or not) since start. */
  fetches: number;
  fetchedAt: Date | null;
  lastError: string | null;
}

/** A key that may have signed a token, imported for its alg. */
export interface CandidateKey {
  kid: string | undefined;
  key: CryptoKey;
}

const MAX_JWKS_BYTES = 1024 * 1024;

/** Key types (and curves) that can produce each JWS alg. */
function keyFitsAlg(jwk: JWK, alg: string): boolean {
  if (jwk.alg !== undefined && jwk.alg !== alg) return false;
  if (jwk.use !== undefined && jwk.use !== "sig") return false;
  if (Array.isArray(jwk.key_ops) && !jwk.key_ops.includes("verify")) return false;
  if (/^(RS|PS)\d+$/.test(alg)) return jwk.kty === "RSA";
  if (alg === "ES256") return jwk.kty === "EC" && jwk.crv === "P-256";
  if (alg === "ES384") return jwk.kty === "EC" && jwk.crv === "P-384";
  if (alg === "ES512") return jwk.kty === "EC" && jwk.crv === "P-521";
  if (alg === "EdDSA") return jwk.kty === "OKP" && (jwk.crv === "Ed25519" || jwk.crv === "Ed448");
  if (alg === "Ed25519") return jwk.kty === "OKP" && jwk.crv === "Ed25519";
  return false;
}

/** A kid from the (unverified) token header, quoted and cut short for a message. */
function clip(kid: string): string {
  const text = JSON.stringify(kid);
  return text.length > 80 ? `${text.slice(0, 80)}…` : text;
}

function seconds(ms: number): string {
  return `${Math.max(0, Math.round(ms / 100) / 10)} s`;
}

export class IssuerKeys {
  private jwksUri: string | null = null;
  private discovering: Promise<string> | null = null;
  private discoveryFailedAt: number | null = null;

  private keys: JWK[] = [];
  private fetchedAt: number | null = null;
  private lastAttemptAt: number | null = null;
  private fetching: Promise<void> | null = null;
  private fetches = 0;
  private lastError: string | null = null;
  /** Imported keys, per JWK object (replaced with the JWKS) and alg. */
  private imported = new WeakMap<JWK, Map<string, Promise<CryptoKey>>>();

  constructor(
    readonly config: ResolvedIssuerConfig,
    private readonly opts: IssuerKeysOptions,
  ) {}

  status(): IssuerKeysStatus {
    return {
      issuer: this.config.issuer,
      jwksUri: this.jwksUri,
      kids: this.keys.map((k) => k.kid ?? "(no kid)"),
      fetches: this.fetches,
      fetchedAt: this.fetchedAt === null ? null : new Date(this.fetchedAt),
      lastError: this.lastError,
    };
  }

  /**
   * The keys that may have signed a token with this header, imported. Refetches the JWKS when the key is
   * unknown (rate limited). Throws TokenError unknown_key / issuer_unreachable / alg_not_allowed.
   */
  async candidates(alg: string, kid: string | undefined): Promise<CandidateKey[]> {
    await this.ensureDiscovered();
    if (this.fetchedAt === null) await this.fetchOrExplain(alg, kid, "initial");

    let found = this.select(alg, kid);
    if (found.length === 0) {
      if (kid !== undefined && this.keys.some((k) => k.kid === kid)) {
        const jwk = this.keys.find((k) => k.kid === kid) as JWK;
        throw new TokenError(
          "alg_not_allowed",
          `token header says alg ${alg}, but key ${clip(kid)} of ${this.config.issuer} is ${this.describeKey(jwk)}`,
        );
      }
      await this.fetchOrExplain(alg, kid, "unknown-kid");
      found = this.select(alg, kid);
      if (found.length === 0)
        throw new TokenError(
          "unknown_key",
          `${this.keyName(alg, kid)} is not in the JWKS of ${this.config.issuer}, even after refetching it`,
        );
    } else {
      this.refreshIfStale();
    }
    return Promise.all(found.map(async (jwk) => ({ kid: jwk.kid, key: await this.importKey(jwk, alg) })));
  }

  /** Discovers and fetches the JWKS now (startup warm-up). Throws TokenError issuer_unreachable. */
  async warmUp(): Promise<void> {
    await this.ensureDiscovered();
    if (this.fetchedAt === null) await this.fetchOrExplain("", undefined, "initial");
  }

  private keyName(alg: string, kid: string | undefined): string {
    return kid === undefined ? `a key for ${alg} (the token has no kid)` : `key ${clip(kid)}`;
  }

  private describeKey(jwk: JWK): string {
    const type = [jwk.kty ?? "unknown", jwk.crv].filter(Boolean).join(" ");
    return `an ${type} key${jwk.alg ? ` for ${jwk.alg}` : ""}${jwk.use && jwk.use !== "sig" ? ` (use ${jwk.use})` : ""}`;
  }

  private select(alg: string, kid: string | undefined): JWK[] {
    return this.keys.filter((jwk) => (kid === undefined || jwk.kid === kid) && keyFitsAlg(jwk, alg));
  }

  private importKey(jwk: JWK, alg: string): Promise<CryptoKey> {
    let perAlg = this.imported.get(jwk);
    if (!perAlg) {
      perAlg = new Map();
      this.imported.set(jwk, perAlg);
    }
    let key = perAlg.get(alg);
    if (!key) {
      key = importJWK(jwk, alg).then((k) => {
        if (k instanceof Uint8Array) throw new Error("a symmetric key in a JWKS");
        return k;
      });
      perAlg.set(alg, key);
      key.catch(() => perAlg.delete(alg));
    }
    return key.catch((err) => {
      throw new TokenError(
        "unknown_key",
        `key "${jwk.kid ?? "(no kid)"}" of ${this.config.issuer} cannot be used for ${alg}: ${errorText(err)}`,
      );
    });
  }

  private ensureDiscovered(): Promise<string> {
    if (this.jwksUri !== null) return Promise.resolve(this.jwksUri);
    if (this.discovering) return this.discovering;
    const now = this.opts.now();
    if (this.discoveryFailedAt !== null && now - this.discoveryFailedAt < this.opts.discoveryRetryMs) {
      return Promise.reject(
        new TokenError(
          "issuer_unreachable",
          `discovery of ${this.config.issuer} failed ${seconds(now - this.discoveryFailedAt)} ago (${this.lastError}); retrying in ${seconds(this.discoveryFailedAt + this.opts.discoveryRetryMs - now)}`,
        ),
      );
    }
    this.discovering = this.discover().finally(() => {
      this.discovering = null;
    });
    return this.discovering;
  }

  private async discover(): Promise<string> {
    const { issuer, allowInsecureHttp, audience } = this.config;
    try {
      // openid-client's Configuration is a client's view of the server; as a resource server we only read the
      // validated metadata, so the client id is a placeholder.
      const configuration = await discovery(new URL(issuer), audience[0] as string, undefined, undefined, {
        execute: allowInsecureHttp ? [allowInsecureRequests] : [],
        timeout: Math.max(1, Math.ceil(this.opts.timeoutMs / 1000)),
      });
      const jwksUri = configuration.serverMetadata().jwks_uri;
      if (typeof jwksUri !== "string") throw new Error("the discovery document has no jwks_uri");
      const problem = insecureUrlProblem(jwksUri, allowInsecureHttp);
      if (problem) throw new Error(`jwks_uri ${problem}`);
      this.jwksUri = jwksUri;
      this.discoveryFailedAt = null;
      this.opts.log.info({ issuer, jwks_uri: jwksUri }, "identity: discovered issuer");
      return jwksUri;
    } catch (err) {
      this.discoveryFailedAt = this.opts.now();
      this.lastError = errorText(err);
      this.opts.log.warn({ issuer, err: this.lastError }, "identity: issuer discovery failed");
      throw new TokenError("issuer_unreachable", `discovery of ${issuer} failed: ${this.lastError}`);
    }
  }

  /**
   * Fetches the JWKS unless the cooldown forbids it, sharing a fetch in flight. Throws TokenError when no fetch
   * happened (cooldown → unknown_key) or it failed (issuer_unreachable).
   */
  private async fetchOrExplain(
    alg: string,
    kid: string | undefined,
    why: "initial" | "unknown-kid",
  ): Promise<void> {
    let fetching = this.fetching;
    if (!fetching) {
      const now = this.opts.now();
      const since = this.lastAttemptAt === null ? Number.POSITIVE_INFINITY : now - this.lastAttemptAt;
      if (why === "initial" && since < this.opts.discoveryRetryMs) {
        // Never fetched successfully, and the last try failed moments ago: do not hammer a struggling IdP.
        throw new TokenError(
          "issuer_unreachable",
          `fetching the JWKS of ${this.config.issuer} failed ${seconds(since)} ago (${this.lastError}); retrying in ${seconds(this.opts.discoveryRetryMs - since)}`,
        );
      }
      if (why === "unknown-kid" && since < this.opts.cooldownMs) {
        throw new TokenError(
          "unknown_key",
          `${this.keyName(alg, kid)} is not in the JWKS of ${this.config.issuer} (last requested ${seconds(since)} ago; the next refetch is allowed in ${seconds(this.opts.cooldownMs - since)})`,
        );
      }
      fetching = this.startFetch(why);
    }
    try {
      await fetching;
    } catch (err) {
      const what =
        why === "initial"
          ? `fetching the JWKS of ${this.config.issuer} failed`
          : `${this.keyName(alg, kid)} is not in the cached JWKS of ${this.config.issuer} and refetching it failed`;
      throw new TokenError("issuer_unreachable", `${what}: ${errorText(err)}`);
    }
  }

  private startFetch(why: string): Promise<void> {
    this.lastAttemptAt = this.opts.now();
    const fetching = this.fetchJwks(why).finally(() => {
      this.fetching = null;
    });
    this.fetching = fetching;
    return fetching;
  }

  private refreshIfStale(): void {
    const now = this.opts.now();
    if (this.fetching || this.fetchedAt === null || now - this.fetchedAt < this.opts.maxAgeMs) return;
    if (this.lastAttemptAt !== null && now - this.lastAttemptAt < this.opts.cooldownMs) return;
    // Failures are logged by fetchJwks; the cached keys stay.
    this.startFetch("max-age").catch(() => {});
  }

  private async fetchJwks(why: string): Promise<void> {
    const uri = await this.ensureDiscovered();
    const { issuer } = this.config;
    try {
      const res = await fetch(uri, {
        headers: { accept: "application/jwk-set+json, application/json" },
        redirect: "error",
        signal: AbortSignal.timeout(this.opts.timeoutMs),
      });
      if (res.status !== 200) throw new Error(`HTTP ${res.status} from ${uri}`);
      const text = await res.text();
      if (text.length > MAX_JWKS_BYTES) throw new Error(`the JWKS at ${uri} is larger than 1 MiB`);
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch {
        throw new Error(`the JWKS at ${uri} is not JSON`);
      }
      const keys = (body as { keys?: unknown })?.keys;
      if (!Array.isArray(keys)) throw new Error(`the JWKS at ${uri} has no "keys" array`);
      const usable: JWK[] = [];
      for (const key of keys) {
        if (typeof key !== "object" || key === null || typeof key.kty !== "string") continue;
        // Private or secret material has no business in a JWKS; never verify with it.
        if ("d" in key || "k" in key || key.kty === "oct") {
          this.opts.log.warn(
            { issuer, kid: key.kid },
            "identity: ignoring a private or symmetric key in the JWKS",
          );
          continue;
        }
        usable.push(key as JWK);
      }
      this.keys = usable;
      this.imported = new WeakMap();
      this.fetchedAt = this.opts.now();
      this.lastError = null;
      this.opts.log.info({ issuer, why, kids: usable.map((k) => k.kid ?? null) }, "identity: fetched JWKS");
    } catch (err) {
      this.lastError = errorText(err);
      this.opts.log.warn(
        { issuer, why, err: this.lastError, cached_kids: this.keys.map((k) => k.kid ?? null) },
        "identity: JWKS fetch failed; keeping the cached keys",
      );
      throw err;
    } finally {
      this.fetches++;
    }
  }
}
