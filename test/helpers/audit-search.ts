// Decision records for the audit search tests (test/unit/audit-search.test.ts, and the PostgreSQL backend in
// test/integration/audit-search-postgres.test.ts): every protocol, delegation chains, verdicts that differ from
// what was enforced, an approval's two records, an erased input — written through the real AuditTrail, with
// other kinds of records between them. Each fixture says, independently of the code under test, what its row
// must show, so `expected()` can say which rows a query must return, in which order.
import type { AuditTrail } from "../../src/audit/index.js";
import type { DecisionQuery, DecisionRow, DecisionSearch } from "../../src/audit/search.js";
import type { Decision, Identity, Protocol, Reason, WasmPolicyLike } from "../../src/decision/contract.js";
import { serializeInput } from "../../src/decision/engine.js";
import { sampleInput } from "./bundles.js";

const ISS = "https://idp.example.com";

export const alice: Identity = {
  sub: "alice",
  iss: ISS,
  email: "alice@example.com",
  groups: ["engineering"],
  client_id: null,
  actors: [{ sub: "alice" }],
};
export const ciBotForAlice: Identity = {
  ...alice,
  client_id: "ci-bot",
  actors: [{ sub: "alice" }, { sub: "ci-bot", client_id: "ci-bot" }],
};
/** bob → planner-agent → ci-bot: a chain of three, so a search can match its middle link. */
export const bobViaPlanner: Identity = {
  sub: "bob",
  iss: ISS,
  email: "bob@example.com",
  groups: ["dba"],
  client_id: "ci-bot",
  actors: [
    { sub: "bob" },
    { sub: "planner-agent", client_id: "planner" },
    { sub: "ci-bot", client_id: "ci-bot" },
  ],
};
/** No actors at all (an odd token): the row's chain is the subject alone. */
export const carol: Identity = { ...alice, sub: "carol", email: null, actors: [] };

const erasesEmail: WasmPolicyLike = { has: () => true, evaluate: () => ["/input/identity/email"] };
const failingMask: WasmPolicyLike = {
  has: () => true,
  evaluate: () => {
    throw new Error("mask rule exploded");
  },
};

export interface Fixture {
  id: string;
  ts: string;
  protocol: Protocol;
  resource: string;
  identity: Identity;
  session: string;
  command: Record<string, unknown>;
  verdict: { action: "allow" | "mask" | "block" | "approve"; reasons: Reason[] };
  /** What the gateway enforced, when it is not the verdict. */
  enforced?: { action: string; reasons?: Reason[] };
  approvalId?: string;
  /** The input is erased from the event (the mask rule failed). */
  erased?: boolean;
  /** What the row must show. */
  text: string;
  kind?: string;
}

/** In the past, so that a spool's segments (written now) are never older than their events. */
const BASE = Date.parse("2024-06-01T08:00:00Z");

/** Event time i steps after BASE; odd ones 456 µs past the millisecond (bounds are whole milliseconds). */
export function ts(i: number, stepSeconds = 1): string {
  return `${dateOf(i, stepSeconds).toISOString().slice(0, -1)}${i % 2 ? "456" : "000"}Z`;
}

export function dateOf(i: number, stepSeconds = 1): Date {
  return new Date(BASE + i * stepSeconds * 1000);
}

const r = (code: string, message = `because ${code}`): Reason => ({ code, message });

let counter = 0;
function id(n: number): string {
  return `00000000-0000-4000-8000-${String(n).padStart(12, "0")}`;
}

