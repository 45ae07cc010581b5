// The one error the gateway acts on: the audit trail cannot make a record durable right now, so the command
// it was for must not be forwarded. `reason` is a readable sentence for the client and the logs.

export class AuditUnavailableError extends Error {
  override name = "AuditUnavailableError";

  constructor(
    /** Why, e.g. "audit spool full: 1048576 bytes of 1048576" or "audit spool write failed: ENOSPC …". */
    readonly reason: string,
    /** The errno-style code when the cause was a file system error (ENOSPC, EACCES, …). */
    readonly code?: string,
  ) {
    super(reason);
  }
}

/** Node's file system errors carry an errno code; anything else has none. */
export function errnoCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}
