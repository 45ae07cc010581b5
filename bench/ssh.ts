// npm run bench:ssh — the SSH gateway against OpenSSH's sshd directly, in one run, with the real OpenSSH clients:
//   (1) scp of a random file (BENCH_SSH_MB, default 100) to the target and back: default scp (which in OpenSSH
//       9 speaks SFTP, relayed packet by packet by pamgate) and `scp -O` (the legacy protocol: an exec of
//       `scp -t`/`scp -f`, decided like any exec, relayed with byte counts recorded); 3 runs each, alternating direct and pamgate,
//       the median reported;
//   (2) `ssh … true` round trips (BENCH_SSH_EXECS, default 30 each, alternating), p50/p99;
//   (3) new sessions per second: BENCH_SSH_CONCURRENCY (8) loops of `ssh … true` for BENCH_SSH_SECONDS (10);
//   (4) execs on one persistent connection (ssh2's client, BENCH_SSH_EXECS sequential `true` channels): the
//       per-command cost without the client's own handshake, which (2) and (3) include.
// Each is measured three ways in the same run: direct to sshd; through a bare ssh2 relay (bench/ssh-relay.ts: the
// same ssh2 server/client and relay code as pamgate, no token, policy, certificate or audit — the physical floor
// of a second SSH hop in Node); and through pamgate.
// The gateway runs in this process (test/helpers/ssh-gateway.ts: PostgreSQL, the dev OIDC issuer, the example
// policy bundle, the SSH listener with its audit trail); direct is the same client with a key authorized on the
// sshd. BENCH_SSH_PHASES (default "scp,exec,sessions") picks phases, e.g. to profile only the transfers.
// Goal: scp through pamgate ≥ 0.9 × direct. Prints one JSON line; progress goes to stderr; never asserts.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { appendFile, mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import ssh2 from "ssh2";
import { createLogger } from "../src/util/log.js";
import { type SshTestGateway, startSshTestGateway } from "../test/helpers/ssh-gateway.js";
import { type BareRelay, startBareRelay } from "./ssh-relay.js";

const MB = Number(process.env.BENCH_SSH_MB ?? 100);
const RUNS = Number(process.env.BENCH_SSH_RUNS ?? 3);
const EXECS = Number(process.env.BENCH_SSH_EXECS ?? 30);
const CONCURRENCY = Number(process.env.BENCH_SSH_CONCURRENCY ?? 8);
const SECONDS = Number(process.env.BENCH_SSH_SECONDS ?? 10);
const PHASES = new Set((process.env.BENCH_SSH_PHASES ?? "scp,exec,sessions,persistent").split(","));
const TRANSFERS = new Set(
  (process.env.BENCH_SSH_TRANSFERS ?? "upload,upload_legacy_scp,download,download_legacy_scp").split(","),
);
const SLOW_S = Number(process.env.BENCH_SSH_SLOW_S ?? 20);
/** The OpenSSH clients' LogLevel (ERROR; VERBOSE or DEBUG to see why a connection failed). */
const CLIENT_LOG_LEVEL = process.env.BENCH_SSH_LOGLEVEL ?? "ERROR";

const log = (msg: string) => process.stderr.write(`bench:ssh ${msg}\n`);

interface Proc {
  code: number | null;
  stderr: string;
  ms: number;
}

