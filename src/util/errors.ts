// One way to turn anything thrown into the one-line text that error messages and logs show.

/**
 * The message of an Error (or the value itself as text), without a stack. A `cause` the message does not already
 * mention is added in parentheses — by its errno code when it has one — so `fetch failed` reads
 * `fetch failed (ECONNREFUSED)`.
 */
export function errorText(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = (err as { cause?: unknown }).cause;
  const causeText = cause instanceof Error ? ((cause as { code?: string }).code ?? cause.message) : undefined;
  return causeText && !err.message.includes(causeText) ? `${err.message} (${causeText})` : err.message;
}
