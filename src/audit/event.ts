// Decision log events in OPA's decision log format (the fields OPA's decision log plugin sends: decision_id,
// path, input, result, bundles, labels, timestamp, metrics, erased, masked, requested_by) plus pamgate's own
// top-level fields, so an audit store can be queried without digging into the input: session_id, protocol,
// resource, identity (subject and actor chain), action, reason_codes, approval_id.
//
// Masking runs the deciding bundle's `system/log/mask` rule on the event, the way OPA does, on a copy of the
// input before anything is written. If it cannot run, the event is still built, with the whole input erased.
import { type Action, currentTime, type Decision, VERDICT_ENTRYPOINT } from "../decision/contract.js";
import { errorText } from "../util/errors.js";
import { type JsonValue, parseExact, stringifyExact } from "./json.js";
import { applyMask, type MaskTarget, parseMaskRules } from "./mask.js";

export const MASK_ENTRYPOINT = "system/log/mask";

/** What the decision itself does not know: set by the proxy that asked for it. */
export interface DecisionContext {
  /** The gateway session; defaults to the input's session.id. */
  session_id?: string;
  /** The approval grant the command ran under; defaults to the input's session.approval_id. */
  approval_id?: string | null;
  /** Who asked (OPA: the client's address); defaults to the input's session.client_addr. */
  requested_by?: string;
  /**
   * What the gateway actually did, when it differs from the verdict (an "approve" that was granted, timed out or
   * was denied). Sets pamgate's top-level `action`; OPA's `result` stays the policy's verdict. Usually an Action;
   * any short word the pipeline uses is kept as given.
   */
  action?: Action | (string & {});
  /**
   * The reasons for `action` (pamgate's `reason_codes`); defaults to the verdict's. Reasons other than the
   * verdict's (another array) are also written out with their messages, as `reasons`.
   */
  reasons?: ReadonlyArray<{ code: string; message?: string }>;
  /**
   * The command as the audit trail may show it (pamgate's `command_text`): what the console's search matches
   * when the policy input has no text of it (PostgreSQL's is the statement with its literals replaced).
   */
  command_text?: string;
}

export interface EventOptions {
  /** OPA's labels: at least `id` (this instance) and `version` (pamgate's), plus any configured ones. */
  labels: Record<string, string>;
  /** The key under `bundles` (OPA: the bundle's name). */
  bundleName: string;
}

/** A decision event, serialized once: this string is what the spool stores and the sinks ship. */
export interface DecisionEvent {
  decision_id: string;
  session_id: string | null;
  json: string;
  /** Why the input was erased, when masking could not run. */
  mask_error?: string;
}

type Obj = { [key: string]: JsonValue };

function asObject(v: JsonValue | undefined): Obj | undefined {
  return v !== null && typeof v === "object" && !Array.isArray(v) ? (v as Obj) : undefined;
}

function str(v: JsonValue | undefined): string | undefined {
  return typeof v === "string" ? v : undefined;
}

const NOW_RFC3339 = /"now":\{"rfc3339":"([^"\\]+)"/;

/**
 * What an event derives from the decision's input and verdict alone: the masked input and result and pamgate's
 * identifying fields. Decisions the engine answered from one evaluation (`Decision.memo`) have the same input and
 * verdict, so this is computed for the first of them and reused (the mask rule is then evaluated once, with that
 * first event's decision_id and timestamp: a mask rule decides on the input and result, never on those two).
 */
interface InputParts {
  /** What the parts were computed for, beyond the memo itself. */
  labelsJson: string;
  bundlesJson: string | undefined;
  requestedBy: string | undefined;
  inputOut: string | undefined;
  resultOut: string | undefined;
  erased: string[];
  masked: string[];
  maskError: string | undefined;
  /** `"protocol":…,"resource":…,"identity":…`, taken from the masked input. */
  fieldsJson: string;
  /** The input's session.id and session.approval_id. */
  sessionId: string | null;
  approvalId: JsonValue | undefined;
  requestedByFromInput: string;
}

