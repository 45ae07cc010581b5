// Loopback checks, in one place: the TLS-for-token rule, development-only listeners and issuers use them.
/** Whether a peer address (as Node reports it: IPv4, IPv6 or IPv4-mapped IPv6) is on the loopback interface. */
export function isLoopbackAddress(addr: string | undefined): boolean {
  if (!addr) return false;
  const a = addr.toLowerCase();
  return a.startsWith("127.") || a === "::1" || a.startsWith("::ffff:127.");
}
