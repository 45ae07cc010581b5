// A real OpenSSH sshd for tests: the installed /usr/sbin/sshd with a config, host key, TrustedUserCAKeys and
// AuthorizedKeysFile all in a fresh temp dir, on a random loopback port — never the system's sshd, its
// config or anyone's ~/.ssh.
//
// The target account is the user running the tests (root in CI). sshd only switches users when it runs as
// root; unprivileged, it can still log in as the invoking user, which is all the tests need.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";

const SSHD = "/usr/sbin/sshd";
const SSH_KEYGEN = "/usr/bin/ssh-keygen";
const SFTP_SERVER = "/usr/lib/openssh/sftp-server";

export interface SshdServer {
  host: string;
  port: number;
  /** The target account: the user running the tests (root in CI). */
  user: string;
  /** "ssh-ed25519 AAAA…" (no comment) — the pin for UpstreamTarget.hostKeys. */
  hostKeyLine: string;
  /** "SHA256:…" as ssh-keygen -l prints it. */
  hostKeyFingerprint: string;
  dir: string;
  /** sshd's log lines so far (LogLevel VERBOSE, -E logfile) */
  log(): string[];
  /** waits until a log line matches */
  waitForLog(re: RegExp, timeoutMs?: number): Promise<string>;
  stop(): Promise<void>;
}

export interface SshdOptions {
  /** CA public key lines for TrustedUserCAKeys. */
  trustedUserCaKeys?: string[];
  /** Public key lines for the temp AuthorizedKeysFile. */
  authorizedKeys?: string[];
  /**
   * Extra sshd_config lines. They go before the defaults, because the first occurrence of a keyword wins and
   * so they can override them; from the first `Match` line on they go at the end, where Match blocks belong.
   */
  extraConfig?: string[];
}

export function sshdAvailable(): boolean {
  return existsSync(SSHD) && existsSync(SSH_KEYGEN);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function startSshd(options: SshdOptions = {}): Promise<SshdServer> {
  if (!sshdAvailable()) throw new Error(`${SSHD} or ${SSH_KEYGEN} not found: install openssh-server`);
  const isRoot = process.getuid?.() === 0;
  // sshd refuses to start without its privilege separation directory (normally made by the init script).
  if (isRoot && !existsSync("/run/sshd")) mkdirSync("/run/sshd", { mode: 0o755, recursive: true });

  const dir = mkdtempSync(join(tmpdir(), "pamgate-sshd-"));
  const hostKey = join(dir, "ssh_host_ed25519_key");
  execFileSync(SSH_KEYGEN, ["-q", "-t", "ed25519", "-N", "", "-C", "pamgate-test-host", "-f", hostKey], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  const [type, b64] = readFileSync(`${hostKey}.pub`, "utf8").trim().split(/\s+/);
  if (!type || !b64) throw new Error("ssh-keygen wrote an unreadable host public key");
  const hostKeyLine = `${type} ${b64}`;
  const hostKeyFingerprint = `SHA256:${createHash("sha256")
    .update(Buffer.from(b64, "base64"))
    .digest("base64")
    .replace(/=+$/, "")}`;

  const caFile = join(dir, "trusted_user_ca_keys");
  writeFileSync(caFile, (options.trustedUserCaKeys ?? []).map((l) => `${l}\n`).join(""));
  const authorizedKeysFile = join(dir, "authorized_keys");
  writeFileSync(authorizedKeysFile, (options.authorizedKeys ?? []).map((l) => `${l}\n`).join(""));
  const logFile = join(dir, "sshd.log");
  const configFile = join(dir, "sshd_config");

  const readLog = (): string[] => {
    try {
      // sshd ends every line it writes to the -E log file with "\r\n".
      return readFileSync(logFile, "utf8").split(/\r?\n/).filter(Boolean);
    } catch {
      return [];
    }
  };

  // A port taken between freePort() and sshd's bind makes sshd exit; try a few ports before giving up.
  const extra = options.extraConfig ?? [];
  const firstMatch = extra.findIndex((l) => /^\s*Match\s/i.test(l));
  const extraFirst = firstMatch === -1 ? extra : extra.slice(0, firstMatch);
  const extraLast = firstMatch === -1 ? [] : extra.slice(firstMatch);
  let lastError = "";
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const config = [
      ...extraFirst,
      `Port ${port}`,
      "ListenAddress 127.0.0.1",
      `HostKey ${hostKey}`,
      "PidFile none",
      "UsePAM no",
      "PasswordAuthentication no",
      "KbdInteractiveAuthentication no",
      "PubkeyAuthentication yes",
      `TrustedUserCAKeys ${caFile}`,
      `AuthorizedKeysFile ${authorizedKeysFile}`,
      // The temp dir lives under /tmp (world-writable), which StrictModes would reject.
      "StrictModes no",
      "PermitRootLogin prohibit-password",
      "LogLevel VERBOSE",
      `Subsystem sftp ${SFTP_SERVER}`,
      "AllowTcpForwarding yes",
      "X11Forwarding no",
      "UseDNS no",
      "PrintMotd no",
      "PrintLastLog no",
      ...extraLast,
    ];
    writeFileSync(configFile, `${config.join("\n")}\n`);
    try {
      execFileSync(SSHD, ["-t", "-f", configFile], { stdio: ["ignore", "ignore", "pipe"] });
    } catch (err) {
      const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim() ?? String(err);
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`sshd -t rejected the test config: ${stderr}`);
    }

    rmSync(logFile, { force: true });
    // sshd re-executes itself, so it must be started by absolute path.
    const proc: ChildProcess = spawn(SSHD, ["-D", "-f", configFile, "-E", logFile], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    proc.stderr?.on("data", (c: Buffer) => {
      stderr = (stderr + c.toString()).slice(-4000);
    });
    const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));

    const waitForLog = async (re: RegExp, timeoutMs = 5000): Promise<string> => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const hit = readLog().find((l) => re.test(l));
        if (hit !== undefined) return hit;
        if (Date.now() > deadline)
          throw new Error(`no sshd log line matched ${re} within ${timeoutMs} ms:\n${readLog().join("\n")}`);
        await sleep(25);
      }
    };

    // sshd logs this right after listen(), so the port accepts connections from here on. Waiting for the
    // line rather than probing the port keeps probe connections out of the log the tests read.
    const deadline = Date.now() + 10_000;
    let listening = false;
    while (Date.now() < deadline && proc.exitCode === null && proc.signalCode === null) {
      if (readLog().some((l) => l.includes(`Server listening on 127.0.0.1 port ${port}`))) {
        listening = true;
        break;
      }
      await sleep(25);
    }
    if (!listening) {
      if (proc.exitCode === null) proc.kill("SIGKILL");
      await exited;
      lastError = [...readLog(), stderr].join("\n").trim();
      if (/Address already in use/.test(lastError)) continue;
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`sshd did not start listening on port ${port}:\n${lastError}`);
    }

    return {
      host: "127.0.0.1",
      port,
      user: userInfo().username,
      hostKeyLine,
      hostKeyFingerprint,
      dir,
      log: readLog,
      waitForLog,
      async stop() {
        if (proc.exitCode === null && proc.signalCode === null) {
          // SIGTERM stops the listener; per-connection children end with their sessions.
          proc.kill("SIGTERM");
          const timer = setTimeout(() => proc.kill("SIGKILL"), 5000);
          await exited;
          clearTimeout(timer);
        }
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }
  rmSync(dir, { recursive: true, force: true });
  throw new Error(`sshd could not bind a free port:\n${lastError}`);
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
    srv.on("error", reject);
  });
}