/** The fixture set, in record order (event times increasing, two records of one approved decision share one). */
export function fixtures(): Fixture[] {
  counter = 0;
  const fx: Fixture[] = [];
  const add = (f: Omit<Fixture, "id" | "ts"> & { id?: string; ts?: string }) => {
    counter++;
    fx.push({ id: f.id ?? id(counter), ts: f.ts ?? ts(counter), ...f } as Fixture);
  };
  const pg = (statement: string, read: string[], write: string[] = []) => ({
    statement,
    category: write.length ? "write" : "read",
    tables: { read, write },
    has_where: true,
    fingerprint: "5a1b2c3d4e5f6071",
  });
  add({
    protocol: "postgres",
    resource: "orders-db",
    identity: alice,
    session: "sess-pg-1",
    command: pg("select", ["public.users"]),
    verdict: { action: "allow", reasons: [r("pg.read")] },
    text: "select public.users",
    kind: "select",
  });
  add({
    protocol: "postgres",
    resource: "orders-db",
    identity: ciBotForAlice,
    session: "sess-pg-2",
    command: { ...pg("delete", [], ["public.orders"]), has_where: false },
    verdict: { action: "block", reasons: [r("pg.no_where", "DELETE without a WHERE clause")] },
    text: "delete public.orders",
    kind: "delete",
  });
  add({
    protocol: "postgres",
    resource: "orders-db",
    identity: alice,
    session: "sess-pg-1",
    command: pg("select", ["public.users"]),
    verdict: { action: "mask", reasons: [r("pg.pii_masked")] },
    enforced: { action: "block", reasons: [r("pg.mask_unsafe", "upper(ssn) would leak a masked column")] },
    text: "select public.users",
    kind: "select",
  });
  // An approval: the held request, then (same decision, same time) the grant it ran under.
  const ddl = { id: id(1000), ts: ts(counter + 1) };
  add({
    ...ddl,
    protocol: "postgres",
    resource: "orders-db",
    identity: alice,
    session: "sess-pg-1",
    command: pg("alter_table", [], ["public.orders"]),
    verdict: { action: "approve", reasons: [r("pg.ddl_needs_approval")] },
    approvalId: "apr-1",
    text: "alter_table public.orders",
    kind: "alter_table",
  });
  counter--;
  add({
    ...ddl,
    protocol: "postgres",
    resource: "orders-db",
    identity: alice,
    session: "sess-pg-1",
    command: pg("alter_table", [], ["public.orders"]),
    verdict: { action: "approve", reasons: [r("pg.ddl_needs_approval")] },
    enforced: { action: "allow" },
    approvalId: "apr-1",
    text: "alter_table public.orders",
    kind: "alter_table",
  });
  add({
    protocol: "ssh",
    resource: "web-1",
    identity: bobViaPlanner,
    session: "sess-ssh-1",
    command: { request: "exec", line: "sudo systemctl restart nginx", commands: [], pty: false },
    verdict: { action: "allow", reasons: [r("ssh.exec_allowed")] },
    text: "sudo systemctl restart nginx",
    kind: "exec",
  });
  add({
    protocol: "ssh",
    resource: "web-1",
    identity: bobViaPlanner,
    session: "sess-ssh-1",
    command: { request: "exec", line: "rm -rf /srv/data", commands: [], pty: false },
    verdict: { action: "block", reasons: [r("ssh.destructive"), r("ssh.machine_write")] },
    text: "rm -rf /srv/data",
    kind: "exec",
  });
  add({
    protocol: "ssh",
    resource: "web-2",
    identity: carol,
    session: "sess-ssh-2",
    command: { request: "shell", pty: true, term: "xterm" },
    verdict: { action: "allow", reasons: [] },
    text: "shell",
    kind: "shell",
  });
  add({
    protocol: "ssh",
    resource: "web-2",
    identity: carol,
    session: "sess-ssh-2",
    command: { request: "env", name: "LANG" },
    verdict: { action: "allow", reasons: [] },
    text: "env LANG",
    kind: "env",
  });
  add({
    protocol: "ssh",
    resource: "web-2",
    identity: carol,
    session: "sess-ssh-2",
    command: { request: "sftp", op: "open", path: "/etc/hosts", direction: "download", mutating: false },
    verdict: { action: "block", reasons: [r("ssh.sftp_denied")] },
    text: "sftp open /etc/hosts",
    kind: "sftp",
  });
  add({
    protocol: "ssh",
    resource: "web-2",
    identity: carol,
    session: "sess-ssh-2",
    command: { request: "port_forward", direction: "local", host: "db.internal", port: 5432 },
    verdict: { action: "block", reasons: [r("ssh.port_forward")] },
    text: "port_forward local db.internal 5432",
    kind: "port_forward",
  });
  add({
    protocol: "kubernetes",
    resource: "prod-cluster",
    identity: ciBotForAlice,
    session: "sess-k8s-1",
    command: { verb: "list", resource: "pods", namespace: "shop", path: "/api/v1/namespaces/shop/pods" },
    verdict: { action: "allow", reasons: [r("k8s.read")] },
    text: "list /api/v1/namespaces/shop/pods",
    kind: "list",
  });
  add({
    protocol: "kubernetes",
    resource: "prod-cluster",
    identity: alice,
    session: "sess-k8s-1",
    command: {
      verb: "get",
      resource: "secrets",
      namespace: "shop",
      name: "db",
      path: "/api/v1/namespaces/shop/secrets/db",
    },
    verdict: { action: "mask", reasons: [r("k8s.secret_masked")] },
    text: "get /api/v1/namespaces/shop/secrets/db",
    kind: "get",
  });
  add({
    protocol: "kubernetes",
    resource: "prod-cluster",
    identity: bobViaPlanner,
    session: "sess-k8s-2",
    command: {
      verb: "exec",
      resource: "pods",
      subresource: "exec",
      namespace: "shop",
      name: "web-1",
      path: "/api/v1/namespaces/shop/pods/web-1/exec",
      command: ["sh", "-c", "ls"],
    },
    verdict: { action: "block", reasons: [r("k8s.exec_blocked")] },
    text: "exec /api/v1/namespaces/shop/pods/web-1/exec",
    kind: "exec",
  });
  add({
    protocol: "postgres",
    resource: "orders-db",
    identity: alice,
    session: "sess-pg-3",
    command: pg("truncate", [], ["public.orders"]),
    verdict: { action: "block", reasons: [r("pg.truncate")] },
    erased: true,
    text: "",
  });
  add({
    protocol: "postgres",
    resource: "analytics-db",
    identity: bobViaPlanner,
    session: "sess-pg-4",
    command: pg("insert", ["public.orders", "public.audit_log"], ["public.audit_log"]),
    verdict: { action: "allow", reasons: [r("pg.write_allowed")] },
    text: "insert public.audit_log,public.orders",
    kind: "insert",
  });
  add({
    protocol: "kubernetes",
    resource: "prod-cluster",
    identity: carol,
    session: "sess-k8s-3",
    command: { verb: "get", path: "/version", is_resource_request: false },
    verdict: { action: "allow", reasons: [r("k8s.nonresource")] },
    text: "get /version",
    kind: "get",
  });
  add({
    protocol: "postgres",
    resource: "analytics-db",
    identity: bobViaPlanner,
    session: "sess-pg-4",
    command: pg("select", ["public.orders"]),
    verdict: { action: "allow", reasons: [r("pg.read")] },
    enforced: {
      action: "block",
      reasons: [r("batch.blocked", "command 2 of 2 in this message was blocked")],
    },
    text: "select public.orders",
    kind: "select",
  });
  return fx;
}

