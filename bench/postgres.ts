// npm run bench:postgres — pgbench select-only, same duration and clients, in one run against:
//   (a) PostgreSQL directly, (b) pgbouncer (transaction pooling), (c) pamgate with policy and audit on every
//   statement at durability `fsync` (the default) and (d) at `write` (separate `pamgate run` processes, so each
//   RSS is its own);
// (g) at `write` with `workers: 2` (two event loops sharing the listener);
// and, to show where the time goes, (e) a plain Node.js TCP relay (what any proxy written in Node costs here:
// the floor under pamgate) and (f) pamgate with policy but no audit trail (what the decision record costs).
// Each client count in BENCH_CLIENTS (default 8 and 32) is one run, plus a 1-client run for the latency each
// statement gains, beside one fdatasync of the audit disk measured in the same run (the physical floor of a
// durable record). Then the 8-client run again with the cores split (taskset): the proxies on CPU 1, PostgreSQL
// and pgbench on CPU 0, so a proxy has a core of its own. Then a masking run (SELECT of 1,000,000 rows × 5
// columns, 2 masked) through pamgate vs direct, and the resident memory of pamgate holding 1,000 idle sessions.
// Prints one JSON line.
// Targets (issues 5 and 13): pamgate ≥ 75 % of direct TPS and ≥ 90 % of pgbouncer's; at durability write
// ≥ 90 % of the bare relay and ≥ 85 % of pgbouncer at 8 clients; at fsync, added latency per statement ≤ one
// fdatasync + 0.1 ms at p50; masked bulk read ≤ 1.5× direct; 1,000 idle sessions ≤ 300 MB RSS.
import { type ChildProcess, spawn } from "node:child_process";
import {
  chownSync,
  closeSync,
  fdatasyncSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { startDevIssuer } from "../src/identity/dev-issuer.js";
import { packagePath } from "../src/util/tools.js";
import { run } from "../test/helpers/gateway.js";
import { freePort, startPostgres } from "../test/helpers/postgres.js";

const DURATION_S = Number(process.env.BENCH_SECONDS ?? 15);
const CLIENT_COUNTS = (process.env.BENCH_CLIENTS ?? "8,32").split(",").map(Number);
const SCALE = Number(process.env.BENCH_SCALE ?? 10);
const MASK_ROWS = Number(process.env.BENCH_MASK_ROWS ?? 1_000_000);
const IDLE_SESSIONS = Number(process.env.BENCH_IDLE ?? 1000);

function waitForPort(port: number, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      const s = connect({ host: "127.0.0.1", port }, () => {
        s.destroy();
        resolve();
      });
      s.on("error", () => {
        s.destroy();
        if (Date.now() > deadline) reject(new Error(`port ${port} did not open`));
        else setTimeout(attempt, 100);
      });
    };
    attempt();
  });
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

/** Runs pgbench -S and returns TPS and the p99 latency from its per-transaction log. */
async function pgbench(bin: string, url: string, label: string, dir: string, clients: number) {
  const prefix = join(dir, `log-${label}-${clients}-`);
  const r = await run(`${bin}/pgbench`, [
    "-S",
    "-n",
    "-T",
    String(DURATION_S),
    "-c",
    String(clients),
    "-j",
    "2",
    "-l",
    "--log-prefix",
    prefix,
    url,
  ]);
  if (r.code !== 0) throw new Error(`pgbench against ${label} failed: ${r.stderr}`);
  const tps = Number(/tps = ([\d.]+)/.exec(r.stdout)?.[1] ?? 0);
  const failed = Number(/number of failed transactions: (\d+)/.exec(r.stdout)?.[1] ?? 0);
  const latencies: number[] = [];
  for (const f of readdirSync(dir).filter((n) => n.startsWith(`log-${label}-${clients}-`))) {
    for (const line of readFileSync(join(dir, f), "utf8").split("\n")) {
      const us = Number(line.split(" ")[2]);
      if (Number.isFinite(us) && line) latencies.push(us);
    }
  }
  latencies.sort((a, b) => a - b);
  return {
    tps: Math.round(tps),
    p50_ms: +(percentile(latencies, 50) / 1000).toFixed(3),
    p99_ms: +(percentile(latencies, 99) / 1000).toFixed(3),
    transactions: latencies.length,
    failed,
  };
}

