// Prometheus metrics shared by every part of the gateway, in one registry the control plane exposes at
// /metrics. Names follow Prometheus conventions: a `pamgate_` prefix, base units, `_total` for counters.
import { Counter, Gauge, Histogram, Registry } from "prom-client";

export const registry = new Registry();

export const metrics = {
  decisions: new Counter({
    name: "pamgate_decisions_total",
    help: "Policy decisions by verdict action and protocol",
    labelNames: ["action", "protocol"] as const,
    registers: [registry],
  }),
  reusedVerdicts: new Counter({
    name: "pamgate_policy_reused_verdicts_total",
    help: "Decisions answered from an identical input's evaluation (same session, command, second and bundle)",
    labelNames: ["protocol"] as const,
    registers: [registry],
  }),
  evaluationSeconds: new Histogram({
    name: "pamgate_policy_evaluation_seconds",
    help: "Time to evaluate one command in the policy engine",
    labelNames: ["protocol"] as const,
    buckets: [5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 1e-2],
    registers: [registry],
  }),
  pendingApprovals: new Gauge({
    name: "pamgate_pending_approvals",
    help: "Approval requests waiting for a decision",
    registers: [registry],
  }),
  tokenRejections: new Counter({
    name: "pamgate_token_rejections_total",
    help: "Access tokens rejected, by the check that failed",
    labelNames: ["reason"] as const,
    registers: [registry],
  }),
  bundleLoads: new Counter({
    name: "pamgate_bundle_loads_total",
    help: "Bundle load attempts by outcome",
    labelNames: ["outcome"] as const,
    registers: [registry],
  }),
  auditRecords: new Counter({
    name: "pamgate_audit_records_total",
    help: "Records written durably to the audit spool",
    labelNames: ["kind"] as const,
    registers: [registry],
  }),
};