/** A synthetic set of n decisions (for paging, segment rotation and the scan bound), stepSeconds apart. */
export function manyFixtures(n: number, from = 1, stepSeconds = 1): Fixture[] {
  const out: Fixture[] = [];
  for (let i = from; i < from + n; i++) {
    const who = [alice, ciBotForAlice, bobViaPlanner, carol][i % 4] as Identity;
    out.push({
      id: id(100_000 + i),
      ts: ts(i, stepSeconds),
      protocol: "postgres",
      resource: i % 3 ? "orders-db" : "analytics-db",
      identity: who,
      session: `sess-many-${i % 7}`,
      command: { statement: "select", category: "read", tables: { read: [`public.t${i}`], write: [] } },
      verdict:
        i % 5
          ? { action: "allow", reasons: [r("pg.read")] }
          : { action: "block", reasons: [r("pg.no_where")] },
      text: `select public.t${i}`,
      kind: "select",
    });
  }
  return out;
}

export function toDecision(f: Fixture): Decision {
  const input = sampleInput({
    protocol: f.protocol,
    resource: { name: f.resource, kind: f.protocol, labels: { env: "production" } },
    identity: f.identity,
    session: { id: f.session, client_addr: "10.1.2.3", approval_id: null },
    command: f.command,
  });
  return {
    decision_id: f.id,
    verdict: { action: f.verdict.action, reasons: f.verdict.reasons, mask: [], approval: null },
    revision: "rev-42",
    eval_ns: 1000,
    timestamp: f.ts,
    input_json: serializeInput(input),
    policy: f.erased ? failingMask : erasesEmail,
  };
}

