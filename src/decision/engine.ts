// The decision engine: evaluates the active policy for one command and never fails open.
//
// Evaluation is synchronous (opa-wasm runs to completion on the calling thread), so swapping the active policy
// is a single reference assignment: an evaluation already running finishes on the policy it started with, and
// the next one sees the new one. No locks, no half-loaded state.
import { randomUUID } from "node:crypto";
import {
  currentTime,
  type Decision,
  ENGINE_REASONS,
  type Now,
  type PolicyInput,
  VERDICT_ENTRYPOINT,
  type Verdict,
} from "./contract.js";
import { verdictProblem } from "./schemas.js";
import { errorText, type WasmPolicy } from "./wasm-policy.js";

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

  /** Decides one command. Always returns a verdict; every failure is a block with an engine.* reason. */
  evaluate(input: PolicyInput): Decision {
    return this.decide(() => serializeInput(input));
  }

  /**
   * Decides one command of a session whose identity, resource and session fields were serialized once
   * (see SessionInput): the per-command work is only the command and the clock. This is what the protocol
   * adapters call for every statement or request.
   */
  evaluateCommand(
    session: SessionInput,
    command: Record<string, unknown>,
    now: Now = currentTime(),
  ): Decision {
    return this.decide(() => session.serialize(command, now));
  }

  private decide(serialize: () => string): Decision {
    const started = performance.now();
    const active = this.active; // captured once: a concurrent swap does not affect this evaluation
    let inputJson = "";
    let verdict: Verdict;
    try {
      inputJson = serialize();
      verdict = active
        ? evaluateVerdict(active.policy, inputJson)
        : blockVerdict(ENGINE_REASONS.noBundle, "no policy bundle is loaded yet; every command is blocked");
    } catch (err) {
      verdict = blockVerdict(
        ENGINE_REASONS.badInput,
        `the command could not be prepared for policy: ${errorText(err)}`,
      );
    }
    return {
      decision_id: randomUUID(),
      verdict,
      revision: active?.revision ?? null,
      eval_ns: Math.round((performance.now() - started) * 1e6),
      input_json: inputJson,
      policy: active?.policy ?? null,
    };
  }
}

/**
 * The parts of the policy input that stay fixed for a session — protocol, resource, identity, session —
 * serialized once, so each command costs only the serialization of the command itself. Make a new one when
 * any of them changes (a refreshed token, an approval grant).
 */
export class SessionInput {
  private readonly prefix: string;

  constructor(readonly fixed: Omit<PolicyInput, "command" | "now">) {
    const { protocol, resource, identity, session } = fixed;
    this.prefix = JSON.stringify({ protocol, resource, identity, session }).slice(0, -1);
  }

  serialize(command: Record<string, unknown>, now: Now): string {
    return `${this.prefix},"command":${JSON.stringify(command)},${nowJson(now)}}`;
  }
}

function nowJson(now: Now): string {
  return `"now":{"rfc3339":${JSON.stringify(now.rfc3339)},"ns":${now.ns.toString()}}`;
}

/** Runs the verdict entrypoint and checks the result; any problem becomes a block naming it. */
export function evaluateVerdict(policy: WasmPolicy, inputJson: string): Verdict {
  let result: unknown;
  try {
    result = policy.evaluate(inputJson, VERDICT_ENTRYPOINT);
  } catch (err) {
    return blockVerdict(ENGINE_REASONS.evalError, `policy evaluation failed: ${errorText(err)}`);
  }
  if (result === undefined) {
    return blockVerdict(
      ENGINE_REASONS.undefined,
      `policy returned no verdict (${VERDICT_ENTRYPOINT} is undefined for this input; give it a default)`,
    );
  }
  const problem = verdictProblem(result);
  if (problem) {
    return blockVerdict(ENGINE_REASONS.invalidVerdict, `policy returned an invalid verdict: ${problem}`);
  }
  const verdict = result as Verdict;
  // Normalize optional fields so adapters can rely on them.
  verdict.mask ??= [];
  verdict.approval ??= null;
  return verdict;
}
