// A gateway with an SSH listener in front of a real OpenSSH sshd (test/helpers/sshd.ts) that trusts the gateway's
// certificate authority, and the real OpenSSH clients (ssh, scp, sftp) to drive it. The token reaches ssh the way
// an agent would hand it over without a terminal: SSH_ASKPASS with SSH_ASKPASS_REQUIRE=force, answering the
// keyboard-interactive prompt (OpenSSH reads at most 1023 characters there; the dev issuer's tokens are ~800).
import { execFileSync } from "node:child_process";
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { GatewayConfig } from "../../src/config/schema.js";
import type { GatewayExtras } from "../../src/gateway/gateway.js";
import { CertificateAuthority } from "../../src/proxy/ssh/certificate.js";
import { type RunResult, run, startTestGateway, type TestGateway } from "./gateway.js";
import { type SshdServer, startSshd } from "./sshd.js";

export interface SshTestGateway extends TestGateway {
  sshd: SshdServer;
  sshPort: number;
  /** The resource name of the sshd target ("web-1"); "archive" is the same host, labelled download-only. */
  resource: string;
  /** The `user@resource` login for a resource. */
  login(resource?: string): string;
  /** Runs `ssh` through the gateway with the token; extra options go before the destination. */
  ssh(
    token: string,
    command: string[],
    opts?: { resource?: string; options?: string[]; input?: string },
  ): Promise<RunResult>;
  /** Runs scp or sftp through the gateway (`args` as the program takes them; the host is "gw"). */
  client(program: "scp" | "sftp", token: string, args: string[], input?: string): Promise<RunResult>;
  /** Options that point an OpenSSH client at the gateway (known_hosts, port, token prompt). */
  clientOptions(): string[];
  env(token: string): NodeJS.ProcessEnv;
}

export async function startSshTestGateway(
  overrides: (base: GatewayConfig, sshd: SshdServer) => Partial<GatewayConfig> = () => ({}),
  sshdOptions: { extraConfig?: string[] } = {},
  extras: GatewayExtras = {},
): Promise<SshTestGateway> {
  const { ca, privateKeyPem } = CertificateAuthority.generate("pamgate-test-ca");
  const sshd = await startSshd({ trustedUserCaKeys: [ca.publicKeyLine()], ...sshdOptions });
  const keys = join(sshd.dir, "gateway");
  mkdirSync(keys, { recursive: true });
  const caFile = join(keys, "ca_key");
  writeFileSync(caFile, privateKeyPem, { mode: 0o600 });
  const hostKeyFile = join(keys, "host_key");
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "pamgate-test", "-f", hostKeyFile]);
  const hostKeyLine = readFileSync(`${hostKeyFile}.pub`, "utf8").trim().split(" ").slice(0, 2).join(" ");
  const askpass = join(keys, "askpass");
  writeFileSync(askpass, '#!/bin/sh\nprintf "%s\\n" "$PAMGATE_TOKEN"\n');
  chmodSync(askpass, 0o755);

  const target = { host: sshd.host, port: sshd.port, user: sshd.user, host_keys: [sshd.hostKeyLine] };
  const tg = await startTestGateway((_db, base) => {
    const ssh: GatewayConfig = {
      ...base,
      listeners: {
        ...base.listeners,
        ssh: {
          host: "127.0.0.1",
          port: 0,
          host_key_file: hostKeyFile,
          ca_key_file: caFile,
          certificate_ttl_s: 60,
        },
      },
      resources: [
        ...base.resources,
        { name: "web-1", kind: "ssh", labels: { env: "staging" }, upstream: target },
        {
          name: "archive",
          kind: "ssh",
          labels: { env: "staging", transfer: "download-only" },
          upstream: target,
        },
      ],
    };
    return { ...ssh, ...overrides(ssh, sshd) };
  }, extras);
  const sshPort = tg.gw.listeners.ssh?.port as number;
  const knownHosts = join(keys, "known_hosts");
  writeFileSync(knownHosts, `[127.0.0.1]:${sshPort} ${hostKeyLine}\n`);
  const clientOptions = () => [
    "-F",
    "/dev/null",
    "-o",
    `UserKnownHostsFile=${knownHosts}`,
    "-o",
    "StrictHostKeyChecking=yes",
    "-o",
    "PubkeyAuthentication=no",
    "-o",
    "PreferredAuthentications=keyboard-interactive",
    "-o",
    "NumberOfPasswordPrompts=1",
  ];
  const env = (token: string): NodeJS.ProcessEnv => ({
    ...process.env,
    PAMGATE_TOKEN: token,
    SSH_ASKPASS: askpass,
    SSH_ASKPASS_REQUIRE: "force",
    DISPLAY: ":0",
  });
  const login = (resource = "web-1") => `${sshd.user}@${resource}`;
  return {
    ...tg,
    sshd,
    sshPort,
    resource: "web-1",
    login,
    clientOptions,
    env,
    ssh(token, command, opts = {}) {
      return run(
        "ssh",
        [
          ...clientOptions(),
          "-p",
          String(sshPort),
          ...(opts.options ?? []),
          "-l",
          login(opts.resource),
          "127.0.0.1",
          "--",
          ...command,
        ],
        opts.input,
        env(token),
      );
    },
    client(program, token, args, input) {
      const port = program === "scp" ? "-P" : "-P";
      return run(program, [...clientOptions(), port, String(sshPort), ...args], input, env(token));
    },
    async stop() {
      await tg.stop();
      await sshd.stop();
    },
  };
}