/** Spawns a client asynchronously (the gateway shares this event loop); stdout is discarded. */
function exec(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<Proc> {
  return new Promise((resolve) => {
    const start = performance.now();
    const child = spawn(cmd, args, { env, stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (c: Buffer) => {
      stderr = (stderr + c.toString()).slice(-4000);
    });
    child.on("error", (err) => {
      stderr += String(err);
    });
    child.on("close", (code) => resolve({ code, stderr: stderr.trim(), ms: performance.now() - start }));
  });
}

function keygen(file: string): Promise<Proc> {
  return exec(
    "ssh-keygen",
    ["-q", "-t", "ed25519", "-N", "", "-C", "pamgate-bench", "-f", file],
    process.env,
  );
}

/** Busy and total jiffies of all cores so far (/proc/stat), to tell a saturated machine from a slow path. */
async function machineCpu(): Promise<{ busy: number; total: number }> {
  const line = (await readFile("/proc/stat", "utf8").catch(() => "cpu 0")).split("\n")[0] ?? "";
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  const idle = (f[3] ?? 0) + (f[4] ?? 0);
  return { busy: total - idle, total };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? ((s[(s.length - 1) >> 1] as number) + (s[s.length >> 1] as number)) / 2 : 0;
};

/** Nearest-rank percentile. */
function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.max(0, Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1))] ?? 0;
}

const r1 = (x: number) => +x.toFixed(1);
const r3 = (x: number) => +x.toFixed(3);

/** The ways to reach the target: the program's options, its destination login and the environment. */
type PathName = "direct" | "relay" | "pamgate";
const PATHS: readonly PathName[] = ["direct", "relay", "pamgate"];
/** Run i's order of the paths: rotated, so none always goes first (a warmer page cache, a cooler CPU). */
const rotation = (i: number): PathName[] => PATHS.map((_, k) => PATHS[(i + k) % PATHS.length] as PathName);

interface Path {
  name: PathName;
  /** Options common to ssh and scp (no port: ssh takes -p, scp -P). */
  options: string[];
  port: number;
  /** "user@host" as ssh -l / scp's destination wants it (pamgate: "root@web-1" at 127.0.0.1). */
  login: string;
  env: () => NodeJS.ProcessEnv;
  /** How ssh2's client logs in on this path, for the persistent-connection phase. */
  ssh2Auth: () => Partial<ssh2.ConnectConfig>;
}

async function paths(
  g: SshTestGateway,
  work: string,
): Promise<{ paths: Record<PathName, Path>; relay: BareRelay }> {
  const key = join(work, "id_ed25519");
  const k = await keygen(key);
  if (k.code !== 0) throw new Error(`ssh-keygen failed: ${k.stderr}`);
  // The sshd helper's AuthorizedKeysFile is <dir>/authorized_keys, read at every login.
  await appendFile(join(g.sshd.dir, "authorized_keys"), `${(await readFile(`${key}.pub`, "utf8")).trim()}\n`);
  const knownHosts = join(work, "known_hosts_direct");
  await writeFile(knownHosts, `[${g.sshd.host}]:${g.sshd.port} ${g.sshd.hostKeyLine}\n`);
  const common = ["-o", "Compression=no"];
  let token = await g.tokenFor("alice");
  let tokenAt = Date.now();
  const relayHostKey = join(work, "relay_host_key");
  const rk = await keygen(relayHostKey);
  if (rk.code !== 0) throw new Error(`ssh-keygen failed: ${rk.stderr}`);
  const relay = await startBareRelay(relayHostKey, {
    host: g.sshd.host,
    port: g.sshd.port,
    user: g.sshd.user,
    privateKeyFile: key,
  });
  const relayKnownHosts = join(work, "known_hosts_relay");
  const relayHostLine = (await readFile(`${relayHostKey}.pub`, "utf8"))
    .trim()
    .split(" ")
    .slice(0, 2)
    .join(" ");
  await writeFile(relayKnownHosts, `[127.0.0.1]:${relay.port} ${relayHostLine}\n`);
  const privateKey = await readFile(key);
  const paths: Record<PathName, Path> = {
    direct: {
      name: "direct",
      options: [
        "-F",
        "/dev/null",
        "-o",
        `UserKnownHostsFile=${knownHosts}`,
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-i",
        key,
        "-o",
        "PreferredAuthentications=publickey",
        "-o",
        "BatchMode=yes",
        "-o",
        `LogLevel=${CLIENT_LOG_LEVEL}`,
        ...common,
      ],
      port: g.sshd.port,
      login: `${g.sshd.user}@${g.sshd.host}`,
      env: () => process.env,
      ssh2Auth: () => ({ host: g.sshd.host, port: g.sshd.port, username: g.sshd.user, privateKey }),
    },
    relay: {
      name: "relay",
      options: [
        "-F",
        "/dev/null",
        "-o",
        `UserKnownHostsFile=${relayKnownHosts}`,
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "PubkeyAuthentication=no",
        "-o",
        "PreferredAuthentications=keyboard-interactive",
        "-o",
        `LogLevel=${CLIENT_LOG_LEVEL}`,
        ...common,
      ],
      port: relay.port,
      login: `${g.sshd.user}@127.0.0.1`,
      // The askpass answers anything; the bare relay accepts any answer.
      env: () => g.env("anything"),
      ssh2Auth: () => ({ host: "127.0.0.1", port: relay.port, username: g.sshd.user, password: "anything" }),
    },
    pamgate: {
      name: "pamgate",
      options: [
        ...g.clientOptions().map((o) => (o.startsWith("LogLevel=") ? `LogLevel=${CLIENT_LOG_LEVEL}` : o)),
        ...common,
      ],
      port: g.sshPort,
      login: `${g.login("web-1")}@127.0.0.1`,
      env: () => {
        // The dev issuer's tokens live 10 minutes; a fresh one every 5 keeps a long run valid.
        if (Date.now() - tokenAt > 300_000) {
          tokenAt = Date.now();
          void g.tokenFor("alice").then((t) => {
            token = t;
          });
        }
        return g.env(token);
      },
      ssh2Auth: () => ({
        host: "127.0.0.1",
        port: g.sshPort,
        username: g.login("web-1"),
        tryKeyboard: true,
        password: token,
      }),
    },
  };
  return { paths, relay };
}

