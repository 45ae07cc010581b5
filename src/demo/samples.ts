// Sample commands from two identities — Alice, an engineer, and the CI bot acting for her (RFC 8693
// delegation) — across the three protocols. The demo prints their verdicts; the decision benchmark evaluates
// them as its realistic workload.
import { currentTime, type Identity, type PolicyInput, type Protocol } from "../decision/contract.js";

const ISSUER = "http://127.0.0.1:9000/dev-issuer";

export const alice: Identity = {
  sub: "alice",
  iss: ISSUER,
  email: "alice@example.com",
  groups: ["engineering"],
  client_id: "pamgate-cli",
  actors: [{ sub: "alice", client_id: "pamgate-cli" }],
};

/** The CI bot, acting for Alice: the token's subject is Alice, the current actor is the bot. */
export const ciBotForAlice: Identity = {
  sub: "alice",
  iss: ISSUER,
  email: "alice@example.com",
  groups: ["engineering"],
  client_id: "ci-bot",
  actors: [{ sub: "alice" }, { sub: "ci-bot", client_id: "ci-bot" }],
};

export interface Sample {
  who: "alice" | "ci-bot for alice";
  /** The command as the user typed it, for display. */
  text: string;
  input: PolicyInput;
}

const resources = {
  postgres: { name: "orders-db", kind: "postgres", labels: { env: "production" } },
  ssh: { name: "web-1", kind: "ssh", labels: { env: "production" } },
  kubernetes: { name: "prod-cluster", kind: "kubernetes", labels: { env: "production" } },
} as const;

function sample(
  identity: Identity,
  protocol: Protocol,
  text: string,
  command: Record<string, unknown>,
): Sample {
  return {
    who: identity === alice ? "alice" : "ci-bot for alice",
    text,
    input: {
      protocol,
      resource: { ...resources[protocol], labels: { ...resources[protocol].labels } },
      identity,
      command,
      session: {
        id: "demo-session",
        client_addr: "127.0.0.1",
        started_at: "2026-11-26T08:00:00Z",
        approval_id: null,
      },
      now: currentTime(),
    },
  };
}

const sql = (
  statement: string,
  category: string,
  read: string[],
  write: string[],
  columns: string[],
  extra: Record<string, unknown> = {},
) => ({
  statement,
  category,
  tables: { read, write },
  columns,
  functions: [],
  has_where: true,
  fingerprint: "",
  param_count: 0,
  ...extra,
});

export function samples(): Sample[] {
  return [
    sample(
      alice,
      "postgres",
      "SELECT id, total FROM orders WHERE id = 42",
      sql("select", "read", ["public.orders"], [], ["public.orders.id", "public.orders.total"]),
    ),
    sample(
      alice,
      "postgres",
      "SELECT name, ssn, email FROM users",
      sql(
        "select",
        "read",
        ["public.users"],
        [],
        ["public.users.name", "public.users.ssn", "public.users.email"],
      ),
    ),
    sample(
      alice,
      "postgres",
      "DELETE FROM orders",
      sql("delete", "write", [], ["public.orders"], [], { has_where: false }),
    ),
    sample(
      alice,
      "postgres",
      "ALTER TABLE orders ADD COLUMN note text",
      sql("alter_table", "ddl", [], ["public.orders"], []),
    ),
    sample(
      ciBotForAlice,
      "postgres",
      "SELECT id, total FROM orders WHERE id = 42",
      sql("select", "read", ["public.orders"], [], ["public.orders.id", "public.orders.total"]),
    ),
    sample(
      ciBotForAlice,
      "postgres",
      "UPDATE orders SET status = 'paid' WHERE id = 42",
      sql("update", "write", [], ["public.orders"], ["public.orders.status", "public.orders.id"]),
    ),
    sample(
      ciBotForAlice,
      "postgres",
      "SELECT pg_read_file('/etc/passwd')",
      sql("select", "read", [], [], [], { functions: ["pg_read_file"] }),
    ),
    sample(alice, "ssh", "sudo systemctl restart app", {
      request: "exec",
      line: "sudo systemctl restart app",
      commands: [{ program: "systemctl", args: ["restart", "app"], sudo: true }],
      sudo: true,
    }),
    sample(ciBotForAlice, "ssh", "rm -rf /", {
      request: "exec",
      line: "rm -rf /",
      commands: [{ program: "rm", args: ["-rf", "/"], sudo: false }],
      sudo: false,
    }),
    sample(alice, "kubernetes", "kubectl -n production get secret db-creds", {
      verb: "get",
      api_group: "",
      api_version: "v1",
      resource: "secrets",
      subresource: "",
      namespace: "production",
      name: "db-creds",
      path: "/api/v1/namespaces/production/secrets/db-creds",
    }),
    sample(alice, "kubernetes", "kubectl -n production delete pod web-7d9", {
      verb: "delete",
      api_group: "",
      api_version: "v1",
      resource: "pods",
      subresource: "",
      namespace: "production",
      name: "web-7d9",
      path: "/api/v1/namespaces/production/pods/web-7d9",
    }),
  ];
}
