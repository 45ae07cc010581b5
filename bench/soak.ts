// npm run bench:soak — 1,000 PostgreSQL sessions through one `pamgate run` for 30 minutes, and what the
// gateway's memory does meanwhile (issue 15: RSS growth < 10 %).
//
// Real parts: PostgreSQL (target, seeded with the demo schema), the development issuer in this process as the
// gateway's external OIDC issuer, the example bundle, the audit spool with fsync durability, the compiled build
// (as in production). The sessions belong to 25 engineers, 40 each (under the per-identity session limit). Each session runs a
// statement every ~5 s (a point read; every 10th a masked read of personal data), and lives 1–3 minutes before it
// ends and a new one takes its place (session start/end records, transcripts, upstream connections — the churn a
// leak would show in). The gateway's RSS is read from /proc every 10 s; the baseline is the mean of the samples in
// the minute after the warm-up (all sessions open, 2 minutes in), the end the mean of the last minute's.
// BENCH_MINUTES (30), BENCH_SESSIONS (1000), BENCH_INTERVAL_MS (5000) adjust it. Prints one JSON line.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { buildBundle } from "../src/bundles/build.js";
import { startDevIssuer } from "../src/identity/dev-issuer.js";
import { packagePath } from "../src/util/tools.js";
import { run } from "../test/helpers/gateway.js";
import { freePort, startPostgres } from "../test/helpers/postgres.js";

const MINUTES = Number(process.env.BENCH_MINUTES ?? 30);
const SESSIONS = Number(process.env.BENCH_SESSIONS ?? 1000);
const INTERVAL_MS = Number(process.env.BENCH_INTERVAL_MS ?? 5000);
const WARMUP_MS = Math.min(120_000, (MINUTES * 60_000) / 4);
const SAMPLE_MS = 10_000;

function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
const round = (x: number, d = 1) => Number(x.toFixed(d));

const dir = mkdtempSync(join(tmpdir(), "pamgate-soak-"));
const db = await startPostgres({ config: [`max_connections = ${SESSIONS + 100}`] });
const seed = new pg.Client({ connectionString: db.url });
await seed.connect();
await seed.query(readFileSync(packagePath("src", "demo", "seed.sql"), "utf8"));
await seed.end();
const USERS = Array.from({ length: 25 }, (_, i) => `engineer${i}`);
const issuer = await startDevIssuer({
  users: Object.fromEntries(USERS.map((u) => [u, { email: `${u}@example.com`, groups: ["engineering"] }])),
  accessTokenTtlSeconds: 3600,
});
// The gateway runs the compiled build (bin/pamgate.js picks dist/ while it is current).
const built = await run(process.execPath, [packagePath("scripts", "build.mjs")]);
if (built.code !== 0) throw new Error(`npm run build failed: ${built.stderr}`);
const bundle = join(dir, "bundle.tar.gz");
await buildBundle({ policies: packagePath("policies"), output: bundle, revision: "soak" });
const port = await freePort();
const ic = issuer.issuerConfig();
writeFileSync(
  join(dir, "gateway.yaml"),
  JSON.stringify({
    listeners: { postgres: { host: "127.0.0.1", port } },
    policy: { bundle },
    identity: { issuers: [{ issuer: ic.issuer, audience: ic.audience, allow_insecure_http: true }] },
    resources: [
      {
        name: "orders-db",
        kind: "postgres",
        labels: { env: "production" },
        upstream: { host: db.host, port: db.port, database: db.database, user: db.user },
        credentials: { password_env: "SOAK_DB_PASSWORD" },
      },
    ],
    store: { type: "embedded", dir: join(dir, "store") },
    audit: { dir: join(dir, "audit"), max_bytes: 8 * 1024 ** 3 },
  }),
);
const gw: ChildProcess = spawn(
  process.execPath,
  [packagePath("bin", "pamgate.js"), "run", "--config", join(dir, "gateway.yaml")],
  { env: { ...process.env, SOAK_DB_PASSWORD: db.password, PAMGATE_LOG_LEVEL: "warn" }, stdio: "ignore" },
);
for (let i = 0; ; i++) {
  try {
    const c = new pg.Client({
      connectionString: `postgres://engineer0:${encodeURIComponent(await issuer.tokenFor("engineer0"))}@127.0.0.1:${port}/orders-db?sslmode=disable`,
    });
    await c.connect();
    await c.end();
    break;
  } catch (err) {
    if (i > 300) throw new Error(`the gateway did not start: ${(err as Error).message}`);
    await sleep(100);
  }
}