interface Transfer {
  label: string;
  direction: "upload" | "download";
  legacy: boolean;
}

async function scpPhase(p: Record<PathName, Path>, work: string, note: (n: string) => void) {
  const src = join(work, "random.bin");
  const remote = join(work, "remote");
  const local = join(work, "local");
  await mkdir(remote);
  await mkdir(local);
  log(`writing ${MB} MB of random data`);
  await new Promise<void>((resolve, reject) => {
    const out = createWriteStream(src);
    out.on("error", reject);
    let left = MB;
    const more = () => {
      while (left > 0) {
        left--;
        if (!out.write(randomBytes(1 << 20))) return void out.once("drain", more);
      }
      out.end(resolve);
    };
    more();
  });
  const bytes = MB * 1024 * 1024;

  const scp = async (path: Path, t: Transfer, i: number) => {
    const name = `${t.label}-${path.name}-${i}.bin`;
    const dest = t.direction === "upload" ? join(remote, name) : join(local, name);
    const args = [
      ...path.options,
      "-P",
      String(path.port),
      ...(t.legacy ? ["-O"] : []),
      ...(t.direction === "upload" ? [src, `${path.login}:${dest}`] : [`${path.login}:${src}`, dest]),
    ];
    const cpu = process.cpuUsage();
    const machine = await machineCpu();
    const r = await exec("scp", args, path.env());
    const used = process.cpuUsage(cpu);
    const m = await machineCpu();
    const busy = m.total > machine.total ? (m.busy - machine.busy) / (m.total - machine.total) : 0;
    const size = await stat(dest).then(
      (s) => s.size,
      () => -1,
    );
    await rm(dest, { force: true });
    // A transfer counts when the whole file arrived, whatever scp's exit status (reported separately).
    const complete = size === bytes;
    if (r.code !== 0 || !complete)
      note(
        `${t.label} ${path.name}: exit ${r.code}, ${size} of ${bytes} bytes${r.stderr ? `: ${r.stderr}` : ""}`,
      );
    const mbps = complete ? MB / (r.ms / 1000) : 0;
    log(`${t.label} ${path.name} #${i}: ${r1(mbps)} MB/s (${Math.round(r.ms)} ms, exit ${r.code})`);
    return { mbps, code: r.code, cpuS: (used.user + used.system) / 1e6, seconds: r.ms / 1000, busy };
  };

  const transfers: Transfer[] = [
    { label: "upload", direction: "upload", legacy: false },
    { label: "upload_legacy_scp", direction: "upload", legacy: true },
    { label: "download", direction: "download", legacy: false },
    { label: "download_legacy_scp", direction: "download", legacy: true },
  ];
  const out: Record<string, unknown> = {};
  for (const t of transfers.filter((t) => TRANSFERS.has(t.label))) {
    // RUNS rounds of the three paths, in rotating order. A pamgate or relay run slower than BENCH_SSH_SLOW_S ends
    // the series after that round, so a slow path cannot take the whole bench's time.
    const mbps = perPath<number[]>(() => []);
    const exits = perPath<Array<number | null>>(() => []);
    const busy = perPath<number[]>(() => []);
    const cpu: number[] = [];
    let slow = false;
    for (let i = 0; i < RUNS && !slow; i++) {
      for (const which of rotation(i)) {
        const r = await scp(p[which], t, i);
        exits[which].push(r.code);
        busy[which].push(r.busy);
        mbps[which].push(r.mbps);
        if (which === "pamgate") cpu.push(r.cpuS / r.seconds);
        if (which !== "direct" && r.seconds > SLOW_S) slow = true;
      }
    }
    if (slow) note(`${t.label}: ${mbps.pamgate.length} of ${RUNS} runs (a run took over ${SLOW_S} s)`);
    const direct = median(mbps.direct);
    const relay = median(mbps.relay);
    const pamgate = median(mbps.pamgate);
    out[t.label] = {
      direct_mbps: r1(direct),
      relay_mbps: r1(relay),
      pamgate_mbps: r1(pamgate),
      ratio: direct ? r3(pamgate / direct) : 0,
      goal_ratio_ge_0_9: direct > 0 && pamgate / direct >= 0.9,
      relay_ratio: direct ? r3(relay / direct) : 0,
      pamgate_over_relay: relay ? r3(pamgate / relay) : 0,
      runs: mapPaths(mbps, (xs) => xs.map(r1)),
      exit_codes: exits,
      // CPU this process (the gateway and the bare relay run in it, and the bench's little) used during a pamgate
      // transfer, in cores.
      pamgate_process_cpu_cores: r3(median(cpu)),
      // Share of all the machine's cores busy during the transfer (1 = saturated): clients, gateway, sshd.
      machine_cpu_busy: mapPaths(busy, (xs) => r3(median(xs))),
    };
  }
  return out;
}

