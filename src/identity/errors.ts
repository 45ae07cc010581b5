// Why a token was refused: one error per token, with a stable code naming the check that failed. The code is
// the `reason` label of pamgate_token_rejections_total and what clients and logs key on; the message is one
// line meant for the person holding the token. Neither ever contains the token.

export const TOKEN_ERROR_CODES = [
  /** Not a compact JWS/JWT: wrong number of segments, bad base64url or JSON, a missing or mistyped claim. */
  "malformed",
  /** `exp` is in the past (beyond the leeway). */
  "expired",
  /** `nbf` is in the future (beyond the leeway). */
  "not_yet_valid",
  /** `aud` names none of the configured audiences. */
  "bad_audience",
  /** `iss` is not a configured issuer. */
  "unknown_issuer",
  /** The signing key (`kid`) is not in the issuer's JWKS, even after refetching it (or within the refetch cooldown). */
  "unknown_key",
  /** A key was found but the signature does not verify: tampered or forged token. */
  "bad_signature",
  /** The header's `alg` is `none`, HS*, or not on the issuer's allow-list. */
  "alg_not_allowed",
  /** The RFC 8693 `act` chain is nested deeper than allowed. */
  "delegation_too_deep",
  /** The issuer's discovery document or JWKS could not be fetched when they were needed. */
  "issuer_unreachable",
  /** A bug or an unexpected failure inside verification (fails closed; logged with details). */
  "internal_error",
] as const;

export type TokenErrorCode = (typeof TOKEN_ERROR_CODES)[number];

/** A refused token. `code` is stable; `message` is one human-readable line without the token. */
export class TokenError extends Error {
  override name = "TokenError";
  constructor(
    readonly code: TokenErrorCode,
    message: string,
  ) {
    super(message);
    // A refused token is the caller's problem, not a bug: however this error ends up printed or logged
    // (console.error, pino's err serializer, an unhandled rejection), it is one line without a stack.
    Object.defineProperty(this, "stack", {
      value: `TokenError [${code}]: ${message}`,
      writable: true,
      configurable: true,
    });
  }

  /** "bad_audience: token audience "other" is not one of "pamgate"" */
  override toString(): string {
    return `${this.code}: ${this.message}`;
  }

  /** What an API response or a log line carries: never the stack. */
  toJSON(): { code: TokenErrorCode; message: string } {
    return { code: this.code, message: this.message };
  }
}