const tokens = new Map<string, string>();
const refreshTokens = async () => {
  for (const u of USERS) tokens.set(u, await issuer.tokenFor(u));
};
await refreshTokens();
const tokenTimer = setInterval(() => void refreshTokens(), 10 * 60_000);
const stats = {
  statements: 0,
  failures: 0,
  sessions_opened: 0,
  open_failures: 0,
  errors: new Map<string, number>(),
};
const note = (err: unknown) => {
  const m = (err as Error).message.slice(0, 120);
  stats.errors.set(m, (stats.errors.get(m) ?? 0) + 1);
};
const endAt = Date.now() + MINUTES * 60_000;

/** One slot: a session after another until the end, each living 1–3 minutes. */
async function slot(i: number): Promise<void> {
  const user = USERS[i % USERS.length] as string;
  await sleep((i * WARMUP_MS) / 2 / SESSIONS); // open them over the first half of the warm-up
  while (Date.now() < endAt) {
    const c = new pg.Client({
      connectionString: `postgres://${user}:${encodeURIComponent(tokens.get(user) as string)}@127.0.0.1:${port}/orders-db?sslmode=disable`,
      connectionTimeoutMillis: 30_000,
    });
    c.on("error", () => {});
    try {
      await c.connect();
      stats.sessions_opened++;
    } catch (err) {
      stats.open_failures++;
      note(err);
      await sleep(1000);
      continue;
    }
    const lifeEnd = Math.min(endAt, Date.now() + 60_000 + Math.random() * 120_000);
    let n = 0;
    while (Date.now() < lifeEnd) {
      await sleep(INTERVAL_MS * (0.5 + Math.random()));
      try {
        if (++n % 10 === 0) await c.query("SELECT name, ssn, email FROM users LIMIT 5");
        else await c.query("SELECT id, total FROM orders WHERE id = $1", [1 + (n % 100)]);
        stats.statements++;
      } catch (err) {
        stats.failures++;
        note(err);
        break;
      }
    }
    await c.end().catch(() => {});
  }
}

const samples: Array<[number, number]> = [];
const started = Date.now();
const sampler = setInterval(() => {
  if (gw.pid) samples.push([Math.round((Date.now() - started) / 1000), round(rssMb(gw.pid))]);
}, SAMPLE_MS);
await Promise.all(Array.from({ length: SESSIONS }, (_, i) => slot(i)));
clearInterval(sampler);
clearInterval(tokenTimer);

const at = (fromS: number, toS: number) => samples.filter(([s]) => s >= fromS && s < toS).map(([, r]) => r);
const baseline = mean(at(WARMUP_MS / 1000, WARMUP_MS / 1000 + 60));
const total = MINUTES * 60;
const end = mean(at(total - 60, total + 60));
const growth = baseline > 0 ? (end - baseline) / baseline : 0;
gw.kill("SIGTERM");
await new Promise((r) => gw.once("exit", r));
await issuer.stop();
await db.stop();
rmSync(dir, { recursive: true, force: true });
process.stdout.write(
  `${JSON.stringify({
    bench: "soak",
    sessions: SESSIONS,
    minutes: MINUTES,
    statement_interval_ms: INTERVAL_MS,
    statements: stats.statements,
    statement_failures: stats.failures,
    sessions_opened: stats.sessions_opened,
    session_open_failures: stats.open_failures,
    errors: Object.fromEntries(stats.errors),
    rss_mb: {
      after_warmup: round(baseline),
      end: round(end),
      max: round(Math.max(...samples.map(([, r]) => r))),
      per_minute: samples.filter(([s]) => s % 60 < SAMPLE_MS / 1000).map(([s, r]) => [Math.round(s / 60), r]),
    },
    rss_growth: round(growth, 4),
    target: {
      rss_growth_lt_10pct: growth < 0.1,
      no_failures: stats.failures === 0 && stats.open_failures === 0,
    },
    cpu_cores: (await import("node:os")).cpus().length,
    node: process.version,
  })}\n`,
);
