// `workers: 2`: one `pamgate run` process whose primary hands connections to two worker processes sharing the
// PostgreSQL listener — real parts only: PostgreSQL (as target and as the shared store), the development issuer
// running in this test process as an external OIDC issuer, the example bundle built with opa, node-postgres.
// Each session's BackendKeyData names its worker (the index above bit 24), so the test knows who served what.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import t from "tap";
import { spoolRecords } from "../../src/audit/reader.js";
import { buildBundle } from "../../src/bundles/build.js";
import { type DevIssuer, startDevIssuer } from "../../src/identity/dev-issuer.js";
import { toServer } from "../../src/proxy/postgres/wire.js";
import { packagePath } from "../../src/util/tools.js";
import { freePort, type PostgresServer, startPostgres } from "../helpers/postgres.js";

let db: PostgresServer;
let issuer: DevIssuer;
let dir: string;
let bundle: string;
let port: number;
let gateway: ChildProcess;
let log = "";

t.before(async () => {
  dir = mkdtempSync(join(tmpdir(), "pamgate-workers-"));
  db = await startPostgres();
  const seed = new pg.Client({ connectionString: db.url });
  await seed.connect();
  await seed.query((await import("node:fs")).readFileSync(packagePath("src", "demo", "seed.sql"), "utf8"));
  await seed.end();
  issuer = await startDevIssuer({
    users: { alice: { email: "alice@example.com", groups: ["engineering"] } },
    accessTokenTtlSeconds: 600,
  });
  bundle = join(dir, "bundle.tar.gz");
  await buildBundle({ policies: packagePath("policies"), output: bundle, revision: "rev-1" });
  port = await freePort();
  const ic = issuer.issuerConfig();
  const config = {
    workers: 2,
    listeners: { postgres: { host: "127.0.0.1", port } },
    policy: { bundle },
    identity: { issuers: [{ issuer: ic.issuer, audience: ic.audience, allow_insecure_http: true }] },
    resources: [
      {
        name: "staging-db",
        kind: "postgres",
        labels: { env: "staging" },
        upstream: { host: db.host, port: db.port, database: db.database, user: db.user },
        credentials: { password_env: "TEST_DB_PASSWORD" },
      },
    ],
    store: { type: "postgres", url: db.url },
    audit: { dir: join(dir, "audit") },
  };
  writeFileSync(join(dir, "gateway.yaml"), JSON.stringify(config));
  gateway = spawn(
    process.execPath,
    [packagePath("bin", "pamgate.js"), "run", "--config", join(dir, "gateway.yaml")],
    {
      env: { ...process.env, TEST_DB_PASSWORD: db.password, PAMGATE_LOG_LEVEL: "info" },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  const collect = (c: Buffer) => {
    log = (log + c.toString()).slice(-200_000);
  };
  gateway.stdout?.on("data", collect);
  gateway.stderr?.on("data", collect);
  // Both workers say they run.
  for (let i = 0; i < 600 && (log.match(/pamgate running/g) ?? []).length < 2; i++)
    await new Promise((r) => setTimeout(r, 100));
  if ((log.match(/pamgate running/g) ?? []).length < 2) throw new Error(`workers did not start:\n${log}`);
});

t.teardown(async () => {
  if (gateway && gateway.exitCode === null) {
    const exited = new Promise((r) => gateway.once("exit", r));
    gateway.kill("SIGTERM");
    const force = setTimeout(() => gateway.kill("SIGKILL"), 15_000);
    await exited;
    clearTimeout(force);
  }
  await issuer?.stop();
  await db?.stop();
  rmSync(dir, { recursive: true, force: true });
});

interface Session {
  c: pg.Client;
  worker: number;
  key: { processID: number; secretKey: number };
}

async function session(): Promise<Session> {
  const token = await issuer.tokenFor("alice");
  const c = new pg.Client({
    connectionString: `postgres://alice:${encodeURIComponent(token)}@127.0.0.1:${port}/staging-db?sslmode=disable`,
    connectionTimeoutMillis: 10_000,
  });
  c.on("error", () => {});
  await c.connect();
  const key = c as unknown as { processID: number; secretKey: number };
  return { c, worker: key.processID >>> 24, key };
}

/** Sessions until both workers served at least `each` of them. */
async function sessionsOnBoth(each = 1): Promise<Session[]> {
  const out: Session[] = [];
  for (let i = 0; i < 40; i++) {
    out.push(await session());
    const counts = [0, 1].map((w) => out.filter((s) => s.worker === w).length);
    if (counts.every((n) => n >= each)) return out;
  }
  throw new Error(`40 sessions did not reach both workers: ${out.map((s) => s.worker).join(",")}`);
}

async function decisions(worker: number): Promise<Array<Record<string, unknown>>> {
  const spool = join(dir, "audit", `worker-${worker}`);
  const out: Array<Record<string, unknown>> = [];
  if (!existsSync(spool)) return out;
  for await (const r of spoolRecords(spool))
    if (r.kind === "decision") out.push(JSON.parse(r.body) as Record<string, unknown>);
  return out;
}

t.test(
  "both workers serve sessions, each with its own audit spool; masking hashes alike on both",
  async (t) => {
    const sessions = await sessionsOnBoth();
    t.teardown(() => Promise.all(sessions.map((s) => s.c.end())));
    const hashes = new Set<string>();
    for (const s of sessions) {
      const r = await s.c.query("SELECT email FROM users WHERE id = 1");
      hashes.add(r.rows[0].email);
    }
    t.equal(
      hashes.size,
      1,
      `one hash of the same email, whichever worker masked it: ${[...hashes].join(", ")}`,
    );
    t.match([...hashes][0], /^h:[0-9a-f]{16}$/);
    for (const w of [0, 1]) {
      const d = await decisions(w);
      t.ok(
        d.some((e) => e.action === "mask"),
        `worker ${w} recorded its decisions in audit/worker-${w}`,
      );
    }
  },
);

t.test("a CancelRequest reaches the session whichever worker it lands on", async (t) => {
  // Each cancel is one new connection, handed to either worker; a cancel for the other worker's session is sent
  // there. Without that, about half of these would do nothing.
  const sessions = await sessionsOnBoth(3);
  t.teardown(() => Promise.all(sessions.map((s) => s.c.end())));
  let cancelled = 0;
  for (const s of sessions) {
    const sleeping = s.c.query("SELECT pg_sleep(20)").catch((e: pg.DatabaseError) => e);
    await new Promise((r) => setTimeout(r, 200));
    await new Promise<void>((resolve) => {
      const sock = connect({ host: "127.0.0.1", port }, () =>
        sock.end(toServer.cancel(s.key.processID, s.key.secretKey)),
      );
      sock.on("close", () => resolve());
    });
    const err = await sleeping;
    if ((err as pg.DatabaseError).code === "57014") cancelled++;
  }
  t.equal(cancelled, sessions.length, `all ${sessions.length} sleeps cancelled by one request each`);
});

t.test("a new bundle is activated by every worker", async (t) => {
  const next = join(dir, "bundle.next.tar.gz");
  await buildBundle({ policies: packagePath("policies"), output: next, revision: "rev-2" });
  renameSync(next, bundle);
  const seen = new Set<number>();
  for (let i = 0; i < 100 && seen.size < 2; i++) {
    const s = await session();
    await s.c.query("SELECT id FROM orders WHERE id = 40");
    await s.c.end();
    const last = (await decisions(s.worker)).at(-1) as { bundles?: { pamgate?: { revision?: string } } };
    if (last?.bundles?.pamgate?.revision === "rev-2") seen.add(s.worker);
    else await new Promise((r) => setTimeout(r, 100));
  }
  t.same([...seen].sort(), [0, 1], "both workers decide with rev-2");
});

t.test("a worker killed with SIGKILL is started again; new sessions are served meanwhile", async (t) => {
  const pid = Number(/"worker":0,"pid":(\d+)/.exec(log)?.[1]);
  t.ok(pid > 0, "worker 0's process id, from its start-up line");
  const running = (log.match(/pamgate running/g) ?? []).length;
  const restartsBefore = (log.match(/worker died; starting it again/g) ?? []).length;
  process.kill(pid, "SIGKILL");
  // A connection the primary hands to the worker in the instant it dies is lost with it (node:cluster); once the
  // primary has seen the death, the other worker serves every new session while worker 0 starts again.
  for (
    let i = 0;
    i < 50 && (log.match(/worker died; starting it again/g) ?? []).length === restartsBefore;
    i++
  )
    await new Promise((r) => setTimeout(r, 50));
  const served: number[] = [];
  for (let i = 0; i < 5; i++) {
    const s = await session();
    if ((await s.c.query("SELECT 1 AS one")).rows[0].one === 1) served.push(s.worker);
    await s.c.end();
  }
  t.same(served, [1, 1, 1, 1, 1], "sessions are served by the other worker while worker 0 restarts");
  for (
    let i = 0;
    i < 100 && (log.match(/worker died; starting it again/g) ?? []).length === restartsBefore;
    i++
  )
    await new Promise((r) => setTimeout(r, 100));
  t.ok(
    (log.match(/worker died; starting it again/g) ?? []).length > restartsBefore,
    "the primary restarted it",
  );
  for (let i = 0; i < 300 && (log.match(/pamgate running/g) ?? []).length === running; i++)
    await new Promise((r) => setTimeout(r, 100));
  const both = await sessionsOnBoth();
  await Promise.all(both.map((s) => s.c.end()));
  t.pass("both workers serve again");
});
