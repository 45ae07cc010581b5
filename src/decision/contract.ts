// The policy contract as TypeScript types. docs/policy-contract.md is the prose; policies/schemas/*.json are
// the machine-checked forms. Protocol adapters build a PolicyInput, the engine returns a Decision.

/**
 * Every protocol the policy contract knows: the one list (policies/schemas/input.schema.json's enums are checked
 * against it in test/unit/contract.test.ts). A protocol is served when an adapter for it is in
 * src/proxy/registry.ts.
 */
export const PROTOCOLS = ["postgres", "ssh", "kubernetes"] as const;
export type Protocol = (typeof PROTOCOLS)[number];
export type Action = "allow" | "mask" | "block" | "approve";
export const ACTIONS: readonly Action[] = ["allow", "mask", "block", "approve"];

export interface Actor {
  sub: string;
  iss?: string;
  client_id?: string | null;
}

export interface Identity {
  sub: string;
  iss: string;
  email: string | null;
  groups: string[];
  client_id: string | null;
  /** The delegation chain, original requester first, the party presenting the token last. */
  actors: Actor[];
}

export interface Resource {
  name: string;
  kind: Protocol;
  labels: Record<string, string>;
}

export interface SessionInfo {
  id: string;
  client_addr?: string;
  started_at?: string;
  approval_id?: string | null;
  /**
   * postgres: the search_path the upstream session is pinned to (one schema), where the command's unqualified
   * names were resolved.
   */
  search_path?: string[];
  /** ssh: how the client proved who it is — "token" (its OIDC token) or "key" (a public key its token bound). */
  auth_method?: "token" | "key";
}

/** Evaluation time. `ns` is a bigint because nanoseconds since 1970 exceed Number.MAX_SAFE_INTEGER. */
export interface Now {
  rfc3339: string;
  ns: bigint;
}

export interface PolicyInput {
  protocol: Protocol;
  resource: Resource;
  identity: Identity;
  command: Record<string, unknown>;
  session: SessionInfo;
  now: Now;
}

export interface Reason {
  code: string;
  message: string;
}

export interface MaskRule {
  field: string;
  strategy: "redact" | "partial" | "hash";
}

export interface ApprovalRule {
  groups: string[];
  min_approvals: number;
  ttl_s: number;
}

export interface Verdict {
  action: Action;
  reasons: Reason[];
  mask: MaskRule[];
  approval: ApprovalRule | null;
}

/** A verdict plus what the decision log needs to reproduce and attribute it. */
export interface Decision {
  decision_id: string;
  verdict: Verdict;
  /** Bundle revision that decided, or null when no bundle was loaded. */
  revision: string | null;
  /** Wall-clock time spent in policy evaluation (serialize + wasm + validate), nanoseconds; 0 for a reused verdict. */
  eval_ns: number;
  /** When the decision was made (RFC 3339, microseconds): the decision log event's `timestamp`. */
  timestamp?: string;
  /**
   * Shared by every decision the engine answered from one evaluation (same policy, same input): lets the decision
   * log reuse what it derived from that input (the masked input) instead of deriving it again. Not serialized.
   */
  memo?: object;
  /** The input exactly as the policy saw it (JSON), for the decision log. */
  input_json: string;
  /**
   * The policy that decided (null without a bundle), so the decision log can run that same bundle's
   * system/log/mask rule even if a newer bundle has been activated since. Not serialized.
   */
  policy: WasmPolicyLike | null;
}

/** What the audit trail needs of the deciding policy: evaluating another entrypoint on the same input. */
export interface WasmPolicyLike {
  has(entrypoint: string): boolean;
  evaluate(inputJson: string, entrypoint: string): unknown;
}

/** The reason codes the engine itself emits when it fails closed. */
export const ENGINE_REASONS = {
  noBundle: "engine.no_bundle",
  evalError: "engine.eval_error",
  undefined: "engine.undefined",
  invalidVerdict: "engine.invalid_verdict",
  badInput: "engine.bad_input",
} as const;

/** The entrypoint every bundle must provide. */
export const VERDICT_ENTRYPOINT = "pamgate/main/verdict";

export function nowFrom(epochNs: bigint): Now {
  const ms = Number(epochNs / 1_000_000n);
  const subMs = epochNs % 1_000_000n;
  // toISOString has millisecond precision; append the remaining digits so rfc3339 and ns agree exactly.
  const iso = new Date(ms).toISOString();
  const rfc3339 = subMs === 0n ? iso : `${iso.slice(0, -1)}${subMs.toString().padStart(6, "0")}Z`;
  return { rfc3339, ns: epochNs };
}

/** The current time, with microsecond resolution (decision log timestamps). */
export function currentTime(): Now {
  const us = epochMicros();
  const second = Math.floor(us / 1e6);
  const micros = us - second * 1e6;
  if (micros === 0) return nowFrom(BigInt(us) * 1000n);
  // Built from the second's cached form: this runs for every command, and BigInt arithmetic plus
  // toISOString cost more than the rest of the decision log event.
  const s = secondTime(second);
  return {
    rfc3339: `${s.rfc3339.slice(0, -1)}.${String(micros).padStart(6, "0")}Z`,
    ns: s.ns + BigInt(micros) * 1000n,
  };
}

/** The current time's RFC 3339 form with microseconds, without the bigint (decision log timestamps). */
export function currentTimestamp(): string {
  const us = epochMicros();
  const second = Math.floor(us / 1e6);
  const micros = us - second * 1e6;
  const base = secondTime(second).rfc3339;
  return micros === 0 ? base : `${base.slice(0, -1)}.${String(micros).padStart(6, "0")}Z`;
}

/** Microseconds since the epoch, from the monotonic clock's origin (Date.now has only milliseconds). */
export function epochMicros(): number {
  return Math.round((performance.timeOrigin + performance.now()) * 1000);
}

/**
 * The time a live command's policy input carries: whole seconds. Policies decide on time windows, not on
 * microseconds, and a second-resolution clock makes the input of a repeated command identical within the
 * second, which is what lets the engine reuse the verdict (see SessionInput). The decision log keeps the exact
 * time in the event's `timestamp`.
 */
export function policyTime(epochUs: number = epochMicros()): Now {
  return secondTime(Math.floor(epochUs / 1e6));
}

let lastSecond = Number.NaN;
let lastSecondTime: Now = { rfc3339: "", ns: 0n };

/** The Now of a whole second (seconds since the epoch), the latest one cached: one object per second. */
function secondTime(second: number): Now {
  if (second !== lastSecond) {
    lastSecondTime = Object.freeze({
      rfc3339: `${new Date(second * 1000).toISOString().slice(0, 19)}Z`,
      ns: BigInt(second) * 1_000_000_000n,
    });
    lastSecond = second;
  }
  return lastSecondTime;
}

/** Parses an RFC 3339 timestamp exactly, keeping sub-millisecond digits (Date alone would drop them). */
export function nowFromRfc3339(rfc3339: string): Now {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/i.exec(rfc3339);
  if (!m) throw new Error(`"${rfc3339}" is not an RFC 3339 timestamp (e.g. 2026-11-26T08:00:00.5Z)`);
  const [, base, frac = "", zone] = m;
  const seconds = Date.parse(`${base}${zone}`);
  if (Number.isNaN(seconds)) throw new Error(`"${rfc3339}" is not a valid date`);
  const ns = BigInt(seconds) * 1_000_000n + BigInt(frac.padEnd(9, "0"));
  return nowFrom(ns);
}
