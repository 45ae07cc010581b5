// npm run bench:ssh — the SSH gateway against OpenSSH's sshd directly, in one run, with the real OpenSSH clients:
//   (1) scp of a random file (BENCH_SSH_MB, default 100) to the target and back: default scp (which in OpenSSH
//       9 speaks SFTP, relayed packet by packet by pamgate) and `scp -O` (the legacy protocol: an exec of
//       `scp -t`/`scp -f`, decided like any exec, relayed with byte counts recorded); 3 runs each, alternating direct and pamgate,
//       the median reported;
//   (2) `ssh … true` round trips (BENCH_SSH_EXECS, default 30 each, alternating), p50/p99;
//   (3) new sessions per second: BENCH_SSH_CONCURRENCY (8) loops of `ssh … true` for BENCH_SSH_SECONDS (10).
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
import { createLogger } from "../src/util/log.js";
import { type SshTestGateway, startSshTestGateway } from "../test/helpers/ssh-gateway.js";

const MB = Number(process.env.BENCH_SSH_MB ?? 100);
const RUNS = Number(process.env.BENCH_SSH_RUNS ?? 3);
const EXECS = Number(process.env.BENCH_SSH_EXECS ?? 30);
const CONCURRENCY = Number(process.env.BENCH_SSH_CONCURRENCY ?? 8);
const SECONDS = Number(process.env.BENCH_SSH_SECONDS ?? 10);
const PHASES = new Set((process.env.BENCH_SSH_PHASES ?? "scp,exec,sessions").split(","));
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

/** The two ways to reach the target: the program's options, its destination login and the environment. */
interface Path {
  name: "direct" | "pamgate";
  /** Options common to ssh and scp (no port: ssh takes -p, scp -P). */
  options: string[];
  port: number;
  /** "user@host" as ssh -l / scp's destination wants it (pamgate: "root@web-1" at 127.0.0.1). */
  login: string;
  env: () => NodeJS.ProcessEnv;
}

async function paths(g: SshTestGateway, work: string): Promise<Record<Path["name"], Path>> {
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
  return {
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
    },
  };
}

interface Transfer {
  label: string;
  direction: "upload" | "download";
  legacy: boolean;
}

async function scpPhase(p: Record<Path["name"], Path>, work: string, note: (n: string) => void) {
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
    // RUNS pairs, direct and pamgate alternating (and which goes first alternating too, so neither always
    // runs on a warmer page cache or a cooler CPU). A pamgate run slower than BENCH_SSH_SLOW_S ends the series
    // after that pair, so a slow path cannot take the whole bench's time.
    const d: number[] = [];
    const m: number[] = [];
    const exits: Record<Path["name"], Array<number | null>> = { direct: [], pamgate: [] };
    const cpu: number[] = [];
    const busy: Record<Path["name"], number[]> = { direct: [], pamgate: [] };
    let slow = false;
    for (let i = 0; i < RUNS && !slow; i++) {
      const order = i % 2 === 0 ? (["direct", "pamgate"] as const) : (["pamgate", "direct"] as const);
      for (const which of order) {
        const r = await scp(p[which], t, i);
        exits[which].push(r.code);
        busy[which].push(r.busy);
        if (which === "direct") d.push(r.mbps);
        else {
          m.push(r.mbps);
          cpu.push(r.cpuS / r.seconds);
          if (r.seconds > SLOW_S) slow = true;
        }
      }
    }
    if (slow) note(`${t.label}: ${m.length} of ${RUNS} runs (a pamgate run took over ${SLOW_S} s)`);
    const direct = median(d);
    const pamgate = median(m);
    out[t.label] = {
      direct_mbps: r1(direct),
      pamgate_mbps: r1(pamgate),
      ratio: direct ? r3(pamgate / direct) : 0,
      goal_ratio_ge_0_9: direct > 0 && pamgate / direct >= 0.9,
      runs: { direct: d.map(r1), pamgate: m.map(r1) },
      exit_codes: exits,
      // CPU this process (the gateway, and the bench's little) used during a pamgate transfer, in cores.
      pamgate_process_cpu_cores: r3(median(cpu)),
      // Share of all the machine's cores busy during the transfer (1 = saturated): clients, gateway, sshd.
      machine_cpu_busy: { direct: r3(median(busy.direct)), pamgate: r3(median(busy.pamgate)) },
    };
  }
  return out;
}

