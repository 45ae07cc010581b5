// A statement's fingerprint: the first 16 hex digits of SHA-256 over its parse tree without locations, literal
// values (A_Const) and parameters (a literal and a $n are one value slot). The same statement with other
// literals or parameters in the same places, whitespace,
// comments or keyword case has the same fingerprint; any other difference (a column, a table, an alias, the
// order of a list, a nesting level however deep) gives another one.
//
// Not libpg-query's fingerprintSync, for two reasons. It is unsafe in a long-running process: once V8 has
// optimized the wasm code (after some thousands of calls), fingerprinting a statement only ~10 levels deep
// (`SELECT * FROM (SELECT * FROM (…) q) q` eleven times, ten nested sub-selects) overflows the stack inside the
// module, which leaves it corrupted for every later call. And it is too lenient to key approval grants on: it
// ignores everything below depth 100, sorts and de-duplicates select lists, FROM lists and function arguments,
// and drops name segments holding two digits or more, so `DROP TABLE orders_2024_01` and
// `DROP TABLE orders_2025_02` share a fingerprint.
//
// The canonical form is written by hand rather than with JSON.stringify, whose cycle check makes it quadratic in
// the depth of the tree: strings are length-prefixed, so the encoding is unambiguous without escaping.
import * as crypto from "node:crypto";

const VERSION = "pamgate-fingerprint-1\n";

/** The canonical form being written (a module-level string: concatenation is cheaper than collecting parts). */
let out = "";

function canonical(v: unknown): void {
  switch (typeof v) {
    case "string":
      out += `s${v.length}:${v}`;
      return;
    case "number":
      out += `n${v};`;
      return;
    case "boolean":
      out += v ? "T" : "F";
      return;
    case "object":
      break;
    default:
      out += "U";
      return;
  }
  if (v === null) {
    out += "N";
    return;
  }
  if (Array.isArray(v)) {
    out += "[";
    for (const x of v) canonical(x);
    out += "]";
    return;
  }
  out += "{";
  const o = v as Record<string, unknown>;
  for (const k in o) {
    if (k === "location") continue;
    // a literal and a parameter are the same value slot: neither its value nor its number is the shape
    if (k === "A_Const" || k === "ParamRef") out += "?";
    else {
      out += `${k}=`;
      canonical(o[k]);
    }
  }
  out += "}";
}

/** crypto.hash (Node ≥ 20.12) is a one-shot digest, cheaper than createHash for short input. */
const oneShot = (crypto as { hash?: (algorithm: string, data: string, encoding: "hex") => string }).hash;
const sha256Hex = oneShot
  ? (s: string): string => oneShot("sha256", s, "hex")
  : (s: string): string => crypto.createHash("sha256").update(s).digest("hex");

export function fingerprintOf(stmt: Record<string, unknown>): string {
  out = VERSION;
  try {
    canonical(stmt);
    return sha256Hex(out).slice(0, 16);
  } finally {
    out = "";
  }
}
