// The demo's SSH target: a loopback sshd (OpenSSH, as the tests use it) that trusts a certificate authority made
// for the demo, the gateway's host key, and the listener and resource configuration for them — plus the ssh
// commands `npm start` prints. The token goes to ssh through SSH_ASKPASS, so no prompt is needed.
import { execFileSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { GatewayConfig } from "../config/schema.js";
import { CertificateAuthority } from "../proxy/ssh/certificate.js";
import { type SshdServer, sshdAvailable, startSshd } from "./sshd.js";

export interface DemoSshTarget {
  listener: NonNullable<GatewayConfig["listeners"]["ssh"]>;
  resources: GatewayConfig["resources"];
  tryCommands(gatewayPort: number): string[];
  stop(): Promise<void>;
}

export async function startDemoSshTarget(dataDir: string, port: number): Promise<DemoSshTarget> {
  if (!sshdAvailable()) throw new Error("OpenSSH sshd is not installed");
  const dir = join(dataDir, "ssh");
  mkdirSync(dir, { recursive: true });
  const caFile = join(dir, "ca_key");
  const hostKeyFile = join(dir, "host_key");
  // Kept across restarts, so known_hosts and the target's trust stay valid.
  if (!existsSync(caFile))
    writeFileSync(caFile, CertificateAuthority.generate("pamgate-demo-ca").privateKeyPem, { mode: 0o600 });
  if (!existsSync(hostKeyFile))
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "pamgate-demo", "-f", hostKeyFile]);
  const ca = CertificateAuthority.fromPrivateKey(readFileSync(caFile));
  const sshd: SshdServer = await startSshd({ trustedUserCaKeys: [ca.publicKeyLine()] });
  const askpass = join(dir, "askpass");
  writeFileSync(askpass, '#!/bin/sh\nprintf "%s\\n" "$PAMGATE_TOKEN"\n');
  chmodSync(askpass, 0o755);
  const hostKey = readFileSync(`${hostKeyFile}.pub`, "utf8").trim().split(" ").slice(0, 2).join(" ");
  const upstream = { host: sshd.host, port: sshd.port, user: sshd.user, host_keys: [sshd.hostKeyLine] };
  return {
    listener: { host: "127.0.0.1", port, host_key_file: hostKeyFile, ca_key_file: caFile },
    resources: [
      { name: "web-1", kind: "ssh", labels: { env: "staging" }, upstream },
      { name: "archive", kind: "ssh", labels: { env: "staging", transfer: "download-only" }, upstream },
    ],
    tryCommands(gatewayPort) {
      const knownHosts = join(dir, "known_hosts");
      writeFileSync(knownHosts, `[127.0.0.1]:${gatewayPort} ${hostKey}\n`);
      const ssh = (who: string, rest: string) =>
        `  PAMGATE_TOKEN="$${who}" SSH_ASKPASS=${askpass} SSH_ASKPASS_REQUIRE=force ssh -o UserKnownHostsFile=${knownHosts} -p ${gatewayPort} ${sshd.user}@web-1@127.0.0.1 ${rest}`;
      return [
        `SSH gateway 127.0.0.1:${gatewayPort} → a loopback sshd (${sshd.host}:${sshd.port}) that trusts only pamgate's certificates:`,
        `${ssh("ALICE", "'uptime; id -un'")}            # allow`,
        `${ssh("ALICE", "'ls /tmp && rm -rf /'")}       # block: destructive (exit 126)`,
        `${ssh("ALICE", "'sudo -n true'")}              # approve: waits for an sre (bob)`,
        `${ssh("ALICE", "")}                            # an interactive shell, recorded (asciicast)`,
        `${ssh("CIBOT", "")}                            # block: machines get exec only`,
        `  sshd's own log names the requester: grep 'Accepted publickey' ${join(sshd.dir, "sshd.log")}`,
      ];
    },
    stop: () => sshd.stop(),
  };
}