const partsByMemo = new WeakMap<object, InputParts>();

/** Builds the event for one decision: mask, then serialize. Never throws for a well-formed Decision. */
export function buildDecisionEvent(
  decision: Decision,
  options: EventOptions,
  context: DecisionContext = {},
): DecisionEvent {
  const inputJson = decision.input_json;
  const timestamp =
    decision.timestamp || (inputJson && NOW_RFC3339.exec(inputJson)?.[1]) || currentTime().rfc3339;
  const bundlesJson =
    decision.revision === null
      ? undefined
      : `{${JSON.stringify(options.bundleName)}:{"revision":${JSON.stringify(decision.revision)}}}`;
  const labelsJson = JSON.stringify(options.labels);

  let parts = decision.memo ? partsByMemo.get(decision.memo) : undefined;
  if (
    !parts ||
    parts.labelsJson !== labelsJson ||
    parts.bundlesJson !== bundlesJson ||
    parts.requestedBy !== context.requested_by
  ) {
    parts = inputParts(decision, timestamp, labelsJson, bundlesJson, context.requested_by);
    if (decision.memo) partsByMemo.set(decision.memo, parts);
  }
  const requestedBy = context.requested_by ?? parts.requestedByFromInput;
  const sessionId = context.session_id ?? parts.sessionId;
  const approval = context.approval_id !== undefined ? context.approval_id : (parts.approvalId ?? null);

  let json = `{"decision_id":${JSON.stringify(decision.decision_id)},"path":"${VERDICT_ENTRYPOINT}"`;
  if (parts.inputOut !== undefined) json += `,"input":${parts.inputOut}`;
  if (parts.resultOut !== undefined) json += `,"result":${parts.resultOut}`;
  if (bundlesJson) json += `,"bundles":${bundlesJson}`;
  json += `,"labels":${labelsJson},"timestamp":"${timestamp}"`;
  json += `,"metrics":{"timer_rego_query_eval_ns":${Math.max(0, Math.round(decision.eval_ns))}}`;
  if (parts.erased.length > 0) json += `,"erased":${JSON.stringify(parts.erased)}`;
  if (parts.masked.length > 0) json += `,"masked":${JSON.stringify(parts.masked)}`;
  json += `,"requested_by":${JSON.stringify(requestedBy)}`;
  // pamgate's fields, in this order: session_id, protocol, resource, identity, action, reason_codes, approval_id.
  json += `,"session_id":${JSON.stringify(sessionId)},${parts.fieldsJson}`;
  json += `,"action":${JSON.stringify(context.action ?? decision.verdict.action)}`;
  json += `,"reason_codes":${JSON.stringify((context.reasons ?? decision.verdict.reasons).map((r) => r.code))}`;
  // When the gateway enforced something other than the verdict (a mask it could not apply, a batch another
  // statement blocked, an approval denied, the audit trail refusing), `result` keeps the policy's reasons and
  // these are the ones the client was told.
  if (context.reasons && context.reasons !== decision.verdict.reasons)
    json += `,"reasons":${JSON.stringify(context.reasons.map((r) => ({ code: r.code, message: r.message ?? "" })))}`;
  json += `,"approval_id":${JSON.stringify(typeof approval === "string" ? approval : null)}`;
  if (context.command_text !== undefined) json += `,"command_text":${JSON.stringify(context.command_text)}`;
  if (parts.maskError) json += `,"mask_error":${JSON.stringify(parts.maskError)}`;
  json += "}";
  const out: DecisionEvent = { decision_id: decision.decision_id, session_id: sessionId, json };
  if (parts.maskError) out.mask_error = parts.maskError;
  return out;
}

