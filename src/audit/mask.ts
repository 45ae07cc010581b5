// Decision-log masking with the semantics of OPA's `system.log.mask` (plugins/logs/mask.go), so a bundle's mask
// rule means the same here as in OPA:
//
//   - the rule's value is a set (a JSON array from wasm) of JSON pointers ("/input/identity/email", meaning
//     remove) and/or objects {"op": "remove" | "upsert", "path": "/input/…", "value": …};
//   - paths must start with /input or /result; a malformed rule makes the whole rule set invalid (an error);
//   - remove of a path that does not exist does nothing and is not reported; remove of "/input" drops the input;
//     array elements are addressed by index;
//   - upsert creates missing intermediate objects (mkdirp) and is reported in `masked`;
//   - applied rules are reported, in application order, as "/" + the path-escaped segments.
// Rules are applied in the order OPA iterates a set: strings (sorted) before objects (sorted by op, then path).
import type { JsonValue } from "./json.js";

export type MaskOp = "remove" | "upsert";

export interface MaskRule {
  op: MaskOp;
  path: string;
  value?: JsonValue;
  /** Path segments after /input or /result, escaped the way OPA escapes them. */
  parts: string[];
  root: "input" | "result";
  /** Whether the rule was a plain string (OPA orders strings before objects). */
  plain: boolean;
}

export class MaskRuleError extends Error {
  override name = "MaskRuleError";
}

/** Turns the mask rule's value into rules, or throws MaskRuleError like OPA's newMaskRuleSet. */
export function parseMaskRules(value: unknown): MaskRule[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw new MaskRuleError(`unexpected rule format ${JSON.stringify(value)}`);
  const rules: MaskRule[] = [];
  for (const item of value) {
    if (typeof item === "string") rules.push(newRule(item, "remove", undefined, true));
    else if (item !== null && typeof item === "object" && !Array.isArray(item)) {
      const o = item as Record<string, unknown>;
      if ("op" in o && (typeof o.op !== "string" || o.op === ""))
        throw new MaskRuleError(`invalid "op" value: ${JSON.stringify(o.op)}`);
      if ("path" in o && (typeof o.path !== "string" || o.path === ""))
        throw new MaskRuleError(`invalid "path" value: ${JSON.stringify(o.path)}`);
      const op = (o.op as string | undefined) ?? "";
      if (op !== "remove" && op !== "upsert") throw new MaskRuleError(`mask op is not supported: ${op}`);
      rules.push(newRule((o.path as string | undefined) ?? "", op, o.value as JsonValue | undefined, false));
    } else {
      throw new MaskRuleError(`invalid mask rule format encountered: ${JSON.stringify(item)}`);
    }
  }
  return rules.sort(compareRules);
}

function newRule(path: string, op: MaskOp, value: JsonValue | undefined, plain: boolean): MaskRule {
  if (path.length === 0) throw new MaskRuleError("mask must be non-empty");
  if (!path.startsWith("/")) throw new MaskRuleError("mask must be slash-prefixed");
  const raw = path.slice(1).split("/");
  const root = raw[0];
  if (root !== "input" && root !== "result") {
    // OPA also allows nd_builtin_cache; pamgate's events have none, so a rule for it can only be a mistake.
    throw new MaskRuleError(`mask prefix not allowed: ${root}`);
  }
  const parts = raw.slice(1).map((p) => {
    if (/%(?![0-9a-fA-F]{2})/.test(p)) throw new MaskRuleError(`invalid URL escape in mask path ${path}`);
    return pathEscape(p);
  });
  return { op, path, value, parts, root, plain };
}

function compareRules(a: MaskRule, b: MaskRule): number {
  if (a.plain !== b.plain) return a.plain ? -1 : 1;
  if (a.op !== b.op) return a.op < b.op ? -1 : 1;
  return a.path < b.path ? -1 : a.path > b.path ? 1 : 0;
}

