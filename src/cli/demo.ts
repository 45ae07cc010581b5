// `pamgate demo` — what `npm start` runs: the whole gateway on embedded defaults. An embedded PostgreSQL
// (PGlite) with sample data, the development OIDC issuer, the example policies (rebuilt on every save), the
// embedded store, all on loopback; then it prints copy-paste psql commands showing allow, mask, block and
// approve for an engineer and for a CI bot acting for her.
import { mkdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { GatewayConfig } from "../config/schema.js";
import { startEmbeddedDatabase } from "../demo/embedded-db.js";
import { startDemoSshTarget } from "../demo/ssh-target.js";
import { startGateway } from "../gateway/gateway.js";
import { createLogger } from "../util/log.js";
import { packagePath } from "../util/tools.js";
import { parse } from "./args.js";

export const DEMO_USERS = {
  alice: { email: "alice@example.com", groups: ["engineering"] },
  bob: { email: "bob@example.com", groups: ["dba", "sre"] },
};

export async function demoCommand(argv: string[]): Promise<number> {
  const { values } = parse("demo", argv, {
    port: { type: "string", default: process.env.PAMGATE_PG_PORT ?? "6432" },
    "api-port": { type: "string", default: process.env.PAMGATE_API_PORT ?? "8181" },
    "data-dir": { type: "string", default: ".pamgate" },
    "ssh-port": { type: "string", default: process.env.PAMGATE_SSH_PORT ?? "2222" },
  });
  const dataDir = resolve(values["data-dir"]);
  await mkdir(dataDir, { recursive: true });
  const log = createLogger(process.env.PAMGATE_LOG_LEVEL ?? "warn");
  const db = await startEmbeddedDatabase();
  // An SSH target when OpenSSH's sshd is installed: a loopback sshd trusting a CA made for the demo.
  const ssh = await startDemoSshTarget(dataDir, Number(values["ssh-port"])).catch((err: unknown) => {
    log.warn(`no SSH demo target: ${(err as Error).message}`);
    return null;
  });
  const config: GatewayConfig = {
    listeners: {
      postgres: { host: "127.0.0.1", port: Number(values.port) },
      api: { host: "127.0.0.1", port: Number(values["api-port"]) },
      ...(ssh ? { ssh: ssh.listener } : {}),
    },
    policy: { policies: packagePath("policies") },
    identity: { dev_issuer: {} },
    resources: [
      {
        name: "orders-db",
        kind: "postgres",
        labels: { env: "production" },
        upstream: { host: db.host, port: db.port, database: "postgres", user: "postgres" },
        credentials: { password: "embedded-demo" },
      },
      ...(ssh ? ssh.resources : []),
    ],
    store: { type: "embedded", dir: join(dataDir, "store") },
    audit: { dir: join(dataDir, "audit") },
    // dba members approve DDL and, as admins, search the audit trail and replay sessions in the console.
    approvals: { wait_timeout_s: 300, admin_groups: ["dba"] },
  };
  const gw = await startGateway(config, {
    log,
    devUsers: DEMO_USERS,
    devClients: ["ci-bot"],
    devTokenTtlSeconds: 8 * 3600,
  });
  const issuer = gw.devIssuer as NonNullable<typeof gw.devIssuer>;
  const alice = await issuer.tokenFor("alice");
  const bot = await issuer.delegatedToken(alice, "ci-bot");
  const bob = await issuer.tokenFor("bob");
  const port = gw.listeners.postgres?.port;
  const psql = (who: string, sql: string) =>
    `  PGPASSWORD="$${who}" psql -h 127.0.0.1 -p ${port} -U ${who.toLowerCase()} orders-db -c "${sql.replace(/"/g, '\\"')}"`;
  const out = [
    "",
    "pamgate is running on embedded DEVELOPMENT defaults (loopback only; tokens from a development issuer).",
    `  PostgreSQL gateway  127.0.0.1:${port}   resource "orders-db" (env=production), an embedded demo database`,
    `  policy              ${packagePath("policies")} (rebuilt with opa on every save; revision ${gw.engine.revision})`,
    `  web console         http://127.0.0.1:${gw.api?.port}/console/  (sign in as bob: approvals, audit search, session replay)`,
    `  control-plane API   http://127.0.0.1:${gw.api?.port}  (approvals, /metrics, /openapi.json)`,
    `  identity            ${issuer.issuer} (development issuer)`,
    `  audit spool         ${join(dataDir, "audit")}  (follow it: node ${packagePath("bin", "pamgate.js")} audit tail --spool ${join(dataDir, "audit")} --follow)`,
    "",
    "Tokens (8 h) — paste these into your shell:",
    `  export ALICE='${alice}'`,
    `  export CIBOT='${bot}'    # ci-bot acting for alice (RFC 8693 delegation)`,
    `  export BOB='${bob}'      # bob is in the dba group`,
    "",
    "Alice, an engineer:",
    `${psql("ALICE", "SELECT id, total FROM orders WHERE id = 42")}        # allow`,
    `${psql("ALICE", "SELECT name, ssn, email FROM users")}               # mask: ssn and email rewritten`,
    `${psql("ALICE", "SELECT * FROM users LIMIT 10")}                     # mask: * expanded, column by column`,
    `${psql("ALICE", "DELETE FROM orders")}                               # block: no WHERE clause`,
    `${psql("ALICE", "ALTER TABLE orders ADD COLUMN note text")}          # approve: waits for a dba`,
    "",
    "The CI bot acting for Alice (read-only by policy):",
    `${psql("CIBOT", "SELECT id, total FROM orders WHERE id = 42")}       # allow`,
    `${psql("CIBOT", "UPDATE orders SET status = 'paid' WHERE id = 42")}  # block: machines only read`,
    "",
    `While Alice's ALTER TABLE waits, Bob approves it in the web console (http://127.0.0.1:${gw.api?.port}/console/)`,
    "or from another shell (the id is in the NOTICE):",
    `  PAMGATE_API=http://127.0.0.1:${gw.api?.port} PAMGATE_TOKEN="$BOB" node ${packagePath("bin", "pamgate.js")} approvals approve <id>`,
    "",
    ...(ssh
      ? ["", ...ssh.tryCommands(gw.listeners.ssh?.port ?? 0)]
      : ["", "(no SSH target: install openssh-server for one)"]),
    "",
    "Press Ctrl-C to stop.",
  ];
  process.stdout.write(`${out.join("\n")}\n`);
  await new Promise<void>((resolveStop) => {
    const stop = () => resolveStop();
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
  });
  await gw.close();
  await ssh?.stop();
  await db.stop();
  return 0;
}
