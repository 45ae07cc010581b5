// The gateway's life cycle as a service manager drives it: the real `bin/pamgate.js run --config …` as a child
// process, a real PostgreSQL, psql and node-postgres as clients, the development issuer running in this test
// process as an external OIDC issuer, bundles built with opa. SIGTERM drains (sessions finish, new connections
// are refused, /readyz is 503, exit 0, the spool verifies and holds the last statement), a session that outlives
// the drain is ended with 57P01, SIGHUP applies a new bundle path and new labels to new sessions while an open
// one goes on, and a broken file is logged with its line and field while the gateway keeps serving.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import t, { type Test } from "tap";
import { stringify } from "yaml";
import { spoolRecords } from "../../src/audit/reader.js";
import { buildBundle } from "../../src/bundles/build.js";
import { type DevIssuer, startDevIssuer } from "../../src/identity/dev-issuer.js";
import { packagePath } from "../../src/util/tools.js";
import { startPamgate } from "../helpers/pamgate-process.js";
import { freePort, type PostgresServer, startPostgres } from "../helpers/postgres.js";

// Real processes, several runs of the pamgate command (through tsx in a checkout): slow on a busy 2-core machine.
t.setTimeout(15 * 60_000);

const BIN = packagePath("bin", "pamgate.js");

let db: PostgresServer;
let issuer: DevIssuer;
let root: string;
let bundleV1: string;
let bundleV2: string;

t.before(async () => {
  root = mkdtempSync(join(tmpdir(), "pamgate-lifecycle-"));
  db = await startPostgres();
  const seed = new pg.Client({ connectionString: db.url });
  await seed.connect();
  await seed.query(readFileSync(packagePath("src", "demo", "seed.sql"), "utf8"));
  await seed.end();
  issuer = await startDevIssuer({
    users: { alice: { email: "alice@example.com", groups: ["engineering"] } },
    accessTokenTtlSeconds: 600,
  });
  bundleV1 = join(root, "bundle-v1.tar.gz");
  bundleV2 = join(root, "bundle-v2.tar.gz");
  await buildBundle({ policies: packagePath("policies"), output: bundleV1, revision: "rev-1" });
  await buildBundle({ policies: packagePath("policies"), output: bundleV2, revision: "rev-2" });
});

t.teardown(async () => {
  await issuer?.stop();
  await db?.stop();
  rmSync(root, { recursive: true, force: true });
});

interface RunningGateway {
  dir: string;
  configFile: string;
  config: Record<string, unknown>;
  port: number;
  apiPort: number;
  proc: ChildProcess;
  log: () => string;
  exited: Promise<number | null>;
  waitForLog(pattern: RegExp, count?: number, timeoutMs?: number): Promise<void>;
}

function gatewayConfig(
  dir: string,
  port: number,
  apiPort: number,
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  const ic = issuer.issuerConfig();
  return {
    listeners: {
      postgres: { host: "127.0.0.1", port },
      api: { host: "127.0.0.1", port: apiPort },
    },
    policy: { bundle: bundleV1 },
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
    // The test's PostgreSQL as the store: starts faster than the embedded PGlite (no wasm to load).
    store: { type: "postgres", url: db.url },
    audit: { dir: join(dir, "audit") },
    ...extra,
  };
}

async function runGateway(
  t: Test,
  extra: Record<string, unknown> = {},
  configure?: (c: Record<string, unknown>, ports: { port: number; apiPort: number }) => void,
): Promise<RunningGateway> {
  const dir = mkdtempSync(join(root, "gw-"));
  const port = await freePort();
  const apiPort = await freePort();
  const config = gatewayConfig(dir, port, apiPort, extra);
  configure?.(config, { port, apiPort });
  const configFile = join(dir, "gateway.yaml");
  writeFileSync(configFile, stringify(config));
  const gateway = startPamgate(configFile, { TEST_DB_PASSWORD: db.password });
  const { proc, exited } = gateway;
  const gw: RunningGateway = {
    dir,
    configFile,
    config,
    port,
    apiPort,
    proc,
    log: gateway.output,
    exited,
    waitForLog: (pattern, count = 1, timeoutMs = 30_000) => gateway.waitFor(pattern, { count, timeoutMs }),
  };
  t.teardown(async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill("SIGKILL");
      await exited;
    }
  });
  await gw.waitForLog(/pamgate running/, 1, 90_000);
  return gw;
}

async function pgSession(gw: RunningGateway): Promise<pg.Client> {
  const token = await issuer.tokenFor("alice");
  const c = new pg.Client({
    connectionString: `postgres://alice:${encodeURIComponent(token)}@127.0.0.1:${gw.port}/staging-db?sslmode=disable`,
    connectionTimeoutMillis: 10_000,
  });
  c.on("error", () => {}); // a test that expects one listens for it itself
  await c.connect();
  return c;
}

