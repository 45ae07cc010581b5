// JSON with exact integers. Policy inputs carry nanosecond timestamps (`now.ns`, 19 digits) that a double
// cannot hold, and a decision log must reproduce the input the policy saw, so masking (parse, edit, serialize)
// keeps every integer beyond Number.MAX_SAFE_INTEGER as a bigint instead of rounding it.

export type JsonValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | JsonValue[]
  | { [key: string]: JsonValue };

/** The inputs the engine serializes end with the evaluation time: `,"now":{"rfc3339":"…","ns":123…}}`. */
const NOW_SUFFIX = /,"now":\{"rfc3339":("(?:[^"\\]|\\.)*"),"ns":(-?\d+)\}\}$/;
const LONG_DIGITS = /\d{16}/;

/**
 * Parses JSON, keeping integers that are not safe doubles as bigints. Fast path: JSON.parse when no run of 16
 * digits occurs outside the engine's trailing `now` (the common case); otherwise an exact parser.
 */
export function parseExact(text: string): JsonValue {
  const m = NOW_SUFFIX.exec(text);
  if (m) {
    const head = `${text.slice(0, m.index)}}`;
    if (!LONG_DIGITS.test(head)) {
      const value = JSON.parse(head) as { [key: string]: JsonValue };
      if (value !== null && typeof value === "object" && !Array.isArray(value)) {
        value.now = { rfc3339: JSON.parse(m[1] as string) as string, ns: exactInteger(m[2] as string) };
        nowOnly.add(value);
        return value;
      }
    }
  } else if (!LONG_DIGITS.test(text)) {
    return JSON.parse(text) as JsonValue;
  }
  return new ExactParser(text).document();
}

function exactInteger(digits: string): number | bigint {
  const n = Number(digits);
  return Number.isSafeInteger(n) ? n : BigInt(digits);
}

/** Objects from parseExact's fast path: `now.ns` is their only possible bigint. */
const nowOnly = new WeakSet<object>();

/** Serializes a value from parseExact (bigints as plain integers). Key order is preserved. */
export function stringifyExact(value: JsonValue): string {
  if (value !== null && typeof value === "object" && nowOnly.has(value) && !Array.isArray(value)) {
    // The engine's shape: JSON.stringify everything but `now` (an undefined value is skipped), then `now`.
    const now = value.now;
    const o = now !== null && typeof now === "object" && !Array.isArray(now) ? now : null;
    if (o && typeof o.rfc3339 === "string" && typeof o.ns === "bigint" && Object.keys(o).length === 2) {
      value.now = undefined as unknown as JsonValue;
      const head = JSON.stringify(value);
      value.now = now as JsonValue;
      const tail = `"now":{"rfc3339":${JSON.stringify(o.rfc3339)},"ns":${o.ns}}}`;
      return head === "{}" ? `{${tail}` : `${head.slice(0, -1)},${tail}`;
    }
  }
  if (!containsBigint(value)) return JSON.stringify(value);
  return write(value);
}

function containsBigint(v: JsonValue): boolean {
  if (typeof v === "bigint") return true;
  if (v === null || typeof v !== "object") return false;
  if (Array.isArray(v)) return v.some(containsBigint);
  for (const k in v) if (containsBigint(v[k] as JsonValue)) return true;
  return false;
}

function write(v: JsonValue): string {
  if (typeof v === "bigint") return v.toString();
  if (v === null || typeof v !== "object") return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map((x) => (x === undefined ? "null" : write(x))).join(",")}]`;
  const parts: string[] = [];
  for (const k in v) {
    const x = v[k];
    if (x !== undefined) parts.push(`${JSON.stringify(k)}:${write(x)}`);
  }
  return `{${parts.join(",")}}`;
}

class ExactParser {
  private i = 0;

  constructor(private readonly s: string) {}

  document(): JsonValue {
    const v = this.value();
    this.ws();
    if (this.i !== this.s.length) this.fail("unexpected data after the JSON value");
    return v;
  }

  private fail(what: string): never {
    throw new SyntaxError(`${what} at position ${this.i}`);
  }

  private ws(): void {
    const s = this.s;
    while (this.i < s.length) {
      const c = s.charCodeAt(this.i);
      if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) break;
      this.i++;
    }
  }

  private value(): JsonValue {
    this.ws();
    const c = this.s[this.i];
    if (c === "{") return this.object();
    if (c === "[") return this.array();
    if (c === '"') return this.string();
    if (c === "-" || (c !== undefined && c >= "0" && c <= "9")) return this.number();
    for (const [word, v] of [
      ["true", true],
      ["false", false],
      ["null", null],
    ] as const) {
      if (this.s.startsWith(word, this.i)) {
        this.i += word.length;
        return v;
      }
    }
    return this.fail("unexpected token");
  }

  private object(): JsonValue {
    const out: { [key: string]: JsonValue } = {};
    this.i++;
    this.ws();
    if (this.s[this.i] === "}") {
      this.i++;
      return out;
    }
    for (;;) {
      this.ws();
      if (this.s[this.i] !== '"') this.fail("expected a string key");
      const key = this.string();
      this.ws();
      if (this.s[this.i] !== ":") this.fail("expected ':'");
      this.i++;
      out[key] = this.value();
      this.ws();
      const c = this.s[this.i++];
      if (c === "}") return out;
      if (c !== ",") this.fail("expected ',' or '}'");
    }
  }

  private array(): JsonValue {
    const out: JsonValue[] = [];
    this.i++;
    this.ws();
    if (this.s[this.i] === "]") {
      this.i++;
      return out;
    }
    for (;;) {
      out.push(this.value());
      this.ws();
      const c = this.s[this.i++];
      if (c === "]") return out;
      if (c !== ",") this.fail("expected ',' or ']'");
    }
  }

  private string(): string {
    const start = this.i;
    this.i++;
    const s = this.s;
    while (this.i < s.length) {
      const c = s[this.i];
      if (c === "\\") this.i += 2;
      else if (c === '"') {
        this.i++;
        return JSON.parse(s.slice(start, this.i)) as string;
      } else this.i++;
    }
    return this.fail("unterminated string");
  }

  private number(): number | bigint {
    const m = /-?(?:0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/y;
    m.lastIndex = this.i;
    const r = m.exec(this.s);
    if (!r) this.fail("bad number");
    this.i += r[0].length;
    if (r[1] === undefined && r[2] === undefined) return exactInteger(r[0]);
    return Number(r[0]);
  }
}