async function startPgbouncer(
  dir: string,
  db: { host: string; port: number; user: string; password: string; database: string },
) {
  const port = await freePort();
  const ini = join(dir, "pgbouncer.ini");
  const users = join(dir, "userlist.txt");
  writeFileSync(users, `"${db.user}" "${db.password}"\n`);
  writeFileSync(
    ini,
    [
      "[databases]",
      `${db.database} = host=${db.host} port=${db.port} dbname=${db.database}`,
      "[pgbouncer]",
      "listen_addr = 127.0.0.1",
      `listen_port = ${port}`,
      "auth_type = scram-sha-256",
      `auth_file = ${users}`,
      "pool_mode = transaction",
      "max_client_conn = 2000",
      `default_pool_size = ${Math.max(...CLIENT_COUNTS)}`,
      `unix_socket_dir = ${dir}`,
      `logfile = ${join(dir, "pgbouncer.log")}`,
      "",
    ].join("\n"),
  );
  // pgbouncer will not run as root; run it as the postgres system user when we are root.
  const ids = process.getuid?.() === 0 ? { uid: pgUid("u"), gid: pgUid("g") } : {};
  if (process.getuid?.() === 0)
    for (const f of [dir, ini, users]) chownSync(f, ids.uid as number, ids.gid as number);
  const proc = spawn("/usr/sbin/pgbouncer", [ini], { stdio: ["ignore", "ignore", "pipe"], ...ids });
  await waitForPort(port);
  return { port, proc };
}

function pgUid(kind: "u" | "g"): number {
  return Number(
    readFileSync("/etc/passwd", "utf8")
      .split("\n")
      .find((l) => l.startsWith("postgres:"))
      ?.split(":")[kind === "u" ? 2 : 3],
  );
}

function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return +(Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024).toFixed(1);
}

/** A plain Node.js TCP relay to the database in a process of its own: the floor of any Node.js proxy here. */
async function startRelay(dbPort: number): Promise<{ proc: ChildProcess; port: number }> {
  const port = await freePort();
  const code = `const net = require("node:net");
net.createServer((c) => {
  const u = net.connect(${dbPort}, "127.0.0.1");
  c.setNoDelay(true); u.setNoDelay(true);
  c.pipe(u); u.pipe(c);
  c.on("error", () => u.destroy()); u.on("error", () => c.destroy());
}).listen(${port}, "127.0.0.1");`;
  const proc = spawn(process.execPath, ["-e", code], { stdio: "ignore" });
  await waitForPort(port);
  return { proc, port };
}

/** p50 and p99 of one fdatasync of a 2 KB append in `dir` (the audit spool's disk): a durable record's floor. */
function fdatasyncFloor(dir: string, n = 400): { p50_ms: number; p99_ms: number } {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, "fsync-probe");
  const fd = openSync(path, "w");
  const buf = Buffer.alloc(2048, 0x61);
  const t: number[] = [];
  try {
    for (let i = 0; i < n; i++) {
      writeSync(fd, buf);
      const start = process.hrtime.bigint();
      fdatasyncSync(fd);
      t.push(Number(process.hrtime.bigint() - start) / 1e6);
    }
  } finally {
    closeSync(fd);
    rmSync(path, { force: true });
  }
  t.sort((a, b) => a - b);
  return { p50_ms: +percentile(t, 50).toFixed(3), p99_ms: +percentile(t, 99).toFixed(3) };
}

/** Pins a running process (all its threads, and the children it forks later) to the given CPUs. */
async function pin(pid: number | undefined, cpus: string): Promise<void> {
  if (!pid) return;
  const r = await run("taskset", ["-a", "-c", "-p", cpus, String(pid)]);
  if (r.code !== 0) throw new Error(`taskset ${cpus} ${pid} failed: ${r.stderr}`);
}

