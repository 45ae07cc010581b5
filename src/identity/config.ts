// Issuer configuration: which identity providers pamgate trusts, and how their tokens map to the policy's
// `identity`. Validated once, when the verifier is built, so a bad configuration fails at startup with a
// message naming the field, never on the first token.
import { isLoopback } from "../util/net.js";

export interface IssuerConfig {
  /** The issuer identifier, exactly as in the tokens' `iss` and the discovery document. */
  issuer: string;
  /** Accepted `aud` values: the token must name at least one. */
  audience: string | string[];
  /**
   * The claim holding the user's groups (default "groups"). A dotted path such as "realm_access.roles" walks
   * into nested objects; a claim whose own name contains dots (e.g. "https://example.com/groups") is found
   * first under that exact name.
   */
  groupsClaim?: string;
  /** Allowed signature algorithms (default RS256, ES256, PS256, EdDSA). `none` and HS* are refused. */
  algorithms?: string[];
  /** Clock skew tolerated for `exp` and `nbf`, in seconds (default 30, at most 300). */
  leewaySeconds?: number;
  /** Accept an http:// issuer. Honoured only for loopback issuers (the development issuer). */
  allowInsecureHttp?: boolean;
}

/** An IssuerConfig with its defaults applied. */
export interface ResolvedIssuerConfig {
  issuer: string;
  audience: string[];
  groupsClaim: string;
  algorithms: string[];
  leewaySeconds: number;
  allowInsecureHttp: boolean;
}

export const DEFAULT_ALGORITHMS: readonly string[] = ["RS256", "ES256", "PS256", "EdDSA"];
export const DEFAULT_GROUPS_CLAIM = "groups";
export const DEFAULT_LEEWAY_SECONDS = 30;
const MAX_LEEWAY_SECONDS = 300;

/** Asymmetric JWS algorithms pamgate can verify with keys from a JWKS. */
export const SUPPORTED_ALGORITHMS: readonly string[] = [
  "RS256",
  "RS384",
  "RS512",
  "PS256",
  "PS384",
  "PS512",
  "ES256",
  "ES384",
  "ES512",
  "EdDSA",
  "Ed25519",
];

/** A configuration mistake, reported at startup. */
export class IssuerConfigError extends Error {
  override name = "IssuerConfigError";
}

/**
 * Checks that `url` may be fetched for this issuer: https, or http when allowInsecureHttp is set and the host is
 * loopback. Returns an error message, or null when it is fine.
 */
export function insecureUrlProblem(url: string, allowInsecureHttp: boolean): string | null {
  const parsed = URL.parse(url);
  if (!parsed) return `"${url}" is not a URL`;
  if (parsed.protocol === "https:") return null;
  if (parsed.protocol !== "http:") return `"${url}" must be an https URL`;
  if (!allowInsecureHttp)
    return `"${url}" is http: use https (allowInsecureHttp exists for a loopback dev issuer)`;
  if (!isLoopback(parsed.hostname))
    return `"${url}" is http on a non-loopback host: allowInsecureHttp is only honoured for loopback issuers`;
  return null;
}

export function resolveIssuerConfig(config: IssuerConfig): ResolvedIssuerConfig {
  const where = `issuer ${JSON.stringify(config?.issuer)}`;
  if (typeof config?.issuer !== "string" || config.issuer === "")
    throw new IssuerConfigError("issuer must be a non-empty string (the tokens' iss)");
  const allowInsecureHttp = config.allowInsecureHttp === true;
  const urlProblem = insecureUrlProblem(config.issuer, allowInsecureHttp);
  if (urlProblem) throw new IssuerConfigError(`${where}: ${urlProblem}`);

  const audience = Array.isArray(config.audience) ? config.audience : [config.audience];
  if (audience.length === 0 || audience.some((a) => typeof a !== "string" || a === ""))
    throw new IssuerConfigError(`${where}: audience must be a non-empty string or a list of them`);

  const groupsClaim = config.groupsClaim ?? DEFAULT_GROUPS_CLAIM;
  if (typeof groupsClaim !== "string" || groupsClaim === "" || groupsClaim.split(".").some((p) => p === ""))
    throw new IssuerConfigError(
      `${where}: groupsClaim must be a claim name or a dotted path like realm_access.roles`,
    );

  const algorithms = config.algorithms ?? [...DEFAULT_ALGORITHMS];
  if (!Array.isArray(algorithms) || algorithms.length === 0)
    throw new IssuerConfigError(`${where}: algorithms must be a non-empty list`);
  for (const alg of algorithms) {
    if (typeof alg !== "string") throw new IssuerConfigError(`${where}: algorithms must be strings`);
    if (alg.toLowerCase() === "none")
      throw new IssuerConfigError(`${where}: algorithm "none" (unsigned tokens) can never be allowed`);
    if (/^HS/i.test(alg))
      throw new IssuerConfigError(
        `${where}: ${alg} is a shared-secret algorithm; only asymmetric algorithms verified with the issuer's JWKS are allowed`,
      );
    if (!SUPPORTED_ALGORITHMS.includes(alg))
      throw new IssuerConfigError(
        `${where}: unsupported algorithm ${JSON.stringify(alg)} (supported: ${SUPPORTED_ALGORITHMS.join(", ")})`,
      );
  }

  const leewaySeconds = config.leewaySeconds ?? DEFAULT_LEEWAY_SECONDS;
  if (!Number.isFinite(leewaySeconds) || leewaySeconds < 0 || leewaySeconds > MAX_LEEWAY_SECONDS)
    throw new IssuerConfigError(`${where}: leewaySeconds must be between 0 and ${MAX_LEEWAY_SECONDS}`);

  return {
    issuer: config.issuer,
    audience: [...audience],
    groupsClaim,
    algorithms: [...algorithms],
    leewaySeconds,
    allowInsecureHttp,
  };
}
