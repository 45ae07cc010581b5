// The one loopback check: the TLS-for-token rule (a client's address), the development issuer (its bind address
// and issuer URL) and loopback-only options use it.
import { isIP } from "node:net";

/**
 * Whether a host name or address is on the loopback interface: "localhost", 127.0.0.0/8, ::1 (also written out
 * in full), and IPv4-mapped IPv6 addresses of 127.0.0.0/8 (how Node reports an IPv4 peer on a dual-stack
 * socket). IPv6 may be bracketed, as in URL#hostname.
 */
export function isLoopback(hostOrAddress: string | undefined): boolean {
  if (!hostOrAddress) return false;
  const host = hostOrAddress.replace(/^\[(.*)\]$/, "$1").toLowerCase();
  if (host === "localhost") return true;
  const family = isIP(host);
  if (family === 4) return host.startsWith("127.");
  if (family !== 6) return false;
  if (host === "::1" || host === "0:0:0:0:0:0:0:1") return true;
  const mapped = /^(?:::|0:0:0:0:0:)ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(host)?.[1];
  return mapped !== undefined && isIP(mapped) === 4 && mapped.startsWith("127.");
}