function perPath<T>(make: () => T): Record<PathName, T> {
  return { direct: make(), relay: make(), pamgate: make() };
}

function mapPaths<T, U>(r: Record<PathName, T>, f: (x: T) => U): Record<PathName, U> {
  return { direct: f(r.direct), relay: f(r.relay), pamgate: f(r.pamgate) };
}

const stats = (xs: number[]) => ({ p50: r1(percentile(xs, 50)), p99: r1(percentile(xs, 99)), n: xs.length });

/** Per-path p50/p99 of round-trip times, and pamgate's and the relay's overhead over direct. */
function latencyReport(times: Record<PathName, number[]>, failures: Record<PathName, number>) {
  const s = mapPaths(times, stats);
  return {
    ...s,
    overhead_p50: r1(s.pamgate.p50 - s.direct.p50),
    overhead_p99: r1(s.pamgate.p99 - s.direct.p99),
    relay_overhead_p50: r1(s.relay.p50 - s.direct.p50),
    pamgate_over_relay_p50: r1(s.pamgate.p50 - s.relay.p50),
    failures,
  };
}

async function execPhase(p: Record<PathName, Path>, note: (n: string) => void) {
  const cmd = (path: Path) => [...path.options, "-p", String(path.port), path.login, "--", "true"];
  const times = perPath<number[]>(() => []);
  const failures = perPath(() => 0);
  // Warm up every path (JIT on the gateway's handshake path, the sshd's first forks).
  for (let i = 0; i < 3; i++) for (const name of PATHS) await exec("ssh", cmd(p[name]), p[name].env());
  for (let i = 0; i < EXECS; i++) {
    for (const name of rotation(i)) {
      const path = p[name];
      const r = await exec("ssh", cmd(path), path.env());
      if (r.code === 0) times[name].push(r.ms);
      else {
        failures[name]++;
        note(`exec ${name}: exit ${r.code}${r.stderr ? `: ${r.stderr}` : ""}`);
      }
    }
  }
  const report = latencyReport(times, failures);
  log(`exec p50 ms: ${PATHS.map((n) => `${n} ${report[n].p50}`).join(", ")}`);
  return report;
}