/** The process ids of a process's children (a `workers: N` gateway's workers). */
async function childPids(pid: number | undefined): Promise<number[]> {
  if (!pid) return [];
  const r = await run("pgrep", ["-P", String(pid)]);
  return r.stdout.split("\n").filter(Boolean).map(Number);
}

/** CPU seconds (user + system) a process has used, from /proc (clock ticks of 1/100 s). */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

async function timeQuery(url: string, sql: string): Promise<{ seconds: number; bytes: number }> {
  const start = performance.now();
  const r = await run("psql", [url, "-X", "-A", "-t", "-q", "-o", "/dev/null", "-c", sql]);
  if (r.code !== 0) throw new Error(`query failed: ${r.stderr}`);
  return { seconds: +((performance.now() - start) / 1000).toFixed(3), bytes: 0 };
}

async function main() {
  // The gateways run the compiled build (bin/pamgate.js picks dist/ while it is current), as in production.
  const built = await run(process.execPath, [packagePath("scripts", "build.mjs")]);
  if (built.code !== 0) throw new Error(`npm run build failed: ${built.stderr}`);
  const dir = mkdtempSync(join(tmpdir(), "pamgate-bench-pg-"));
  const cleanups: Array<() => Promise<void> | void> = [() => rmSync(dir, { recursive: true, force: true })];
  try {
    const db = await startPostgres({ config: [`max_connections = ${IDLE_SESSIONS + 100}`] });
    cleanups.push(() => db.stop());
    const init = await run(`${db.bin}/pgbench`, ["-i", "-q", "-s", String(SCALE), db.url]);
    if (init.code !== 0) throw new Error(init.stderr);
    const setup = new pg.Client({ connectionString: db.url });
    await setup.connect();
    await setup.query(`CREATE TABLE bench_people AS
      SELECT g AS id, 'name ' || g AS name, lpad(g::text, 9, '0') AS ssn, 'user' || g || '@example.com' AS email, 'city ' || (g % 100) AS city
        FROM generate_series(1, ${MASK_ROWS}) g`);
    await setup.query("VACUUM ANALYZE bench_people");
    await setup.end();

    const bouncerDir = mkdtempSync(join(tmpdir(), "pamgate-bench-bouncer-"));
    cleanups.push(() => rmSync(bouncerDir, { recursive: true, force: true }));
    const bouncer = await startPgbouncer(bouncerDir, db);
    cleanups.push(() => {
      bouncer.proc.kill();
    });

    const issuer = await startDevIssuer({
      users: { alice: { groups: ["engineering"] } },
      accessTokenTtlSeconds: 3600,
    });
    cleanups.push(() => issuer.stop());
    const { buildBundle } = await import("../src/bundles/build.js");
    const bundle = join(dir, "bundle.tar.gz");
    const { revision } = await buildBundle({ policies: packagePath("policies"), output: bundle });
    const ic = issuer.issuerConfig();
    /** A `pamgate run` process of its own (so its RSS is its own); with the audit trail at a level, or none. */
    const startGateway = async (name: string, audit: "fsync" | "write" | null, workers = 1) => {
      const port = await freePort();
      const config = {
        workers,
        listeners: { postgres: { host: "127.0.0.1", port } },
        policy: { bundle },
        identity: { issuers: [{ issuer: ic.issuer, audience: ic.audience, allow_insecure_http: true }] },
        resources: [
          {
            name: "bench",
            kind: "postgres",
            labels: { env: "staging" },
            upstream: { host: db.host, port: db.port, database: db.database, user: db.user },
            credentials: { password_env: "BENCH_DB_PASSWORD" },
          },
        ],
        // The PostgreSQL store (as several replicas would run): the embedded PGlite store alone holds 240-900 MB.
        store: { type: "postgres", url: db.url },
        ...(audit ? { audit: { dir: join(dir, `audit-${name}`), durability: audit } } : {}),
      };
      writeFileSync(join(dir, `${name}.yaml`), JSON.stringify(config));
      const proc = spawn(
        process.execPath,
        [packagePath("bin", "pamgate.js"), "run", "--config", join(dir, `${name}.yaml`)],
        {
          // error: a gateway without an audit trail warns about exactly that at start.
          env: {
            ...process.env,
            BENCH_DB_PASSWORD: db.password,
            PAMGATE_LOG_LEVEL: audit ? "warn" : "error",
          },
          stdio: ["ignore", "ignore", "inherit"],
        },
      );
      cleanups.push(() => {
        proc.kill("SIGTERM");
      });
      await waitForPort(port, 120_000);
      return { proc, port };
    };
    const main = await startGateway("pamgate", "fsync");
    const gw = main.proc;
    const pgPort = main.port;
    const write = await startGateway("pamgate-write", "write");
    const noAudit = await startGateway("pamgate-no-audit", null);
    const workers = await startGateway("pamgate-write-2-workers", "write", 2);
    const relay = await startRelay(db.port);
    cleanups.push(() => {
      relay.proc.kill();
    });
    const token = await issuer.tokenFor("alice");
    const via = (port: number) =>
      `postgres://alice:${encodeURIComponent(token)}@127.0.0.1:${port}/bench?sslmode=disable`;
    const viaGateway = via(pgPort);
    const viaBouncer = `postgres://${db.user}:${encodeURIComponent(db.password)}@127.0.0.1:${bouncer.port}/${db.database}`;
    const viaRelay = db.url.replace(`:${db.port}/`, `:${relay.port}/`);

    // Warm up every path once (JIT, caches), then measure side by side.
    const targets = {
      direct: db.url,
      pgbouncer: viaBouncer,
      node_relay: viaRelay,
      pamgate_fsync: viaGateway,
      pamgate_write: via(write.port),
      pamgate_no_audit: via(noAudit.port),
      pamgate_write_2_workers: via(workers.port),
    };
    type Result = Awaited<ReturnType<typeof pgbench>>;
    for (const u of Object.values(targets))
      await run(`${db.bin}/pgbench`, ["-S", "-n", "-T", "2", "-c", "2", u]);
    const ratio = (a: Result, b: Result) => +(a.tps / b.tps).toFixed(3);
    const measure = async (clients: number, tag = "") => {
      const r = {} as Record<keyof typeof targets, Result>;
      for (const [label, url] of Object.entries(targets) as Array<[keyof typeof targets, string]>)
        r[label] = await pgbench(db.bin, url, `${label}${tag}`, dir, clients);
      const { direct, pgbouncer, node_relay, pamgate_fsync, pamgate_write, pamgate_no_audit } = r;
      return {
        clients,
        ...r,
        pamgate_over_direct_tps: ratio(pamgate_fsync, direct),
        pamgate_over_pgbouncer_tps: ratio(pamgate_fsync, pgbouncer),
        pamgate_over_relay: {
          fsync: ratio(pamgate_fsync, node_relay),
          write: ratio(pamgate_write, node_relay),
          no_audit: ratio(pamgate_no_audit, node_relay),
          write_2_workers: ratio(r.pamgate_write_2_workers, node_relay),
        },
        pamgate_write_over_pgbouncer: ratio(pamgate_write, pgbouncer),
        relay_over_direct: ratio(node_relay, direct),
        targets: {
          tps_ge_75pct_direct: pamgate_fsync.tps >= 0.75 * direct.tps,
          tps_ge_90pct_pgbouncer: pamgate_fsync.tps >= 0.9 * pgbouncer.tps,
          write_ge_90pct_relay: pamgate_write.tps >= 0.9 * node_relay.tps,
          write_ge_85pct_pgbouncer: pamgate_write.tps >= 0.85 * pgbouncer.tps,
        },
      };
    };
    const runs = [];
    for (const clients of CLIENT_COUNTS) runs.push(await measure(clients));

    // One client: what a statement waits for, beside one fdatasync of the spool's disk measured here and now.
    const one = await measure(1, "-one");
    const fsync = fdatasyncFloor(join(dir, "audit-pamgate"));
    const added = (r: Result) => +(r.p50_ms - one.direct.p50_ms).toFixed(3);
    const latency = {
      clients: 1,
      direct_p50_ms: one.direct.p50_ms,
      relay_added_p50_ms: added(one.node_relay),
      no_audit_added_p50_ms: added(one.pamgate_no_audit),
      fsync_added_p50_ms: added(one.pamgate_fsync),
      write_added_p50_ms: added(one.pamgate_write),
      fdatasync: fsync,
      target_fsync_added_le_fdatasync_plus_0_1ms: added(one.pamgate_fsync) <= fsync.p50_ms + 0.1,
    };

    // Cores split: every proxy on CPU 1; PostgreSQL (its postmaster, so every backend it forks) and pgbench on 0.
    let pinned: Awaited<ReturnType<typeof measure>> | { skipped: string };
    if (process.env.BENCH_TASKSET === "0") pinned = { skipped: "BENCH_TASKSET=0" };
    else {
      const proxies = [gw.pid, write.proc.pid, noAudit.proc.pid, relay.proc.pid, bouncer.proc.pid];
      proxies.push(...(await childPids(workers.proc.pid)), workers.proc.pid);
      for (const p of proxies) await pin(p, "1");
      await pin(db.pid, "0");
      pinned = await measure(8, "-pinned");
      (pinned as Record<string, unknown>).cpus = { proxies: "1", postgres_and_pgbench: "0" };
      for (const p of [...proxies, db.pid]) await pin(p, "0,1");
    }
    write.proc.kill("SIGTERM");
    workers.proc.kill("SIGTERM");
    noAudit.proc.kill("SIGTERM");
    relay.proc.kill();

    const maskSql = "SELECT id, name, ssn, email, city FROM bench_people";
    // Each path once before it is timed: the database's cache for both, and for pamgate the JIT on the masking
    // path (the first million masked rows of a fresh process take ~3x the CPU of the next).
    await timeQuery(db.url, maskSql);
    await timeQuery(viaGateway, maskSql);
    const maskDirect = await timeQuery(db.url, maskSql);
    const cpuBefore = cpuSeconds(gw.pid as number);
    const maskGateway = await timeQuery(viaGateway, maskSql);
    const maskGatewayCpu = +(cpuSeconds(gw.pid as number) - cpuBefore).toFixed(2);
    // Check that it really was masked.
    const check = await run("psql", [
      viaGateway,
      "-X",
      "-A",
      "-t",
      "-c",
      "SELECT ssn, email FROM bench_people WHERE id = 1",
    ]);
    const maskedOk = /^\*+0001\|h:[0-9a-f]{16}$/.test(check.stdout.trim());

    // 1,000 idle sessions.
    const rssBefore = rssMb(gw.pid as number);
    const clients: pg.Client[] = [];
    for (let i = 0; i < IDLE_SESSIONS; i += 50) {
      const batch = Array.from({ length: Math.min(50, IDLE_SESSIONS - i) }, async () => {
        const c = new pg.Client({ connectionString: viaGateway });
        c.on("error", () => {});
        await c.connect();
        clients.push(c);
      });
      await Promise.all(batch);
    }
    await new Promise((r) => setTimeout(r, 2000));
    const rssIdle = rssMb(gw.pid as number);
    await Promise.all(clients.map((c) => c.end().catch(() => {})));

    const result = {
      bench: "postgres",
      revision,
      runtime: "dist (compiled, no tsx)",
      duration_s: DURATION_S,
      scale: SCALE,
      runs,
      latency,
      pinned,
      masking: {
        rows: MASK_ROWS,
        columns: 5,
        masked_columns: 2,
        direct_s: maskDirect.seconds,
        pamgate_s: maskGateway.seconds,
        /** CPU the gateway process spent on it (the machine's cores are shared with psql and PostgreSQL). */
        pamgate_cpu_s: maskGatewayCpu,
        ratio: +(maskGateway.seconds / maskDirect.seconds).toFixed(3),
        verified_masked: maskedOk,
      },
      idle_sessions: { sessions: IDLE_SESSIONS, rss_mb_before: rssBefore, rss_mb: rssIdle },
      targets: {
        masked_read_le_1_5x: maskGateway.seconds <= 1.5 * maskDirect.seconds,
        idle_rss_le_300mb: rssIdle <= 300,
      },
    };
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } finally {
    for (const c of cleanups.reverse()) await c();
  }
}

await main();
process.exit(0);
