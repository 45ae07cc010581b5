// One configured SSH resource as the listener keeps it: where the target is, its pinned host keys, and how pamgate
// logs in there — a fresh certificate per decided channel (the default), or the resource's own key as fallback.
//
// A certificate is issued for exactly one decision: its key id names the decision, the session and the original
// requester (so sshd's own log says who asked, "Accepted publickey … ID pamgate decision=… requester=…"), it is
// valid for listeners.ssh.certificate_ttl_s (≤ 5 minutes), carries only the extensions that channel needs, and an
// exec's certificate has force-command set to the approved command line, so the target runs that and nothing else.
import type { Client } from "ssh2";
import type { Identity } from "../../decision/contract.js";
import type { AdapterResource } from "../adapter.js";
import type { CertificateAuthority } from "./certificate.js";
import type { SshUpstreamConfig } from "./config.js";
import { connectUpstream, type UpstreamCredential, type UpstreamTarget } from "./upstream.js";

/** What one upstream connection is for: the decision that allowed it and what the certificate permits. */
export interface UpstreamPurpose {
  decisionId: string;
  sessionId: string;
  identity: Identity;
  /** sshd runs this instead of what the client asks (exec: the approved command line; sftp: internal-sftp). */
  forceCommand?: string;
  /** e.g. ["permit-pty"]; nothing is permitted unless listed. */
  extensions?: string[];
}

export class SshTarget {
  readonly target: UpstreamTarget;
  readonly mode: "certificate" | "key";

  constructor(
    readonly entry: AdapterResource<SshUpstreamConfig>,
    private readonly ca: CertificateAuthority | null,
    private readonly certificateTtlS: number,
  ) {
    const u = entry.upstream;
    this.target = { host: u.host, port: u.port ?? 22, user: u.user, hostKeys: u.host_keys };
    this.mode = u.auth ?? (ca ? "certificate" : "key");
    const name = entry.resource.name;
    if (this.mode === "certificate" && !ca)
      throw new Error(
        `resources "${name}": upstream.auth is certificate but listeners.ssh.ca_key_file is not set`,
      );
    if (this.mode === "key" && !entry.secret)
      throw new Error(`resources "${name}": upstream.auth is key but credentials.key_file is not set`);
  }

  get name(): string {
    return this.entry.resource.name;
  }

  /** Connects to the target for one decided channel; rejects with an UpstreamError. */
  connect(purpose: UpstreamPurpose, signal?: AbortSignal): Promise<Client> {
    return connectUpstream(this.target, this.credential(purpose), { signal, readyTimeoutMs: 15_000 });
  }

  private credential(purpose: UpstreamPurpose): UpstreamCredential {
    if (this.mode === "key" || !this.ca) return { privateKey: this.entry.secret };
    const criticalOptions: Record<string, string> = {};
    if (purpose.forceCommand !== undefined) criticalOptions["force-command"] = purpose.forceCommand;
    return {
      certificate: this.ca.issue({
        keyId: keyId(purpose),
        principals: [this.target.user],
        validSeconds: this.certificateTtlS,
        criticalOptions,
        extensions: purpose.extensions ?? [],
      }),
    };
  }
}

/** The certificate's key id: sshd logs it on every login, so it names who asked and which decision let them. */
export function keyId(p: UpstreamPurpose): string {
  const requester = p.identity.actors[0]?.sub ?? p.identity.sub;
  const chain = p.identity.actors.map((a) => a.sub).join(">");
  const parts = [
    `pamgate decision=${p.decisionId}`,
    `session=${p.sessionId}`,
    `requester=${clean(requester)}`,
  ];
  if (p.identity.actors.length > 1) parts.push(`chain=${clean(chain)}`);
  return parts.join(" ");
}

/** Key ids end up in sshd's log lines: no spaces or control characters from a token's claims. */
function clean(s: string): string {
  return s.replace(/[\s\p{Cc}"]+/gu, "_").slice(0, 200);
}