/**
 * One ssh2 client connection per path, kept open; EXECS sequential `true` execs on it, each its own channel. What
 * an agent with a persistent connection sees per command: through pamgate that is the policy decision, its audit
 * record, a certificate and an upstream connection per channel (the certificate names the decision).
 */
async function persistentPhase(p: Record<PathName, Path>, note: (n: string) => void) {
  const connect = (path: Path) =>
    new Promise<ssh2.Client>((resolve, reject) => {
      const c = new ssh2.Client();
      c.on("ready", () => resolve(c));
      c.on("error", reject);
      c.on("keyboard-interactive", (_n, _i, _l, prompts, finish) =>
        finish(prompts.map(() => String(path.ssh2Auth().password ?? ""))),
      );
      c.connect({ ...path.ssh2Auth(), hostVerifier: () => true, readyTimeout: 30_000 });
    });
  const run = (c: ssh2.Client) =>
    new Promise<number | null>((resolve, reject) => {
      c.exec("true", (err, ch) => {
        if (err) return reject(err);
        let code: number | null = null;
        ch.on("exit", (c: number | null) => {
          code = c;
        });
        ch.on("close", () => resolve(code));
        ch.resume();
        ch.stderr.resume();
      });
    });
  const clients = perPath<ssh2.Client | null>(() => null);
  const times = perPath<number[]>(() => []);
  const failures = perPath(() => 0);
  try {
    for (const name of PATHS) clients[name] = await connect(p[name]);
    for (let i = 0; i < EXECS + 3; i++) {
      for (const name of rotation(i)) {
        const start = performance.now();
        const code = await run(clients[name] as ssh2.Client).catch((err: Error) => {
          note(`persistent ${name}: ${err.message}`);
          return -1;
        });
        if (i < 3) continue; // warm-up
        if (code === 0) times[name].push(performance.now() - start);
        else failures[name]++;
      }
    }
  } finally {
    for (const c of Object.values(clients)) c?.end();
  }
  const report = latencyReport(times, failures);
  log(`persistent exec p50 ms: ${PATHS.map((n) => `${n} ${report[n].p50}`).join(", ")}`);
  return report;
}