/** psql reading statements from a pipe, as a person types them; `until` waits for its output to show text. */
function psql(gw: RunningGateway, token: string) {
  const proc = spawn(
    "psql",
    [
      "-X",
      "-v",
      "ON_ERROR_STOP=1",
      `host=127.0.0.1 port=${gw.port} dbname=staging-db user=alice sslmode=disable`,
    ],
    { env: { ...process.env, PGPASSWORD: token }, stdio: ["pipe", "pipe", "pipe"] },
  );
  let out = "";
  proc.stdout?.on("data", (c: Buffer) => {
    out += c.toString();
  });
  proc.stderr?.on("data", (c: Buffer) => {
    out += c.toString();
  });
  const exited = new Promise<number | null>((resolve) => proc.once("exit", (code) => resolve(code)));
  return {
    send: (text: string) => proc.stdin?.write(text),
    end: () => proc.stdin?.end(),
    output: () => out,
    exited,
    async until(text: string, timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs;
      while (!out.includes(text)) {
        if (proc.exitCode !== null)
          throw new Error(`psql exited (${proc.exitCode}) waiting for ${text}:\n${out}`);
        if (Date.now() > deadline) throw new Error(`timed out waiting for psql to print ${text}:\n${out}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
  };
}

async function readyz(gw: RunningGateway): Promise<number> {
  return (await fetch(`http://127.0.0.1:${gw.apiPort}/readyz`)).status;
}

interface Rec {
  kind: string;
  body: Record<string, unknown>;
}

async function records(spool: string): Promise<Rec[]> {
  const out: Rec[] = [];
  for await (const r of spoolRecords(spool)) out.push({ kind: r.kind, body: JSON.parse(r.body) });
  return out;
}

function decisions(recs: Rec[]) {
  return recs
    .filter((r) => r.kind === "decision")
    .map(
      (r) =>
        r.body as {
          command_text?: string;
          input?: { resource?: { labels?: Record<string, string> }; session?: { id?: string } };
          bundles?: { pamgate?: { revision?: string } };
          labels?: Record<string, string>;
        },
    );
}

function auditVerify(spool: string) {
  return spawnSync(process.execPath, [BIN, "audit", "verify", "--spool", spool], { encoding: "utf8" });
}

t.test(
  "SIGTERM drains: an open transaction finishes, new connections are refused, /readyz is 503",
  async (t) => {
    const gw = await runGateway(t, { shutdown: { drain_timeout_s: 30, ship_timeout_s: 2 } });
    t.equal(await readyz(gw), 200, "ready before the signal");
    const client = psql(gw, await issuer.tokenFor("alice"));
    client.send("BEGIN;\nUPDATE orders SET status = 'drained' WHERE id = 40;\n");
    await client.until("UPDATE 1");

    const signalled = Date.now();
    gw.proc.kill("SIGTERM");
    await gw.waitForLog(/shutting down: new connections are refused/);
    t.equal(await readyz(gw), 503, "/readyz answers 503 as soon as the drain starts");
    const body = (await (await fetch(`http://127.0.0.1:${gw.apiPort}/readyz`)).json()) as {
      components: Record<string, { state: string; message?: string }>;
    };
    t.match(body.components.lifecycle?.message, /draining/, "and says why");

    const refused = await pgSession(gw).then(
      async (c) => {
        await c.end();
        return null;
      },
      (err: Error & { code?: string }) => err,
    );
    t.equal(refused?.code, "ECONNREFUSED", "a new connection during the drain is refused");

    // The open session goes on: the transaction runs another statement and commits.
    client.send("SELECT status FROM orders WHERE id = 40;\nCOMMIT;\n");
    await client.until("COMMIT");
    client.end();
    t.equal(await client.exited, 0, `psql finished its session:\n${client.output()}`);
    t.match(client.output(), /drained/);

    t.equal(await gw.exited, 0, "the gateway exits 0");
    t.ok(
      Date.now() - signalled < 20_000,
      "once the last session ended, without waiting out the drain timeout",
    );
    t.match(gw.log(), /pamgate stopped: every audit record is on disk/);

    const direct = new pg.Client({ connectionString: db.url });
    await direct.connect();
    const row = await direct.query("SELECT status FROM orders WHERE id = 40");
    await direct.end();
    t.equal(row.rows[0]?.status, "drained", "the transaction committed during the drain");

    const spool = join(gw.dir, "audit");
    const verify = auditVerify(spool);
    t.equal(verify.status, 0, `pamgate audit verify passes:\n${verify.stdout}${verify.stderr}`);
    const recs = await records(spool);
    const texts = decisions(recs).map((d) => d.command_text ?? "");
    t.ok(
      texts.some((x) => /^COMMIT/i.test(x)),
      `the last statement's decision is in the spool: ${JSON.stringify(texts)}`,
    );
    t.ok(
      recs.some((r) => r.kind === "session" && r.body.event === "end"),
      "and the session's end record",
    );
  },
);

t.test("a session still open when the drain times out is ended with 57P01 admin_shutdown", async (t) => {
  const gw = await runGateway(t, { shutdown: { drain_timeout_s: 2, ship_timeout_s: 1 } });
  const idle = await pgSession(gw);
  const idleError = new Promise<Error & { code?: string }>((resolve) => idle.on("error", resolve));
  await idle.query("BEGIN");
  await idle.query("SELECT id FROM orders WHERE id = 41");
  const busy = await pgSession(gw);
  busy.on("error", () => {});
  const sleeping = busy.query("SELECT pg_sleep(60)").then(
    () => null,
    (err: Error & { code?: string }) => err,
  );
  await new Promise((r) => setTimeout(r, 300));

  const signalled = Date.now();
  gw.proc.kill("SIGTERM");
  const [idleErr, busyErr] = await Promise.all([idleError, sleeping]);
  const waited = Date.now() - signalled;
  t.equal(idleErr.code, "57P01", "an idle session in a transaction gets 57P01 admin_shutdown");
  t.match(idleErr.message, /pamgate is shutting down/);
  t.equal(busyErr?.code, "57P01", "so does a session whose statement is still running");
  t.ok(waited >= 1900, `only after the drain timeout (${waited} ms)`);
  t.equal(await gw.exited, 0, "and the gateway exits 0");
  t.match(gw.log(), /drain timeout: ending the sessions still open/);
  await idle.end().catch(() => {});
  await busy.end().catch(() => {});

  const spool = join(gw.dir, "audit");
  t.equal(auditVerify(spool).status, 0, "the spool verifies");
  const ends = (await records(spool)).filter((r) => r.kind === "session" && r.body.event === "end");
  t.equal(ends.length, 2, "both sessions' end records were written before the spool closed");
  for (const e of ends) t.equal(e.body.reason, "pamgate is shutting down");
});

t.test("SIGHUP: a new bundle path and new labels reach new sessions; an open session goes on", async (t) => {
  const gw = await runGateway(t);
  const before = await pgSession(gw);
  await before.query("SELECT id FROM orders WHERE id = 40");

  const next = structuredClone(gw.config) as ReturnType<typeof gatewayConfig> & {
    policy: { bundle: string };
    resources: [{ labels: Record<string, string> }];
    listeners: { postgres: { port: number } };
    approvals?: Record<string, unknown>;
  };
  next.policy.bundle = bundleV2;
  next.resources[0].labels = { env: "staging", team: "payments" };
  next.approvals = { wait_timeout_s: 120 };
  next.listeners.postgres.port = await freePort(); // read only at start: reported, not applied
  writeFileSync(gw.configFile, stringify(next));
  gw.proc.kill("SIGHUP");
  await gw.waitForLog(/configuration reloaded: /);
  t.match(gw.log(), /policy \(revision rev-2\)/, "the log names the new policy revision");
  t.match(gw.log(), /resources: staging-db \(labels\)/, "and the changed resource");
  t.match(gw.log(), /approvals\.wait_timeout_s/);
  t.match(
    gw.log(),
    /read only at start \(restart to apply\): listeners\.postgres/,
    "a listener change is reported as needing a restart",
  );

  const after = await pgSession(gw); // still on the port it started with
  await after.query("SELECT id FROM orders WHERE id = 41");
  const r = await before.query("SELECT id FROM orders WHERE id = 42");
  t.equal(r.rows[0]?.id, 42, "the session opened before the reload is alive and served");
  await after.end();
  await before.end();

  const ds = decisions(await records(join(gw.dir, "audit")));
  const last = ds.at(-1);
  const newSession = ds.find((d) => d.input?.resource?.labels?.team === "payments");
  t.ok(newSession, "a decision of the new session carries the new label");
  t.equal(newSession?.bundles?.pamgate?.revision, "rev-2", "and was made by the new bundle");
  t.same(
    last?.input?.resource?.labels,
    { env: "staging" },
    "the open session keeps the labels it started with",
  );
  t.equal(last?.bundles?.pamgate?.revision, "rev-2", "but is decided by the policy now active");
  gw.proc.kill("SIGTERM");
  t.equal(await gw.exited, 0);
});

t.test(
  "SIGHUP with a broken file: the error names the line and the field; the gateway keeps serving",
  async (t) => {
    const gw = await runGateway(t);
    const open = await pgSession(gw);
    const text = readFileSync(gw.configFile, "utf8");
    const broken = text.replace("    kind: postgres", "    kind: postgres\n    colour: blue");
    t.not(broken, text);
    const line = broken.split("\n").findIndex((l) => l.includes("colour")) + 1;
    writeFileSync(gw.configFile, broken);
    gw.proc.kill("SIGHUP");
    await gw.waitForLog(/configuration reload failed/);
    t.match(
      gw.log(),
      new RegExp(`gateway\\.yaml:${line}: resources\\[0\\]\\.colour: unknown field`),
      "the error names the file, the line and the field",
    );
    t.match(gw.log(), /still running on the previous configuration/);

    // A file whose credentials cannot be read is refused as well, after validation.
    writeFileSync(gw.configFile, text.replace("TEST_DB_PASSWORD", "NOT_SET_ANYWHERE"));
    gw.proc.kill("SIGHUP");
    await gw.waitForLog(/configuration reload failed/, 2);
    t.match(gw.log(), /credentials\.password_env: environment variable NOT_SET_ANYWHERE is not set/);

    // A valid file whose new bundle cannot be loaded: the previous bundle source is put back.
    writeFileSync(gw.configFile, text.replace(bundleV1, join(root, "missing.tar.gz")));
    gw.proc.kill("SIGHUP");
    await gw.waitForLog(/configuration reload failed/, 3);
    t.match(gw.log(), /policy: the new bundle source was not used: .*missing\.tar\.gz/);

    t.equal(await readyz(gw), 200, "still ready");
    const fresh = await pgSession(gw);
    t.equal(
      (await fresh.query("SELECT id FROM orders WHERE id = 40")).rows[0]?.id,
      40,
      "new sessions are served",
    );
    t.equal((await open.query("SELECT 1 AS one")).rows[0]?.one, 1, "and the open one too");
    await fresh.end();
    await open.end();
    const last = decisions(await records(join(gw.dir, "audit"))).at(-1);
    t.equal(last?.bundles?.pamgate?.revision, "rev-1", "decided by the bundle it had all along");
    gw.proc.kill("SIGTERM");
    t.equal(await gw.exited, 0);
  },
);

t.test(
  "workers: 2 — SIGHUP and SIGTERM are forwarded; each worker reloads, drains and flushes its spool",
  async (t) => {
    const gw = await runGateway(t, { workers: 2, shutdown: { drain_timeout_s: 30, ship_timeout_s: 1 } });
    await gw.waitForLog(/pamgate running/, 2, 90_000);
    // Sessions until both workers hold one (BackendKeyData's process id names the worker above bit 24).
    const byWorker = new Map<number, pg.Client>();
    const extra: pg.Client[] = [];
    for (let i = 0; i < 40 && byWorker.size < 2; i++) {
      const c = await pgSession(gw);
      const w = (c as unknown as { processID: number }).processID >>> 24;
      if (byWorker.has(w)) extra.push(c);
      else byWorker.set(w, c);
    }
    await Promise.all(extra.map((c) => c.end()));
    t.equal(byWorker.size, 2, "a session on each worker");

    const next = structuredClone(gw.config) as { resources: [{ labels: Record<string, string> }] };
    next.resources[0].labels = { env: "staging", reloaded: "yes" };
    writeFileSync(gw.configFile, stringify(next));
    gw.proc.kill("SIGHUP");
    await gw.waitForLog(/configuration reloaded: resources: staging-db \(labels\)/, 2);
    t.pass("both workers reloaded");

    gw.proc.kill("SIGTERM");
    await gw.waitForLog(/pamgate primary: stopping the workers/);
    await gw.waitForLog(/shutting down: new connections are refused/, 2);
    for (const [w, c] of byWorker) {
      const r = await c.query("SELECT id FROM orders WHERE id = 40");
      t.equal(r.rows[0]?.id, 40, `worker ${w}'s session is served during the drain`);
      await c.end();
    }
    t.equal(await gw.exited, 0, "the primary exits 0 once both workers have stopped");
    t.match(gw.log(), /pamgate primary: all workers stopped/);
    for (const w of [0, 1]) {
      const spool = join(gw.dir, "audit", `worker-${w}`);
      t.equal(auditVerify(spool).status, 0, `worker ${w}'s spool verifies`);
      const last = decisions(await records(spool)).at(-1);
      t.equal(
        last?.command_text?.startsWith("SELECT id FROM orders"),
        true,
        "and holds the drain's statement",
      );
    }
  },
);
