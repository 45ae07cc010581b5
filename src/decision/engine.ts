// The decision engine: evaluates the active policy for one command and never fails open.
//
// Evaluation is synchronous (opa-wasm runs to completion on the calling thread), so swapping the active policy
// is a single reference assignment: an evaluation already running finishes on the policy it started with, and
// the next one sees the new one. No locks, no half-loaded state.
import { randomUUID } from "node:crypto";
import type { ComponentStatus } from "../status/status.js";
import { errorText } from "../util/errors.js";
import {
  currentTimestamp,
  type Decision,
  ENGINE_REASONS,
  type Now,
  type PolicyInput,
  policyTime,
  VERDICT_ENTRYPOINT,
  type Verdict,
} from "./contract.js";
import { verdictProblem } from "./schemas.js";
import type { WasmPolicy } from "./wasm-policy.js";

/** A loaded, ready-to-evaluate policy and where it came from. */
export interface ActivePolicy {
  policy: WasmPolicy;
  revision: string;
  /** Where the bundle was loaded from (file path, URL, directory), for status and logs. */
  source: string;
  loadedAt: Date;
}

export interface EngineStatus {
  revision: string | null;
  source: string | null;
  loaded_at: string | null;
  activations: number;
  last_error: { message: string; at: string } | null;
}

function blockVerdict(code: string, message: string): Verdict {
  return { action: "block", reasons: [{ code, message }], mask: [], approval: null };
}

/**
 * Serializes the input for the policy. `now.ns` is a bigint (nanoseconds overflow a double), which
 * JSON.stringify refuses, so `now` is written by hand; it is always the last key.
 */
export function serializeInput(input: PolicyInput): string {
  const { now, ...rest } = input;
  return `${JSON.stringify(rest).slice(0, -1)},${nowJson(now)}}`;
}

export class DecisionEngine {
  private active: ActivePolicy | null = null;
  private activations = 0;
  private lastError: EngineStatus["last_error"] = null;

  /** Makes `next` the policy for every evaluation that starts from now on. */
  activate(next: ActivePolicy): void {
    this.active = next;
    this.activations++;
    this.lastError = null;
  }

  /** Remembers why a candidate bundle was rejected; the active policy stays as it was. */
  recordRejection(message: string): void {
    this.lastError = { message, at: new Date().toISOString() };
  }

  /** The policy evaluations start on now (null before the first bundle). */
  get current(): ActivePolicy | null {
    return this.active;
  }

  get revision(): string | null {
    return this.active?.revision ?? null;
  }

  status(): EngineStatus {
    const a = this.active;
    return {
      revision: a?.revision ?? null,
      source: a?.source ?? null,
      loaded_at: a?.loadedAt.toISOString() ?? null,
      activations: this.activations,
      last_error: this.lastError,
    };
  }

  /**
   * The engine in the gateway's status model: not_ready while no bundle is active (every command is blocked),
   * warn when the last candidate was rejected and an older bundle still answers, ok otherwise.
   */
  componentStatus(): ComponentStatus {
    const s = this.status();
    const details = { ...s };
    if (s.revision === null) {
      return {
        state: "not_ready",
        message: s.last_error
          ? `no policy bundle is loaded (the last one was rejected: ${s.last_error.message})`
          : "no policy bundle is loaded yet",
        details,
      };
    }
    if (s.last_error) {
      return {
        state: "warn",
        message: `revision ${s.revision} stays active; the last candidate was rejected: ${s.last_error.message}`,
        details,
      };
    }
    return { state: "ok", message: `revision ${s.revision} from ${s.source}`, details };
  }

  /** Decides one command. Always returns a verdict; every failure is a block with an engine.* reason. */
  evaluate(input: PolicyInput): Decision {
    return this.decide(() => serializeInput(input)).decision;
  }

  /**
   * Decides one command of a session whose identity, resource and session fields were serialized once
   * (see SessionInput): the per-command work is only the command and the clock. This is what the protocol
   * adapters call (through the pipeline) for every statement or request.
   *
   * With a `memoKey` the verdict is memoized per session: the caller promises that the same key always comes with
   * the same command (the adapters pass their analysis cache's shared object), so under the same active policy,
   * in the same second of `now`, the input is byte-identical, and a policy is a pure function of its input (the
   * wasm target has no clock, randomness or I/O): the verdict of the first evaluation is the verdict. Each
   * decision still gets its own id and timestamp.
   */
  evaluateCommand(
    session: SessionInput,
    command: Record<string, unknown>,
    opts: { now?: Now; memoKey?: object } = {},
  ): Decision {
    const active = this.active;
    const now = opts.now ?? policyTime();
    const key = opts.memoKey;
    if (active && key !== undefined) {
      const hit = session.memoized(key, active.policy, now.ns);
      if (hit) {
        return {
          decision_id: randomUUID(),
          verdict: hit.verdict,
          revision: active.revision,
          eval_ns: 0,
          timestamp: currentTimestamp(),
          input_json: hit.inputJson,
          policy: active.policy,
          memo: hit,
        };
      }
      const { decision, evaluated } = this.decide(() => session.serialize(command, now), active);
      if (evaluated) {
        decision.memo = session.memoize(key, active.policy, now.ns, decision.verdict, decision.input_json);
      }
      return decision;
    }
    return this.decide(() => session.serialize(command, now), active).decision;
  }