async function sessionsPhase(p: Record<PathName, Path>, note: (n: string) => void) {
  const rate = async (path: Path) => {
    const args = [...path.options, "-p", String(path.port), path.login, "--", "true"];
    const env = path.env();
    const deadline = performance.now() + SECONDS * 1000;
    const start = performance.now();
    let ok = 0;
    let failed = 0;
    const worker = async () => {
      while (performance.now() < deadline) {
        const r = await exec("ssh", args, env);
        if (r.code === 0) ok++;
        else {
          failed++;
          note(`sessions ${path.name}: exit ${r.code}${r.stderr ? `: ${r.stderr}` : ""}`);
        }
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    // Sessions still running at the deadline are finished and counted; divide by the time they took.
    const elapsed = (performance.now() - start) / 1000;
    log(`sessions ${path.name}: ${ok} in ${elapsed.toFixed(1)} s (${failed} failed)`);
    return { ok, failed, rate: ok / elapsed };
  };
  const r = perPath<{ ok: number; failed: number; rate: number }>(() => ({ ok: 0, failed: 0, rate: 0 }));
  for (const name of PATHS) r[name] = await rate(p[name]);
  return {
    ...mapPaths(r, (x) => r1(x.rate)),
    ratio: r.direct.rate ? r3(r.pamgate.rate / r.direct.rate) : 0,
    relay_ratio: r.direct.rate ? r3(r.relay.rate / r.direct.rate) : 0,
    completed: mapPaths(r, (x) => x.ok),
    failed: mapPaths(r, (x) => x.failed),
    concurrency: CONCURRENCY,
    seconds: SECONDS,
  };
}

async function main() {
  const work = await mkdtemp(join(tmpdir(), "pamgate-bench-ssh-"));
  const notes: string[] = [
    "every ssh/scp invocation is a full connection; through pamgate that includes a second SSH handshake, to the target, with a freshly issued certificate (plus the token check and policy decisions)",
    "relay is a bare ssh2 relay (bench/ssh-relay.ts): pamgate's SSH parts without token, policy, certificate or audit; the floor of a second hop",
    "scp MB/s is file size / wall time of the whole scp process, connection setup included",
    "default scp in OpenSSH 9 uses the SFTP protocol (relayed and decided per operation by pamgate); scp -O is the legacy protocol, an exec of scp -t / scp -f, decided like any exec and relayed as a transfer (direction, paths and byte counts recorded, not the contents)",
    "the gateway and the relay run in the bench's process; clients, gateway, sshd and sftp-server share the machine's cores",
  ];
  /** Failures and oddities, each distinct one once with how often it happened. */
  const seen = new Map<string, number>();
  const note = (n: string) => {
    log(n);
    seen.set(n, (seen.get(n) ?? 0) + 1);
  };
  let g: SshTestGateway | undefined;
  let relay: BareRelay | undefined;
  try {
    log("starting the gateway (PostgreSQL, dev issuer, policy bundle, sshd)");
    // The gateway's own warnings and errors go to stderr (PAMGATE_LOG_LEVEL, default warn).
    g = await startSshTestGateway(undefined, undefined, {
      log: createLogger(process.env.PAMGATE_LOG_LEVEL ?? "warn"),
    });
    const setup = await paths(g, work);
    relay = setup.relay;
    const p = setup.paths;
    // A check that every path works before anything is timed.
    for (const name of PATHS) {
      const path = p[name];
      const r = await exec(
        "ssh",
        [...path.options, "-p", String(path.port), path.login, "--", "true"],
        path.env(),
      );
      if (r.code !== 0) throw new Error(`ssh ${path.name} does not work: exit ${r.code}: ${r.stderr}`);
    }
    const result: Record<string, unknown> = { bench: "ssh", scp_mb: MB, runs: RUNS };
    if (PHASES.has("scp")) Object.assign(result, await scpPhase(p, work, note));
    if (PHASES.has("exec")) result.exec_ms = { ...(await execPhase(p, note)), n: EXECS };
    if (PHASES.has("persistent")) result.persistent_exec_ms = await persistentPhase(p, note);
    if (PHASES.has("sessions")) result.sessions_per_s = await sessionsPhase(p, note);
    result.cpu_cores = availableParallelism();
    result.node = process.version;
    result.notes = [...notes, ...[...seen].map(([n, count]) => (count > 1 ? `${n} (×${count})` : n))];
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } finally {
    await relay?.close().catch(() => {});
    await g?.stop().catch((err) => log(`stopping the gateway: ${err}`));
    await rm(work, { recursive: true, force: true });
  }
}

await main();
process.exit(0);