/** Where a fixture's record went. */
export interface Placed {
  fixture: Fixture;
  spool_id: string;
  seq: number;
}

/**
 * Records the fixtures in order, with records of other kinds between them (session start/end, transcript and
 * terminal chunks, an approval event that looks like a decision but is not one).
 */
export async function recordFixtures(audit: AuditTrail, list: Fixture[], others = true): Promise<Placed[]> {
  const placed: Placed[] = [];
  const spoolId = audit.spool.id as string;
  for (const [i, f] of list.entries()) {
    if (others && i % 4 === 0) {
      await audit.record("session", { event: "start", session_id: f.session, sub: f.identity.sub });
      await audit.record("approval", {
        decision_id: f.id,
        action: "block",
        protocol: f.protocol,
        identity: { sub: f.identity.sub },
        timestamp: f.ts,
      });
    }
    const receipt = await audit.recordDecision(toDecision(f), {
      ...(f.enforced ? { action: f.enforced.action } : {}),
      ...(f.enforced?.reasons ? { reasons: f.enforced.reasons } : {}),
      ...(f.approvalId ? { approval_id: f.approvalId } : {}),
    });
    placed.push({ fixture: f, spool_id: spoolId, seq: receipt.seq });
    if (others && i % 5 === 2) {
      const tr = audit.openTranscript(f.session, { meta: { protocol: f.protocol } });
      tr.entry({ event: "statement", decision_id: f.id, action: "block", text: f.text });
      await tr.close();
    }
  }
  return placed;
}

/** What the rows of these records must say, from the fixtures alone. */
export function expectedRow(p: Placed): DecisionRow {
  const f = p.fixture;
  const action = f.enforced?.action ?? f.verdict.action;
  const reasons = f.enforced?.reasons ?? f.verdict.reasons;
  const row: DecisionRow = {
    decision_id: f.id,
    timestamp: f.ts,
    protocol: f.protocol,
    resource: f.resource,
    action,
    identity: {
      sub: f.identity.sub,
      chain: f.identity.actors.length ? f.identity.actors.map((a) => a.sub) : [f.identity.sub],
    },
    command: f.text,
    reasons: reasons.map((x) => ({ code: x.code, message: x.message })),
    session_id: f.session,
    approval_id: f.approvalId ?? null,
    revision: "rev-42",
    where: { spool_id: p.spool_id, seq: p.seq },
  };
  if (action !== f.verdict.action) row.verdict = f.verdict.action;
  if (f.kind) row.command_kind = f.kind;
  return row;
}

