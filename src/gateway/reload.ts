// What a configuration reload (SIGHUP) can change in a running gateway, and what only a restart can. The plan
// compares the running configuration with the new one, section by section; gateway.ts applies it. Nothing here
// touches a connection: open sessions keep the resource, credentials and labels they started with.
//
// Applied at once:
//   policy              the bundle source and its settings (bundle / url / policies, verification, cache_dir) —
//                       the new source must activate a bundle, or the old source stays
//   resources           added, removed, changed: labels, upstream, credentials (re-read on every reload, so a
//                       rotated password file is picked up) — for new sessions
//   approvals           wait_timeout_s, pending_ttl_s, admin_groups, approver_groups, webhook
//   listeners.api.audit_groups
//   audit.sinks         sinks added or removed (each keeps its own cursor, so a removed and re-added sink resumes)
//   shutdown            the drain and ship timeouts of the next shutdown
// Restart required (reported, not applied):
//   listeners (addresses, TLS, every listener setting), identity, store, workers, audit (dir, sizes, durability),
//   listeners.api (host, port, console), and any other section
import type { GatewayConfig, ResourceConfig } from "../config/schema.js";

export interface ReloadPlan {
  /** Changed settings that are read only at start: they take effect at the next restart. */
  restartRequired: string[];
  /** The policy section changed: a new bundle source replaces the running one. */
  policy: boolean;
  /** Resources by name, as configured (credentials are compared after they are read, in gateway.ts). */
  resources: { added: string[]; removed: string[]; changed: string[] };
  /** approvals.wait_timeout_s / pending_ttl_s / the groups / the webhook changed. */
  approvals: string[];
  /** listeners.api.audit_groups changed. */
  auditGroups: boolean;
  /** audit.sinks changed (and audit itself did not come or go). */
  auditSinks: boolean;
  /** The shutdown section changed. */
  shutdown: boolean;
}

/** Order-independent JSON of a value, for "did this change". */
function canonical(v: unknown): string {
  return JSON.stringify(v, (_key, value: unknown) =>
    value && typeof value === "object" && !Array.isArray(value)
      ? Object.fromEntries(
          Object.entries(value as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : 1)),
        )
      : value,
  );
}

const same = (a: unknown, b: unknown) => canonical(a) === canonical(b);

function without(o: object | undefined, ...keys: string[]): Record<string, unknown> | undefined {
  if (!o) return undefined;
  const copy: Record<string, unknown> = { ...o };
  for (const k of keys) delete copy[k];
  return copy;
}

/** The top-level sections a reload applies (or, for listeners and audit, splits into applied and not). */
const APPLIED_SECTIONS = new Set(["listeners", "policy", "resources", "approvals", "audit", "shutdown"]);

export function planReload(current: GatewayConfig, next: GatewayConfig): ReloadPlan {
  const restartRequired: string[] = [];
  const cur = current.listeners as Record<string, unknown>;
  const nxt = next.listeners as Record<string, unknown>;
  for (const name of [...new Set([...Object.keys(cur), ...Object.keys(nxt)])].sort()) {
    if (name === "api") {
      if (!same(without(current.listeners.api, "audit_groups"), without(next.listeners.api, "audit_groups")))
        restartRequired.push("listeners.api");
    } else if (!same(cur[name], nxt[name])) restartRequired.push(`listeners.${name}`);
  }
  // identity, store, workers — and any section not named here: what the plan does not know how to apply
  // takes a restart, rather than being silently ignored.
  const cfgA = current as Record<string, unknown>;
  const cfgB = next as Record<string, unknown>;
  for (const key of [...new Set([...Object.keys(cfgA), ...Object.keys(cfgB)])].sort())
    if (!APPLIED_SECTIONS.has(key) && !same(cfgA[key], cfgB[key])) restartRequired.push(key);
  const auditCameOrWent = !current.audit !== !next.audit;
  if (auditCameOrWent || !same(without(current.audit, "sinks"), without(next.audit, "sinks")))
    restartRequired.push("audit");

  const before = new Map(current.resources.map((r) => [r.name, r]));
  const after = new Map(next.resources.map((r) => [r.name, r]));
  const resources: ReloadPlan["resources"] = { added: [], removed: [], changed: [] };
  for (const [name, r] of after) {
    const old = before.get(name);
    if (!old) resources.added.push(name);
    else if (!same(old, r)) resources.changed.push(name);
  }
  for (const name of before.keys()) if (!after.has(name)) resources.removed.push(name);

  const approvals: string[] = [];
  for (const key of [
    "wait_timeout_s",
    "pending_ttl_s",
    "admin_groups",
    "approver_groups",
    "webhook",
  ] as const)
    if (!same(current.approvals?.[key], next.approvals?.[key])) approvals.push(`approvals.${key}`);

  return {
    restartRequired: restartRequired.sort(),
    policy: !same(current.policy, next.policy),
    resources,
    approvals,
    auditGroups: !same(current.listeners.api?.audit_groups, next.listeners.api?.audit_groups),
    auditSinks: !auditCameOrWent && !same(current.audit?.sinks, next.audit?.sinks),
    shutdown: !same(current.shutdown, next.shutdown),
  };
}

/** Whether a resource's configuration changed in a way its open sessions would notice (for the log only). */
export function resourceChanges(before: ResourceConfig, after: ResourceConfig): string[] {
  const out: string[] = [];
  if (!same(before.labels, after.labels)) out.push("labels");
  if (!same(before.upstream, after.upstream)) out.push("upstream");
  if (!same(before.credentials, after.credentials)) out.push("credentials");
  if (before.kind !== after.kind) out.push("kind");
  return out;
}
