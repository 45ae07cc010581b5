// One way to turn anything thrown into the one-line text that error messages and logs show.
/** The message of an Error (or the value itself as text), without a stack. */
export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
