// The configuration reload plan (src/gateway/reload.ts): which changes a SIGHUP applies and which wait for a
// restart. The running gateway's side is in test/integration/lifecycle.test.ts.
import t from "tap";
import { parseConfig } from "../../src/config/load.js";
import type { GatewayConfig } from "../../src/config/schema.js";
import { planReload } from "../../src/gateway/reload.js";

const BASE = `
listeners:
  postgres: { host: 127.0.0.1, port: 6432 }
  api: { host: 127.0.0.1, port: 8181, audit_groups: [audit] }
policy: { bundle: /srv/bundle.tar.gz }
identity:
  issuers: [{ issuer: "https://idp.example.com", audience: pamgate }]
resources:
  - name: orders-db
    kind: postgres
    labels: { env: production }
    upstream: { host: db.internal, port: 5432, database: orders, user: gw }
    credentials: { password_env: ORDERS_PW }
  - name: billing-db
    kind: postgres
    upstream: { host: db2.internal, port: 5432, database: billing, user: gw }
    credentials: { password_env: BILLING_PW }
store: { type: postgres, url_env: STORE_URL }
audit: { dir: /var/lib/pamgate/audit, sinks: [{ type: file, path: /var/log/pamgate.jsonl }] }
approvals: { wait_timeout_s: 300, admin_groups: [security] }
`;

const base = () => parseConfig(BASE, "gateway.yaml");
function edit(change: (c: GatewayConfig) => void): GatewayConfig {
  const c = base();
  change(c);
  return c;
}

t.test("the same configuration: nothing to do", async (t) => {
  t.same(planReload(base(), base()), {
    restartRequired: [],
    policy: false,
    resources: { added: [], removed: [], changed: [] },
    approvals: [],
    auditGroups: false,
    auditSinks: false,
    shutdown: false,
  });
});

t.test("what applies at once", async (t) => {
  const next = edit((c) => {
    c.policy = { url: "https://bundles.example.com/pamgate.tar.gz" };
    (c.resources[0] as { labels: Record<string, string> }).labels = { env: "staging" };
    c.resources.splice(1, 1);
    c.resources.push({ ...c.resources[0], name: "new-db" } as GatewayConfig["resources"][number]);
    c.approvals = { wait_timeout_s: 60, admin_groups: [security(), "sre"] };
    c.listeners.api = { host: "127.0.0.1", port: 8181, audit_groups: ["audit", "legal"] };
    c.audit = { dir: "/var/lib/pamgate/audit", sinks: [] };
    c.shutdown = { drain_timeout_s: 120 };
  });
  const plan = planReload(base(), next);
  t.same(plan.restartRequired, [], "none of these needs a restart");
  t.ok(plan.policy);
  t.same(plan.resources, { added: ["new-db"], removed: ["billing-db"], changed: ["orders-db"] });
  t.same(plan.approvals, ["approvals.wait_timeout_s", "approvals.admin_groups"]);
  t.ok(plan.auditGroups);
  t.ok(plan.auditSinks);
  t.ok(plan.shutdown);
});

function security() {
  return "security";
}

t.test("what needs a restart, by name", async (t) => {
  const next = edit((c) => {
    c.listeners.postgres = { host: "0.0.0.0", port: 6432 };
    c.listeners.api = { host: "0.0.0.0", port: 8181, audit_groups: ["audit"] };
    c.identity = { issuers: [{ issuer: "https://other.example.com", audience: "pamgate" }] };
    c.store = { type: "postgres", url_env: "OTHER_STORE_URL" };
    c.workers = 2;
    c.audit = { dir: "/elsewhere", sinks: [{ type: "file", path: "/var/log/pamgate.jsonl" }] };
  });
  const plan = planReload(base(), next);
  t.same(plan.restartRequired, [
    "audit",
    "identity",
    "listeners.api",
    "listeners.postgres",
    "store",
    "workers",
  ]);
  t.notOk(plan.auditSinks, "the sinks themselves did not change");
  t.notOk(plan.auditGroups);
});

t.test("an audit trail that comes or goes is a restart, not a sink change", async (t) => {
  const next = edit((c) => {
    delete c.audit;
  });
  const plan = planReload(base(), next);
  t.same(plan.restartRequired, ["audit"]);
  t.notOk(plan.auditSinks);
});

t.test("a section the plan does not know is reported as needing a restart", async (t) => {
  const next = edit((c) => {
    (c as Record<string, unknown>).some_future_section = { x: 1 };
  });
  t.same(planReload(base(), next).restartRequired, ["some_future_section"]);
});