async function execPhase(p: Record<Path["name"], Path>, note: (n: string) => void) {
  const cmd = (path: Path) => [...path.options, "-p", String(path.port), path.login, "--", "true"];
  const times: Record<Path["name"], number[]> = { direct: [], pamgate: [] };
  const failures: Record<Path["name"], number> = { direct: 0, pamgate: 0 };
  // Warm up both (JIT on the gateway's handshake path, the sshd's first forks).
  for (let i = 0; i < 3; i++)
    for (const path of [p.direct, p.pamgate]) await exec("ssh", cmd(path), path.env());
  for (let i = 0; i < EXECS; i++) {
    for (const path of i % 2 === 0 ? [p.direct, p.pamgate] : [p.pamgate, p.direct]) {
      const r = await exec("ssh", cmd(path), path.env());
      if (r.code === 0) times[path.name].push(r.ms);
      else {
        failures[path.name]++;
        note(`exec ${path.name}: exit ${r.code}${r.stderr ? `: ${r.stderr}` : ""}`);
      }
    }
  }
  const stats = (xs: number[]) => ({
    p50: r1(percentile(xs, 50)),
    p99: r1(percentile(xs, 99)),
    n: xs.length,
  });
  const direct = stats(times.direct);
  const pamgate = stats(times.pamgate);
  log(
    `exec direct p50 ${direct.p50} ms p99 ${direct.p99} ms; pamgate p50 ${pamgate.p50} ms p99 ${pamgate.p99} ms`,
  );
  return {
    direct,
    pamgate,
    overhead_p50: r1(pamgate.p50 - direct.p50),
    overhead_p99: r1(pamgate.p99 - direct.p99),
    failures,
  };
}

async function sessionsPhase(p: Record<Path["name"], Path>, note: (n: string) => void) {
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
  const direct = await rate(p.direct);
  const pamgate = await rate(p.pamgate);
  return {
    direct: r1(direct.rate),
    pamgate: r1(pamgate.rate),
    ratio: direct.rate ? r3(pamgate.rate / direct.rate) : 0,
    completed: { direct: direct.ok, pamgate: pamgate.ok },
    failed: { direct: direct.failed, pamgate: pamgate.failed },
    concurrency: CONCURRENCY,
    seconds: SECONDS,
  };
}

async function main() {
  const work = await mkdtemp(join(tmpdir(), "pamgate-bench-ssh-"));
  const notes: string[] = [
    "every ssh/scp invocation is a full connection; through pamgate that includes a second SSH handshake, to the target, with a freshly issued certificate (plus the token check and policy decisions)",
    "scp MB/s is file size / wall time of the whole scp process, connection setup included",
    "default scp in OpenSSH 9 uses the SFTP protocol (relayed and decided per operation by pamgate); scp -O is the legacy protocol, an exec of scp -t / scp -f, decided like any exec and relayed as a transfer (direction, paths and byte counts recorded, not the contents)",
    "the gateway runs in the bench's process; client, gateway, sshd and sftp-server share the machine's cores",
  ];
  /** Failures and oddities, each distinct one once with how often it happened. */
  const seen = new Map<string, number>();
  const note = (n: string) => {
    log(n);
    seen.set(n, (seen.get(n) ?? 0) + 1);
  };
  let g: SshTestGateway | undefined;
  try {
    log("starting the gateway (PostgreSQL, dev issuer, policy bundle, sshd)");
    // The gateway's own warnings and errors go to stderr (PAMGATE_LOG_LEVEL, default warn).
    g = await startSshTestGateway(undefined, undefined, {
      log: createLogger(process.env.PAMGATE_LOG_LEVEL ?? "warn"),
    });
    const p = await paths(g, work);
    // A check that both paths work before anything is timed.
    for (const path of [p.direct, p.pamgate]) {
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
    if (PHASES.has("sessions")) result.sessions_per_s = await sessionsPhase(p, note);
    result.cpu_cores = availableParallelism();
    result.node = process.version;
    result.notes = [...notes, ...[...seen].map(([n, count]) => (count > 1 ? `${n} (×${count})` : n))];
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } finally {
    await g?.stop().catch((err) => log(`stopping the gateway: ${err}`));
    await rm(work, { recursive: true, force: true });
  }
}

await main();
process.exit(0);
