// Several gateways behind a TCP load balancer, as in production: two `pamgate run` processes sharing one
// PostgreSQL store, behind Debian's haproxy (round robin, health checks, redispatch). Real parts throughout:
// PostgreSQL as target and store, the development issuer in this process as an external OIDC issuer, bundles
// built with opa, psql-like clients (node-postgres).
//   - an approval given through one replica's API releases a statement held on the other;
//   - a rolling bundle update, one replica at a time, with sessions open on both;
//   - one replica killed with SIGKILL under load: clients reconnect through the balancer to the survivor, no
//     statement that reached the database lacks its decision record, and the replica restarts on its spool.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import t from "tap";
import { spoolRecords } from "../../src/audit/reader.js";
import { buildBundle } from "../../src/bundles/build.js";
import { type DevIssuer, startDevIssuer } from "../../src/identity/dev-issuer.js";
import { packagePath } from "../../src/util/tools.js";
import { run } from "../helpers/gateway.js";
import { type PamgateProcess, startPamgate } from "../helpers/pamgate-process.js";
import { freePort, type PostgresServer, startPostgres } from "../helpers/postgres.js";

const HAPROXY = "/usr/sbin/haproxy";

interface Replica {
  name: string;
  config: string;
  audit: string;
  bundle: string;
  pgPort: number;
  apiPort: number;
  process: PamgateProcess;
}

let db: PostgresServer;
let issuer: DevIssuer;
let dir: string;
let lbPort: number;
let haproxy: ChildProcess;
let haproxyLog = "";
const replicas: Replica[] = [];

async function bundleAt(path: string, revision: string): Promise<void> {
  const tmp = `${path}.tmp`;
  await buildBundle({ policies: packagePath("policies"), output: tmp, revision });
  renameSync(tmp, path); // atomic: the watcher never sees half a bundle
}

function startReplica(r: Omit<Replica, "process">): Replica {
  return { ...r, process: startPamgate(r.config, { TEST_DB_PASSWORD: db.password }) };
}

