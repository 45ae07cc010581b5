// A whole gateway for integration tests, from real parts: a PostgreSQL server started from the installed
// binaries and seeded with the demo schema, the development OIDC issuer, the example policy bundle built
// with opa, the embedded store, and the PostgreSQL listener on a random loopback port.
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { buildBundle } from "../../src/bundles/build.js";
import type { GatewayConfig } from "../../src/config/schema.js";
import { type Gateway, type GatewayExtras, startGateway } from "../../src/gateway/gateway.js";
import { packagePath } from "../../src/util/tools.js";
import { type PostgresServer, startPostgres } from "./postgres.js";

export const DEMO_USERS = {
  alice: { email: "alice@example.com", groups: ["engineering"] },
  bob: { email: "bob@example.com", groups: ["dba", "sre"] },
  carol: { email: "carol@example.com", groups: ["dba", "pii-readers"] },
};

export interface TestGateway {
  gw: Gateway;
  db: PostgresServer;
  dir: string;
  /** A connection string to the gateway for `resource` with `token` as the password. */
  url(token: string, resource?: string): string;
  /** Runs psql against the gateway (asynchronously: the gateway runs in this process). */
  psql(
    token: string,
    sql: string,
    opts?: { resource?: string; args?: string[]; input?: string },
  ): Promise<RunResult>;
  tokenFor(user: keyof typeof DEMO_USERS): Promise<string>;
  botFor(user: keyof typeof DEMO_USERS, bot?: string): Promise<string>;
  /** A direct connection to the database (bypassing the gateway), for checks. */
  direct(): Promise<pg.Client>;
  stop(): Promise<void>;
}

/**
 * `overrides` replace top-level sections of the default configuration; as a function they are computed from the
 * started database and the defaults (e.g. to add a resource: `(db, base) => ({resources: [...base.resources, …]})`).
 */
export async function startTestGateway(
  overrides:
    | Partial<GatewayConfig>
    | ((db: PostgresServer, base: GatewayConfig) => Partial<GatewayConfig>) = {},
  extras: GatewayExtras = {},
): Promise<TestGateway> {
  const dir = mkdtempSync(join(tmpdir(), "pamgate-gw-"));
  const db = await startPostgres();
  execFileSync(
    "psql",
    [db.url, "-q", "-v", "ON_ERROR_STOP=1", "-f", packagePath("src", "demo", "seed.sql")],
    {
      stdio: ["ignore", "ignore", "pipe"],
    },
  );
  const bundle = join(dir, "bundle.tar.gz");
  await buildBundle({ policies: packagePath("policies"), output: bundle, revision: "test" });
  const base: GatewayConfig = {
    listeners: { postgres: { host: "127.0.0.1", port: 0 } },
    policy: { bundle },
    identity: { dev_issuer: {} },
    resources: [
      {
        name: "orders-db",
        kind: "postgres",
        labels: { env: "production" },
        upstream: { host: db.host, port: db.port, database: db.database, user: db.user },
        credentials: { password: db.password },
      },
      {
        name: "staging-db",
        kind: "postgres",
        labels: { env: "staging" },
        upstream: { host: db.host, port: db.port, database: db.database, user: db.user },
        credentials: { password: db.password },
      },
    ],
    store: { type: "embedded", dir: join(dir, "store") },
    audit: { dir: join(dir, "audit") },
    approvals: { wait_timeout_s: 20 },
  };
  const config: GatewayConfig = {
    ...base,
    ...(typeof overrides === "function" ? overrides(db, base) : overrides),
  };
  const gw = await startGateway(config, {
    devUsers: DEMO_USERS,
    devClients: ["ci-bot", "deploy-agent"],
    ...extras,
  });
  const port = gw.listeners.postgres?.port as number;
  const issuer = gw.devIssuer as NonNullable<Gateway["devIssuer"]>;
  const url = (token: string, resource = "orders-db") =>
    `postgres://alice:${encodeURIComponent(token)}@127.0.0.1:${port}/${resource}?sslmode=disable`;
  return {
    gw,
    db,
    dir,
    url,
    psql(token, sql, opts = {}) {
      return run(
        "psql",
        [url(token, opts.resource), "-X", "-A", "-t", ...(opts.args ?? []), "-c", sql],
        opts.input,
      );
    },
    tokenFor: (user) => issuer.tokenFor(user),
    botFor: async (user, bot = "ci-bot") => issuer.delegatedToken(await issuer.tokenFor(user), bot),
    async direct() {
      const c = new pg.Client({ connectionString: db.url });
      await c.connect();
      return c;
    },
    async stop() {
      await gw.close();
      await db.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs a client program without blocking the event loop (a spawnSync would freeze the in-process gateway it
 * talks to) and collects its output.
 */
export function run(
  cmd: string,
  args: string[],
  input?: string,
  env?: NodeJS.ProcessEnv,
): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { env: env ?? process.env, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => {
      stdout += c.toString();
    });
    child.stderr.on("data", (c: Buffer) => {
      stderr += c.toString();
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), 120_000);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    // A program that exits without reading its input (taskset, a quick failure) closes the pipe: not an error.
    child.stdin.on("error", () => {});
    child.stdin.end(input ?? "");
  });
}