/** Go's url.PathEscape: everything but unreserved characters and $&+:=@ is %XX-encoded (UTF-8 bytes). */
export function pathEscape(s: string): string {
  if (/^[A-Za-z0-9\-_.~$&+:=@]*$/.test(s)) return s;
  let out = "";
  for (const byte of Buffer.from(s, "utf8")) {
    const c = String.fromCharCode(byte);
    out += /[A-Za-z0-9\-_.~$&+:=@]/.test(c) ? c : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

export interface MaskTarget {
  input?: JsonValue;
  result?: JsonValue;
  erased: string[];
  masked: string[];
}

type Container = { [key: string]: JsonValue } | JsonValue[];

function isObject(v: JsonValue | undefined): v is { [key: string]: JsonValue } {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

/** Applies the rules to `target` in place (its input/result must already be private copies). */
export function applyMask(rules: MaskRule[], target: MaskTarget): void {
  for (const rule of rules) {
    const shown = `/${[rule.root, ...rule.parts].join("/")}`;
    if (target[rule.root] === undefined) continue;
    if (rule.op === "remove") {
      if (rule.parts.length === 0) delete target[rule.root];
      else if (!removeValue(rule.parts, target[rule.root] as JsonValue)) continue;
      target.erased.push(shown);
    } else {
      if (rule.parts.length === 0) target[rule.root] = rule.value ?? null;
      else {
        const node = target[rule.root];
        if (!isObject(node) || !mkdirp(node, rule.parts, rule.value ?? null)) continue;
      }
      target.masked.push(shown);
    }
  }
}

function arrayIndex(key: string, length: number): number {
  if (!/^-?\d+$/.test(key)) return -1;
  const i = Number(key);
  return i >= 0 && i < length ? i : -1;
}

/** OPA's removeValue: walk to the parent; false when any step or the target does not exist. */
function removeValue(path: string[], root: JsonValue): boolean {
  let node: JsonValue = root;
  let parent: Container | null = null;
  let parentKey = "";
  for (let i = 0; i < path.length - 1; i++) {
    const key = path[i] as string;
    if (isObject(node)) {
      if (!(key in node)) return false;
      parent = node;
      parentKey = key;
      node = node[key] as JsonValue;
    } else if (Array.isArray(node)) {
      const idx = arrayIndex(key, node.length);
      if (idx < 0) return false;
      parent = node;
      parentKey = key;
      node = node[idx] as JsonValue;
    } else return false;
  }
  const target = path[path.length - 1] as string;
  if (isObject(node)) {
    if (!(target in node)) return false;
    delete node[target];
    return true;
  }
  if (Array.isArray(node)) {
    const idx = arrayIndex(target, node.length);
    if (idx < 0 || parent === null) return false;
    const shorter = [...node.slice(0, idx), ...node.slice(idx + 1)];
    if (Array.isArray(parent)) parent[Number(parentKey)] = shorter;
    else parent[parentKey] = shorter;
    return true;
  }
  return false;
}

/** OPA's mkdirp: create missing intermediate objects, then set; false when the path runs through a scalar. */
function mkdirp(root: { [key: string]: JsonValue }, path: string[], value: JsonValue): boolean {
  let node: JsonValue = root;
  for (let i = 0; i < path.length - 1; i++) {
    const key = path[i] as string;
    if (isObject(node)) {
      let child: JsonValue | undefined = node[key];
      if (child === undefined) {
        child = {};
        node[key] = child;
      }
      node = child;
    } else if (Array.isArray(node)) {
      if (!/^\d+$/.test(key)) return false;
      const idx = Number(key);
      // OPA appends nulls to a local copy of the slice, so the padding never reaches the event; same here.
      node = idx < node.length ? (node[idx] as JsonValue) : null;
    } else return false;
  }
  const last = path[path.length - 1] as string;
  if (isObject(node)) {
    node[last] = value;
    return true;
  }
  if (Array.isArray(node)) {
    const idx = arrayIndex(last, node.length);
    if (idx < 0) return false;
    node[idx] = value;
    return true;
  }
  return false;
}
