// Identity: access tokens from trusted issuers → the policy's `identity`. See docs/identity.md.
// The development issuer (./dev-issuer.js) is deliberately not re-exported: import it by name where a
// development setup wants it.
export { claimAt, DEFAULT_MAX_DELEGATION_DEPTH, groupsFromClaims, identityFromClaims } from "./claims.js";
export {
  DEFAULT_ALGORITHMS,
  DEFAULT_GROUPS_CLAIM,
  DEFAULT_LEEWAY_SECONDS,
  type IssuerConfig,
  IssuerConfigError,
  type ResolvedIssuerConfig,
  resolveIssuerConfig,
} from "./config.js";
export { TOKEN_ERROR_CODES, TokenError, type TokenErrorCode } from "./errors.js";
export type { IssuerKeysStatus } from "./issuer-keys.js";
export {
  MAX_TOKEN_BYTES,
  TokenVerifier,
  type TokenVerifierOptions,
  tokenFingerprint,
  type VerifiedToken,
} from "./verifier.js";
