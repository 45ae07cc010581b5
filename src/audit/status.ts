// The audit trail in the gateway's status model. The spool is on the command path — a record that cannot be
// made durable blocks its command — so a spool that refuses records is an `error` (the gateway is not ready:
// every statement would be blocked); one filling up is a `warn`. Sinks are off the command path: a failing or
// lagging sink is a `warn` (what it has not shipped stays in the spool, and the spool's own state says when that
// becomes a problem).
import type { ComponentStatus, StatusRegistry } from "../status/status.js";
import type { ShipperStatus } from "./shipper.js";
import type { SpoolStatus } from "./spool.js";

/** Share of max_bytes from which the spool is reported as filling up. */
export const SPOOL_WARN_RATIO = 0.8;
/** A sink this many records behind the spool is reported as lagging even when its last shipment worked. */
export const SINK_WARN_LAG = 10_000;

export function spoolComponentStatus(s: SpoolStatus): ComponentStatus {
  const details = {
    dir: s.dir,
    spool_id: s.spool_id,
    used_bytes: s.used_bytes,
    max_bytes: s.max_bytes,
    segments: s.segments,
    last_seq: s.last_seq,
  };
  if (!s.available) {
    return {
      state: "error",
      message: `${s.reason ?? `audit spool ${s.dir} is unavailable`}; every command is blocked until it can record again`,
      details,
    };
  }
  const ratio = s.max_bytes > 0 ? s.used_bytes / s.max_bytes : 0;
  if (ratio >= SPOOL_WARN_RATIO) {
    return {
      state: "warn",
      message: `audit spool ${Math.floor(ratio * 100)} % full (${s.used_bytes} of ${s.max_bytes} bytes); commands are blocked once it is full — check that the sinks are shipping`,
      details,
    };
  }
  return { state: "ok", details };
}

/** `shipper` is undefined while the sink has not started (the spool is not open yet). */
export function sinkComponentStatus(name: string, shipper: ShipperStatus | undefined): ComponentStatus {
  if (!shipper) {
    return {
      state: "warn",
      message: `audit sink ${name} has not started: the audit spool is not open`,
      details: { name },
    };
  }
  const details = { ...shipper };
  if (shipper.failures > 0) {
    return {
      state: "warn",
      message: `audit sink ${name} (${shipper.sink}) is failing (${shipper.failures} attempts, ${shipper.lag} records behind): ${shipper.last_error ?? "unknown error"}`,
      details,
    };
  }
  if (shipper.lag >= SINK_WARN_LAG) {
    return {
      state: "warn",
      message: `audit sink ${name} (${shipper.sink}) is ${shipper.lag} records behind the spool`,
      details,
    };
  }
  return { state: "ok", details };
}

/** The parts of an AuditTrail the status needs. */
export interface AuditStatusSource {
  status(): { spool: SpoolStatus; sinks: ShipperStatus[] };
  /** Every configured sink, started or not. */
  readonly sinkNames: readonly string[];
}

/**
 * Registers `audit.spool` and one `audit.sink:<name>` per configured sink. Returns the function that
 * unregisters them all.
 */
export function registerAuditStatus(registry: StatusRegistry, trail: AuditStatusSource): () => void {
  const off = [registry.register("audit.spool", () => spoolComponentStatus(trail.status().spool))];
  for (const name of trail.sinkNames) {
    off.push(
      registry.register(`audit.sink:${name}`, () =>
        sinkComponentStatus(
          name,
          trail.status().sinks.find((s) => s.name === name),
        ),
      ),
    );
  }
  return () => {
    for (const f of off) f();
  };
}