t.before(async () => {
  dir = mkdtempSync(join(tmpdir(), "pamgate-replicas-"));
  db = await startPostgres();
  const seed = new pg.Client({ connectionString: db.url });
  await seed.connect();
  await seed.query(readFileSync(packagePath("src", "demo", "seed.sql"), "utf8"));
  await seed.end();
  issuer = await startDevIssuer({
    users: {
      alice: { email: "alice@example.com", groups: ["engineering"] },
      bob: { email: "bob@example.com", groups: ["dba"] },
    },
    accessTokenTtlSeconds: 600,
  });
  const ic = issuer.issuerConfig();
  for (const name of ["r1", "r2"]) {
    const rdir = join(dir, name);
    const bundle = join(dir, `${name}-bundle.tar.gz`);
    await bundleAt(bundle, "rev-1");
    const pgPort = await freePort();
    const apiPort = await freePort();
    const config = {
      listeners: { postgres: { host: "127.0.0.1", port: pgPort }, api: { host: "127.0.0.1", port: apiPort } },
      policy: { bundle },
      identity: { issuers: [{ issuer: ic.issuer, audience: ic.audience, allow_insecure_http: true }] },
      resources: [
        {
          name: "orders-db",
          kind: "postgres",
          labels: { env: "production" },
          upstream: { host: db.host, port: db.port, database: db.database, user: db.user },
          credentials: { password_env: "TEST_DB_PASSWORD" },
        },
      ],
      store: { type: "postgres", url: db.url },
      audit: { dir: join(rdir, "audit") },
      approvals: { wait_timeout_s: 60, admin_groups: ["dba"] },
    };
    const file = join(dir, `${name}.yaml`);
    writeFileSync(file, JSON.stringify(config));
    replicas.push(startReplica({ name, config: file, audit: join(rdir, "audit"), bundle, pgPort, apiPort }));
  }
  await Promise.all(replicas.map((r) => r.process.waitFor(/pamgate running/)));

  lbPort = await freePort();
  const cfg = join(dir, "haproxy.cfg");
  writeFileSync(
    cfg,
    [
      "global",
      "  maxconn 2000",
      "defaults",
      "  mode tcp",
      "  timeout connect 2s",
      "  timeout client 120s",
      "  timeout server 120s",
      // A connection refused by a dead replica is retried on the other one.
      "  retries 3",
      "  option redispatch",
      "frontend pg",
      `  bind 127.0.0.1:${lbPort}`,
      "  default_backend gateways",
      "backend gateways",
      "  balance roundrobin",
      "  default-server inter 200ms fall 1 rise 2",
      ...replicas.map((r) => `  server ${r.name} 127.0.0.1:${r.pgPort} check`),
      "",
    ].join("\n"),
  );
  haproxy = spawn(HAPROXY, ["-f", cfg, "-db"], { stdio: ["ignore", "pipe", "pipe"] });
  haproxy.stdout?.on("data", (c: Buffer) => {
    haproxyLog += c.toString();
  });
  haproxy.stderr?.on("data", (c: Buffer) => {
    haproxyLog += c.toString();
  });
  // Up once a session gets through.
  for (let i = 0; ; i++) {
    try {
      const c = await client();
      await c.end();
      break;
    } catch (err) {
      if (i > 100)
        throw new Error(`haproxy did not pass a session: ${(err as Error).message}\n${haproxyLog}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
});

t.teardown(async () => {
  haproxy?.kill("SIGKILL");
  await Promise.all(replicas.map((r) => r.process.stop("SIGTERM")));
  await issuer?.stop();
  await db?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function client(user = "alice", port = lbPort): Promise<pg.Client> {
  const token = await issuer.tokenFor(user);
  const c = new pg.Client({
    connectionString: `postgres://${user}:${encodeURIComponent(token)}@127.0.0.1:${port}/orders-db?sslmode=disable`,
    connectionTimeoutMillis: 10_000,
  });
  c.on("error", () => {});
  await c.connect();
  return c;
}

async function api<T>(r: Replica, path: string, init: RequestInit = {}): Promise<T> {
  const res = await fetch(`http://127.0.0.1:${r.apiPort}${path}`, {
    ...init,
    headers: {
      authorization: `Bearer ${await issuer.tokenFor("bob")}`,
      ...(init.body ? { "content-type": "application/json" } : {}),
    },
  });
  if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

/** Decision events in a replica's spool whose command_text contains `text`. */
async function decisionsIn(r: Replica, text: string): Promise<Array<Record<string, unknown>>> {
  const out: Array<Record<string, unknown>> = [];
  for await (const rec of spoolRecords(r.audit)) {
    if (rec.kind !== "decision" || !rec.body.includes(text)) continue;
    const body = JSON.parse(rec.body) as Record<string, unknown>;
    if (String(body.command_text ?? "").includes(text)) out.push(body);
  }
  return out;
}

t.test("an approval through one replica's API releases a statement held on the other", async (t) => {
  // Round robin: two sessions through the balancer land on the two replicas.
  const sessions = [await client(), await client()];
  t.teardown(() => Promise.all(sessions.map((c) => c.end())));
  const statements = ["lb_one", "lb_two"].map(
    (col) => `ALTER TABLE orders ADD COLUMN IF NOT EXISTS ${col} text`,
  );
  const held = sessions.map((c, i) => c.query(statements[i] as string));
  let pending: Array<{ id: string }> = [];
  for (let i = 0; i < 200 && pending.length < 2; i++) {
    pending = (
      await api<{ approvals: Array<{ id: string }> }>(replicas[0] as Replica, "/v1/approvals?status=pending")
    ).approvals;
    await new Promise((r) => setTimeout(r, 50));
  }
  t.equal(pending.length, 2, "both statements wait, and r1's API lists both (one store)");
  for (const p of pending)
    await api(replicas[0] as Replica, `/v1/approvals/${p.id}/approve`, {
      method: "POST",
      body: JSON.stringify({ comment: "via r1" }),
    });
  await Promise.all(held);
  t.pass("both statements ran once approved through r1");
  // Which replica held which statement: its decision records are in that replica's spool.
  const where = await Promise.all(
    statements.map(async (s) => {
      const inR2 = await decisionsIn(replicas[1] as Replica, s);
      return inR2.length > 0 ? "r2" : "r1";
    }),
  );
  t.same([...where].sort(), ["r1", "r2"], "one of them was held by r2 and released by r1's approval");
});

t.test("a rolling bundle update, one replica at a time, with sessions open on both", async (t) => {
  const open = [await client(), await client()];
  t.teardown(() => Promise.all(open.map((c) => c.end())));
  const revisionOf = async (r: Replica) => (await api<{ revision: string }>(r, "/v1/status/bundle")).revision;
  t.same(await Promise.all(replicas.map(revisionOf)), ["rev-1", "rev-1"]);

  for (const [i, r] of replicas.entries()) {
    await bundleAt(r.bundle, "rev-2");
    for (let n = 0; n < 200 && (await revisionOf(r)) !== "rev-2"; n++)
      await new Promise((x) => setTimeout(x, 50));
    t.equal(await revisionOf(r), "rev-2", `${r.name} runs rev-2`);
    const others = replicas.filter((o) => o !== r && replicas.indexOf(o) > i);
    for (const o of others) t.equal(await revisionOf(o), "rev-1", `${o.name} still runs rev-1 meanwhile`);
    for (const c of open) t.equal((await c.query("SELECT id FROM orders WHERE id = 42")).rowCount, 1);
  }
  t.pass("the sessions opened before the update kept working through it");
  const fresh = await client();
  await fresh.query("SELECT id FROM orders WHERE id = 7 /* after-roll */");
  await fresh.end();
  const after = [
    ...(await decisionsIn(replicas[0] as Replica, "after-roll")),
    ...(await decisionsIn(replicas[1] as Replica, "after-roll")),
  ];
  t.equal(after.length, 1);
  t.equal(
    (after[0]?.bundles as Record<string, { revision: string }> | undefined)?.pamgate?.revision,
    "rev-2",
    "new decisions are made and recorded with the new revision",
  );
});

t.test(
  "one replica killed under load: clients reconnect through the balancer, no record missing",
  async (t) => {
    const setup = await client();
    await setup.query("SELECT 1");
    await setup.end();
    const direct = new pg.Client({ connectionString: db.url });
    await direct.connect();
    t.teardown(() => direct.end());
    await direct.query("CREATE TABLE IF NOT EXISTS chaos_log (client int, n int)");

    const clients = 6;
    let killedAt = 0;
    let stop = false;
    const stats = Array.from({ length: clients }, () => ({
      ok: 0,
      okAfterKill: 0,
      failures: 0,
      reconnects: 0,
    }));
    const loop = async (i: number) => {
      const s = stats[i] as (typeof stats)[number];
      let c: pg.Client | null = null;
      let n = 0;
      while (!stop) {
        try {
          c ??= await client();
          await c.query(`INSERT INTO chaos_log (client, n) VALUES (${i}, ${n++})`);
          s.ok++;
          if (killedAt > 0) s.okAfterKill++;
        } catch {
          s.failures++;
          await c?.end().catch(() => {});
          c = null;
          s.reconnects++;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      await c?.end().catch(() => {});
    };
    const loops = Array.from({ length: clients }, (_, i) => loop(i));
    await new Promise((r) => setTimeout(r, 2000));
    const victim = replicas[1] as Replica;
    victim.process.proc.kill("SIGKILL");
    killedAt = Date.now();
    await new Promise((r) => setTimeout(r, 4000));
    stop = true;
    await Promise.all(loops);
    t.comment(JSON.stringify(stats));
    for (const [i, s] of stats.entries()) t.ok(s.okAfterKill > 0, `client ${i} went on after the kill`);
    t.ok(
      stats.reduce((a, s) => a + s.failures, 0) <= clients * 2,
      "failures are the sessions the dead replica held (and a retry each), not a storm",
    );

    // Every INSERT that reached the database has its decision record, on whichever replica decided it.
    const rows = Number((await direct.query("SELECT count(*) AS n FROM chaos_log")).rows[0].n);
    const records = [
      ...(await decisionsIn(replicas[0] as Replica, "INSERT INTO chaos_log")),
      ...(await decisionsIn(victim, "INSERT INTO chaos_log")),
    ].filter((d) => d.action === "allow").length;
    t.ok(rows > 0);
    t.ok(records >= rows, `every statement seen upstream (${rows}) has a decision record (${records})`);
    t.ok(
      records - rows <= clients,
      "and a record without its row is a statement the kill cut off (at most one a client)",
    );

    // Restarted on the same spool: it recovers it, verifies, and takes sessions again.
    const restarted = startReplica(victim);
    replicas[1] = restarted;
    await restarted.process.waitFor(/pamgate running/);
    const verify = await run(process.execPath, [
      packagePath("bin", "pamgate.js"),
      "audit",
      "verify",
      "--spool",
      victim.audit,
    ]);
    t.equal(verify.code, 0, verify.stdout + verify.stderr);
    t.match(verify.stdout, /chain intact/);
    const back = await client("alice", restarted.pgPort);
    t.equal(
      (await back.query("SELECT id FROM orders WHERE id = 42")).rowCount,
      1,
      "the restarted replica serves",
    );
    await back.end();
  },
);