function inputParts(
  decision: Decision,
  timestamp: string,
  labelsJson: string,
  bundlesJson: string | undefined,
  contextRequestedBy: string | undefined,
): InputParts {
  const inputJson = decision.input_json;
  const resultJson = JSON.stringify(decision.verdict);

  // The unmasked input, parsed once: the source of pamgate's fields and the copy masking edits.
  let input: JsonValue | undefined;
  let parseError: string | undefined;
  if (inputJson) {
    try {
      input = parseExact(inputJson);
    } catch (err) {
      parseError = `the input is not valid JSON: ${errorText(err)}`;
    }
  }
  const session = asObject(asObject(input)?.session);
  const requestedByFromInput = str(session?.client_addr) ?? "";
  const requestedBy = contextRequestedBy ?? requestedByFromInput;

  const target: MaskTarget = { erased: [], masked: [] };
  let maskError: string | undefined = parseError;
  let inputOut: string | undefined = inputJson || undefined;
  let resultOut: string | undefined = resultJson;
  // The input pamgate's fields are taken from: the masked one, so a mask rule covers them too.
  let fieldsFrom: JsonValue | undefined = input;
  if (inputJson && !maskError) {
    const policy = decision.policy;
    if (!policy) {
      maskError = "no policy bundle decided this command, so no mask rule could run";
    } else if (policy.has(MASK_ENTRYPOINT)) {
      // OPA evaluates the mask rule with the event itself as input (input.input, input.result, …).
      const maskInput = `{"decision_id":${JSON.stringify(decision.decision_id)},"path":"${VERDICT_ENTRYPOINT}","input":${inputJson},"result":${resultJson}${bundlesJson ? `,"bundles":${bundlesJson}` : ""},"labels":${labelsJson},"timestamp":"${timestamp}","requested_by":${JSON.stringify(requestedBy)}}`;
      try {
        const rules = parseMaskRules(policy.evaluate(maskInput, MASK_ENTRYPOINT));
        if (rules.length > 0) {
          target.input = input; // parsed for this event alone, so it is already a private copy
          if (rules.some((r) => r.root === "result")) target.result = JSON.parse(resultJson) as JsonValue;
          applyMask(rules, target);
          inputOut = target.input === undefined ? undefined : stringifyExact(target.input);
          if (target.result !== undefined) resultOut = stringifyExact(target.result);
          else if (rules.some((r) => r.root === "result")) resultOut = undefined;
          fieldsFrom = target.input;
        }
      } catch (err) {
        maskError = `system.log.mask failed: ${errorText(err)}`;
      }
    }
  }
  if (maskError) {
    // Written anyway, with the whole input erased. pamgate's fields then come from the unmasked input, but
    // only identifiers (subjects, clients, the resource, the session), never the command.
    inputOut = undefined;
    resultOut = resultJson;
    target.erased = ["/input"];
    target.masked = [];
    fieldsFrom = input;
  }
  const from = asObject(fieldsFrom);
  const fromSession = asObject(from?.session);
  return {
    labelsJson,
    bundlesJson,
    requestedBy: contextRequestedBy,
    inputOut,
    resultOut,
    erased: target.erased,
    masked: target.masked,
    maskError,
    fieldsJson: identifyingFields(from),
    sessionId: str(fromSession?.id) ?? null,
    approvalId: fromSession?.approval_id,
    requestedByFromInput,
  };
}

function pick(o: Obj | undefined, keys: string[]): Obj | null {
  if (!o) return null;
  const out: Obj = {};
  for (const k of keys) if (o[k] !== undefined) out[k] = o[k] as JsonValue;
  return out;
}

/** `"protocol":…,"resource":…,"identity":…` of pamgate's top-level fields: identifiers only, never the command. */
function identifyingFields(input: Obj | undefined): string {
  const identity = pick(asObject(input?.identity), ["sub", "iss", "client_id"]);
  const actors = input?.identity && asObject(input.identity)?.actors;
  if (identity && Array.isArray(actors)) {
    identity.actors = actors.map((a) => pick(asObject(a), ["sub", "iss", "client_id"]));
  }
  const resource = asObject(input?.resource);
  const fields: Obj = {
    protocol: str(input?.protocol) ?? null,
    resource: resource ? pick(resource, ["name", "kind", "labels"]) : null,
    identity,
  };
  return JSON.stringify(fields).slice(1, -1);
}