/** The rows a query must return, all pages together: filtered from the fixtures, newest first. */
export function expected(placed: Placed[], q: Omit<DecisionQuery, "limit" | "before">): DecisionRow[] {
  const keep = placed.filter(({ fixture: f }) => {
    const action = f.enforced?.action ?? f.verdict.action;
    const codes = (f.enforced?.reasons ?? f.verdict.reasons).map((x) => x.code);
    if (
      q.identity !== undefined &&
      f.identity.sub !== q.identity &&
      !f.identity.actors.some((a) => a.sub === q.identity)
    )
      return false;
    if (q.resource !== undefined && f.resource !== q.resource) return false;
    if (q.protocol !== undefined && f.protocol !== q.protocol) return false;
    if (q.action !== undefined && action !== q.action) return false;
    if (q.reason !== undefined && !codes.includes(q.reason)) return false;
    if (q.sessionId !== undefined && f.session !== q.sessionId) return false;
    if (q.q !== undefined && !f.text.toLowerCase().includes(q.q.toLowerCase())) return false;
    // Fixture times are all in one format, so they compare as text.
    if (q.since && f.ts < `${q.since.toISOString().slice(0, -1)}000Z`) return false;
    if (q.until && f.ts >= `${q.until.toISOString().slice(0, -1)}000Z`) return false;
    return true;
  });
  keep.sort((a, b) =>
    a.fixture.ts !== b.fixture.ts
      ? a.fixture.ts < b.fixture.ts
        ? 1
        : -1
      : a.spool_id !== b.spool_id
        ? a.spool_id < b.spool_id
          ? -1
          : 1
        : b.seq - a.seq,
  );
  return keep.map(expectedRow);
}

/** Every page of a query, following the cursors; each page's size and the pages' count are checked by callers. */
export async function allPages(
  search: DecisionSearch,
  query: DecisionQuery,
  maxPages = 1000,
): Promise<{ rows: DecisionRow[]; pages: number; sizes: number[]; scanned: number[] }> {
  const rows: DecisionRow[] = [];
  const sizes: number[] = [];
  const scanned: number[] = [];
  let before: string | undefined;
  for (let pages = 1; pages <= maxPages; pages++) {
    const page = await search.searchDecisions({ ...query, ...(before ? { before } : {}) });
    rows.push(...page.decisions);
    sizes.push(page.decisions.length);
    scanned.push(page.scanned);
    if (!page.next_cursor) return { rows, pages, sizes, scanned };
    before = page.next_cursor;
  }
  throw new Error(`more than ${maxPages} pages`);
}

/** Queries covering every filter alone and in combinations (without limit). */
export function queries(): Array<Omit<DecisionQuery, "limit" | "before">> {
  return [
    {},
    { identity: "alice" },
    { identity: "planner-agent" },
    { identity: "ci-bot" },
    { identity: "carol" },
    { identity: "nobody" },
    { resource: "orders-db" },
    { resource: "web-2" },
    { protocol: "postgres" },
    { protocol: "ssh" },
    { protocol: "kubernetes" },
    { action: "block" },
    { action: "allow" },
    { action: "mask" },
    { action: "approve" },
    { reason: "pg.mask_unsafe" },
    { reason: "pg.pii_masked" },
    { reason: "ssh.machine_write" },
    { reason: "batch.blocked" },
    { q: "SYSTEMCTL" },
    { q: "Public.Orders" },
    { q: "list /API/v1/namespaces/shop" },
    { q: "db.internal 5432" },
    { q: "" },
    { sessionId: "sess-pg-1" },
    { sessionId: "sess-pg" },
    { since: dateOf(4) },
    { until: dateOf(8) },
    { since: dateOf(5), until: dateOf(7) },
    { since: dateOf(4), until: dateOf(4) },
    { identity: "alice", action: "block" },
    { identity: "planner-agent", protocol: "kubernetes" },
    { protocol: "postgres", q: "orders", action: "block" },
    { resource: "orders-db", reason: "pg.no_where", since: dateOf(1), until: dateOf(3) },
    { identity: "bob", sessionId: "sess-ssh-1", q: "rm -rf", action: "block", reason: "ssh.destructive" },
  ];
}

/** Filter values an attacker might try (none is in the fixtures' fields or command texts). */
export const HOSTILE = [
  "'; DROP TABLE pamgate_audit; --",
  "' OR '1'='1",
  "alice' OR 1=1 --",
  '") OR true --',
  "%",
  "orders%",
  "order_",
  "\\",
  "$1",
  "*/ SELECT 1 /*",
  '{"sub":"alice"}',
  "alice\u0000",
  "\u0000",
  "ålice 💥",
  "alice\n",
];