  private decide(
    serialize: () => string,
    active: ActivePolicy | null = this.active, // captured once: a concurrent swap does not affect this evaluation
  ): { decision: Decision; evaluated: boolean } {
    const started = performance.now();
    let inputJson = "";
    let verdict: Verdict;
    let evaluated = false;
    try {
      inputJson = serialize();
      if (active) {
        const r = evaluateVerdict(active.policy, inputJson);
        verdict = r.verdict;
        evaluated = r.fromPolicy;
      } else {
        verdict = blockVerdict(
          ENGINE_REASONS.noBundle,
          "no policy bundle is loaded yet; every command is blocked",
        );
      }
    } catch (err) {
      verdict = blockVerdict(
        ENGINE_REASONS.badInput,
        `the command could not be prepared for policy: ${errorText(err)}`,
      );
    }
    const decision: Decision = {
      decision_id: randomUUID(),
      verdict,
      revision: active?.revision ?? null,
      eval_ns: Math.round((performance.now() - started) * 1e6),
      timestamp: currentTimestamp(),
      input_json: inputJson,
      policy: active?.policy ?? null,
    };
    return { decision, evaluated };
  }
}

/** One memoized evaluation (see DecisionEngine.evaluateCommand). Its identity is the decisions' `memo`. */
export interface MemoEntry {
  policy: WasmPolicy;
  nowNs: bigint;
  verdict: Verdict;
  inputJson: string;
}

/** Distinct commands a session remembers verdicts for; beyond it the memo starts over (statements repeat). */
const MEMO_ENTRIES = 256;

/**
 * The parts of the policy input that stay fixed for a session — protocol, resource, identity, session —
 * serialized once, so each command costs only the serialization of the command itself. Make a new one when
 * any of them changes (a refreshed token, an approval grant). It also holds the session's verdict memo.
 */
export class SessionInput {
  private readonly prefix: string;
  /** Memo key (see evaluateCommand) → its latest evaluation. Created on first use: idle sessions hold no map. */
  private memo: Map<object, MemoEntry> | null = null;

  constructor(readonly fixed: Omit<PolicyInput, "command" | "now">) {
    const { protocol, resource, identity, session } = fixed;
    this.prefix = JSON.stringify({ protocol, resource, identity, session }).slice(0, -1);
  }

  serialize(command: Record<string, unknown>, now: Now): string {
    return `${this.prefix},"command":${JSON.stringify(command)},${nowJson(now)}}`;
  }

  memoized(key: object, policy: WasmPolicy, nowNs: bigint): MemoEntry | undefined {
    const e = this.memo?.get(key);
    return e && e.policy === policy && e.nowNs === nowNs ? e : undefined;
  }

  memoize(key: object, policy: WasmPolicy, nowNs: bigint, verdict: Verdict, inputJson: string): MemoEntry {
    this.memo ??= new Map();
    if (this.memo.size >= MEMO_ENTRIES && !this.memo.has(key)) this.memo.clear();
    // Shared by every decision answered from it, so nobody may change it.
    const entry: MemoEntry = { policy, nowNs, verdict: deepFreeze(verdict), inputJson };
    this.memo.set(key, entry);
    return entry;
  }
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === "object" && !Object.isFrozen(value)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

function nowJson(now: Now): string {
  return `"now":{"rfc3339":${JSON.stringify(now.rfc3339)},"ns":${now.ns.toString()}}`;
}

/**
 * Runs the verdict entrypoint and checks the result; any problem becomes a block naming it. `fromPolicy`: the
 * verdict is the policy's own answer (not the engine's failing closed), so it may be memoized.
 */
export function evaluateVerdict(
  policy: WasmPolicy,
  inputJson: string,
): { verdict: Verdict; fromPolicy: boolean } {
  let result: unknown;
  try {
    result = policy.evaluate(inputJson, VERDICT_ENTRYPOINT);
  } catch (err) {
    return failed(ENGINE_REASONS.evalError, `policy evaluation failed: ${errorText(err)}`);
  }
  if (result === undefined) {
    return failed(
      ENGINE_REASONS.undefined,
      `policy returned no verdict (${VERDICT_ENTRYPOINT} is undefined for this input; give it a default)`,
    );
  }
  const problem = verdictProblem(result);
  if (problem) return failed(ENGINE_REASONS.invalidVerdict, `policy returned an invalid verdict: ${problem}`);
  const verdict = result as Verdict;
  // Normalize optional fields so adapters can rely on them.
  verdict.mask ??= [];
  verdict.approval ??= null;
  return { verdict, fromPolicy: true };
}

function failed(code: string, message: string): { verdict: Verdict; fromPolicy: boolean } {
  return { verdict: blockVerdict(code, message), fromPolicy: false };
}
