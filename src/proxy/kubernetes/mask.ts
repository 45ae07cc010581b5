// Masking Secret values in Kubernetes API responses (JSON), streamed.
//
// What is masked: in every object that is a Secret, each value of the map at each masked top-level field
// (`data`, `stringData`, …; keys stay visible), and the same fields inside its
// `kubectl.kubernetes.io/last-applied-configuration` annotation (a JSON string of the applied manifest: parsed,
// masked, written back). An object is a Secret when its `kind` is "Secret" (any one of its `kind`s, should there
// be duplicates), or when it has no `kind` and the context says so: an item of a SecretList, or — with
// `resourceIsSecrets`, which the caller sets when the request was for secrets — any item, watch object or Table
// row object. The last-applied annotation is also masked in objects of other kinds when the applied manifest in
// it is a Secret: a Table row or a metadata-only list (PartialObjectMetadata) of secrets carries the annotation,
// and with it the values, without saying the object is a Secret.
//
// Where objects are found: the top-level value (several, one after another, for a watch: `{"type":…,"object":…}`
// per line), each element of an `items` array (List, SecretList, any list), a watch event's `object`, and the
// `object` of each element of a Table's `rows`.
//
// `data` holds base64, and masking keeps it base64 so that `kubectl get secret -o jsonpath='{.data.x}' | base64
// -d` prints the masked value: the strategy is applied to the decoded bytes and the result encoded again. So
// `redact` gives "Kioq", base64 of the same "***" marker PostgreSQL results get; `partial` keeps the last 4
// characters of the decoded value (bytes when it is not UTF-8); `hash` gives base64 of `h:` + 16 hex digits, the
// same digits as a SQL value with the same bytes. Any other field (`stringData`) is plain text, masked as it is.
//
// Streaming: the response passes through as it arrives, except the bytes of one object that may be a Secret,
// held from its `{` until its `}` because its `kind` may come after its `data` (the API server writes `kind`
// first, but nothing promises it). A list, Table or watch event is not held: when its `items`, `rows` or `object`
// begins it is known to be a container, and only its current item is. So memory is bounded by the largest item,
// never by the list. Bytes not in a masked value go out byte-identical — as subarrays of the input chunks, not
// copies. A masked Secret is spliced: its masked values are replaced where they stand, keys and layout kept
// (JSON.parse/stringify only for an odd shape — a value that is not a string — and for the annotation).
//
// Why a hand-written scanner and not stream-json or @streamparser/json: those emit tokens or parsed values, not
// the input's bytes, so byte-identical passthrough would mean re-serializing every item, and they allocate per
// token where a list of Secrets is mostly long strings that need no decoding at all. This scanner is one loop
// over the structure's bytes, with long strings searched natively (memchr) for their end; nothing is allocated
// but captured keys and masked objects. It validates the grammar (structure, numbers, literals,
// escapes) so that what it takes for an object boundary is what a client's parser takes for one. Not checked: raw
// control characters and invalid UTF-8 inside strings — neither can move a string's end or an object's boundary
// for any parser, so passing them cannot expose a value (a strict client rejects them itself).
//
// Fail closed: malformed JSON (or a response cut short, seen at `end`) throws a KubeMaskError. Nothing scanned
// in the failing write and no held object is ever emitted, so the caller — which must then cut the response —
// has received only bytes before the bad point, none of them an unmasked Secret value.
//
// Content types: only JSON is masked. `-o yaml` and `-o json` are client-side (kubectl reads JSON, or protobuf
// when it may), so the caller must drop protobuf from the Accept header it forwards for a masked request, must
// not let the upstream compress (drop Accept-Encoding, or gunzip before this), and must refuse — not pass — a
// response whose Content-Type fails `maskableContentType` or whose Content-Encoding fails
// `maskableContentEncoding`.
import { Transform, type TransformCallback } from "node:stream";
import type { MaskRule } from "../../decision/contract.js";
import { REDACTED, REDACTED_BASE64, type Strategy, type ValueMasker } from "../../util/mask-strategies.js";

export interface MaskOptions {
  /** The strategies (with the hash key): one per server. */
  masker: ValueMasker;
  /** The request was for secrets: an item, watch object or Table row object without `kind` is a Secret. */
  resourceIsSecrets?: boolean;
}

/** Malformed or truncated JSON: the response must be cut. */
export class KubeMaskError extends Error {
  override name = "KubeMaskError";
}

/** Whether a response of this Content-Type can be masked: JSON (`application/json`, `…+json`) in UTF-8. */
export function maskableContentType(contentType: string | null | undefined): boolean {
  if (!contentType) return false;
  const [type = "", ...params] = contentType.toLowerCase().split(";");
  const t = type.trim();
  if (t !== "application/json" && !/^application\/[a-z0-9.!#$&^_-]+\+json$/.test(t)) return false;
  for (const p of params) {
    const eq = p.indexOf("=");
    if (eq < 0 || p.slice(0, eq).trim() !== "charset") continue;
    const charset = p
      .slice(eq + 1)
      .trim()
      .replace(/"/g, "");
    if (charset !== "utf-8" && charset !== "utf8") return false;
  }
  return true;
}

/** Whether a response of this Content-Encoding can be masked: not compressed. */
export function maskableContentEncoding(contentEncoding: string | null | undefined): boolean {
  return !contentEncoding || contentEncoding.trim().toLowerCase() === "identity";
}

const LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration";
const REDACTED_BASE64_JSON = Buffer.from(`"${REDACTED_BASE64}"`);
/** Deeper JSON is refused (Go's encoding/json stops at 10000 too). */
const MAX_DEPTH = 10000;
/** Keys and kinds longer than this match nothing (and are not kept whole while split across chunks). */
const MAX_NAME = 256;

interface Rule {
  strategy: Strategy;
  /** The field holds base64 (a Secret's `data`): mask the decoded bytes, encode the result. */
  base64: boolean;
}

// Scanner states.
const S_ROOT = 0; // between top-level values
const S_VALUE = 1; // a value is due (after `:`, or `,` in an array)
const S_ARR_FIRST = 2; // after `[`: a value or `]`
const S_OBJ_FIRST = 3; // after `{`: a key or `}`
const S_KEY = 4; // after `,` in an object: a key
const S_COLON = 5;
const S_AFTER = 6; // after a value in a container: `,` or the closing bracket
const S_STR = 7;
const S_ESC = 8; // after a backslash in a string
const S_HEX = 9; // in the 4 hex digits of \u
const S_LIT = 10; // in true / false / null
// Numbers: after `-`, after a leading 0, in integer digits, after `.`, in fraction digits, after e/E, after its
// sign, in exponent digits. N_ZERO, N_INT, N_FRAC and N_EXP may end the number.
const N_MINUS = 11;
const N_ZERO = 12;
const N_INT = 13;
const N_DOT = 14;
const N_FRAC = 15;
const N_E = 16;
const N_ESIGN = 17;
const N_EXP = 18;

// What a container is for the masker.
const R_NONE = 0;
const R_DOC = 1; // an object that may be a Secret, a list, a Table or a watch event
const R_META = 2; // a DOC's metadata
const R_ANNOS = 3; // its annotations
const R_ROW = 4; // an element of a Table's rows
const R_LIST = 5; // an array whose elements are DOCs (`items`, or a top-level array)
const R_ROWS = 6; // a Table's rows

// What the value of the current key (or each element of an array) is.
const A_NONE = 0;
const A_ROOT = 1; // a top-level value
const A_KIND = 2;
const A_EDIT = 3; // a masked field of a held object: recorded, spliced when the object turns out a Secret
const A_FIELD = 4; // a masked field of a container of unknown kind: held by itself and masked
const A_LAST = 5; // the last-applied annotation of a held object
const A_ITEMS = 6;
const A_ROWS = 7;
const A_OBJECT = 8; // a watch event's object
const A_META = 9;
const A_ANNOS = 10;
const A_DOC = 11; // an element of a R_LIST
const A_ROW = 12; // an element of R_ROWS
const A_ROW_OBJECT = 13;

// How a held region is released.
const REL_NONE = 0;
const REL_ALL = 1; // a Secret (or unknown, for safety): every recorded edit
const REL_LAST = 2; // not a Secret: only a last-applied annotation that holds a Secret

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const LBRACE = 0x7b;
const RBRACE = 0x7d;
const LBRACKET = 0x5b;
const RBRACKET = 0x5d;

const WS = new Uint8Array(256);
const HEX = new Uint8Array(256);
const ESCAPABLE = new Uint8Array(256);
const DIGIT = new Uint8Array(256);
for (const c of [0x20, 0x09, 0x0a, 0x0d]) WS[c] = 1;
for (const c of Buffer.from("0123456789abcdefABCDEF")) HEX[c] = 1;
for (const c of Buffer.from('"\\/bfnrtu')) ESCAPABLE[c] = 1;
for (let c = 0x30; c <= 0x39; c++) DIGIT[c] = 1;
const TRUE = Buffer.from("true");
const FALSE = Buffer.from("false");
const NULL = Buffer.from("null");

/** A name's UTF-8 length and first byte, to tell most keys apart from the few looked for without decoding them. */
function signature(length: number, first: number): number {
  return length * 256 + first;
}

function signatures(names: Iterable<string>): Set<number> {
  const set = new Set<number>();
  for (const name of names) {
    const b = Buffer.from(name);
    set.add(signature(b.length, b[0] ?? 0));
  }
  return set;
}

const KIND_SIGNATURES = signatures(["Secret", "SecretList"]);

/** The first byte at or after `p` (before `e`) that is not JSON whitespace. */
function skipWs(buf: Buffer, p: number, e: number): number {
  while (p < e && WS[buf[p] as number] === 1) p++;
  return p;
}

/** The closing quote of the (valid) JSON string whose content starts at `from`. */
function stringClose(buf: Buffer, from: number): number {
  for (let q = buf.indexOf(QUOTE, from); ; q = buf.indexOf(QUOTE, q + 1)) {
    if (q < 0) throw new KubeMaskError("internal error: a string without its end");
    let k = q - 1;
    while (k >= from && buf[k] === BACKSLASH) k--;
    if ((q - 1 - k) % 2 === 0) return q; // an even run of backslashes escapes each other, not the quote
  }
}

/** Where the next `byte` at or after `from` is, or the end of `buf`. */
function indexOrEnd(buf: Buffer, byte: number, from: number): number {
  const at = buf.indexOf(byte, from);
  return at < 0 ? buf.length : at;
}

/** One open container (pooled per depth: reset, not allocated, for each container). */
class Frame {
  obj = false;
  role = R_NONE;
  /** Object: what the current key's value is (role frames set it at each key). */
  action = A_NONE;
  /** The rule of the current key, for A_EDIT / A_FIELD. */
  rule: Rule | null = null;
  /** Array: what each element is; for R_LIST, whether an element without `kind` is a Secret. */
  elem = A_NONE;
  elemSecret = false;
  // R_DOC
  /** An object of this DOC's place without `kind` is a Secret. */
  dflt = false;
  sawKind = false;
  kindSecret = false;
  kindSecretList = false;
  /** Has `items`, `rows` or `object`: a list, Table or event, never held. */
  container = false;
  /** Its bytes are held until its end (or until it turns out a container). */
  ownsHold = false;

  reset(obj: boolean): void {
    this.obj = obj;
    this.role = R_NONE;
    this.action = A_NONE;
    this.rule = null;
    this.elem = A_NONE;
    this.elemSecret = false;
    this.dflt = false;
    this.sawKind = false;
    this.kindSecret = false;
    this.kindSecretList = false;
    this.container = false;
    this.ownsHold = false;
  }
}

/**
 * The masker as a push parser: `write` each chunk of the body, `end` at its end; each returns the bytes to send
 * on (often subarrays of the chunks written: the chunks must not be changed afterwards). Either throws
 * KubeMaskError on malformed JSON, and every call after that throws it again.
 */
export class SecretMasker {
  private readonly rules = new Map<string, Rule>();
  private readonly masker: ValueMasker;
  private readonly resourceIsSecrets: boolean;
  /** Per role, the keys that mean something there, as `signature`s. */
  private readonly signatures: Array<Set<number>> = [];

  // Scanner.
  private st = S_ROOT;
  private readonly frames: Frame[] = [];
  private depth = 0;
  private top: Frame | null = null;
  /** The string being scanned is a key. */
  private strKey = false;
  private hexLeft = 0;
  private lit: Buffer = TRUE;
  private litPos = 0;

  // Capture of a key or `kind` string (0: none, 1: key, 2: kind).
  private capture = 0;
  /** Where the captured string starts in the current chunk (0 once it has run over from an earlier one). */
  private capFrom = 0;
  private capParts: Buffer[] = [];
  private capLen = 0;
  private capEsc = false;

  // Positions are absolute (bytes since the start of the body). The chunk being scanned starts at `base`.
  private chunk: Buffer = Buffer.alloc(0);
  private base = 0;
  /** Bytes before this have been emitted. */
  private emitFrom = 0;
  /** Bytes from earlier chunks not yet emitted, contiguous from `emitFrom`. */
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** Start of the held object or field, or -1. Pending bytes from here on wait for its end. */
  private holdStart = -1;
  /** The hold is an A_FIELD value's, released (masked) at the value's end. */
  private fieldHold = false;
  // Edits recorded in the held region: value spans to replace, and their rule (null: last-applied).
  private editStarts: number[] = [];
  private editEnds: number[] = [];
  private editRules: Array<Rule | null> = [];
  private nEdits = 0;
  /** The depth of the container holding the value being recorded as an edit, or -1. */
  private editDepth = -1;
  private editStart = 0;
  private editRule: Rule | null = null;

  private out: Buffer[] = [];
  private error: KubeMaskError | null = null;
  private maxHeld = 0;

  constructor(rules: readonly MaskRule[], opts: MaskOptions) {
    for (const r of rules) {
      if (!this.rules.has(r.field))
        this.rules.set(r.field, { strategy: r.strategy, base64: r.field === "data" });
    }
    this.masker = opts.masker;
    this.resourceIsSecrets = opts.resourceIsSecrets ?? false;
    const doc = ["kind", "items", "rows", "object", "metadata", ...this.rules.keys()];
    this.signatures[R_DOC] = signatures(doc);
    this.signatures[R_META] = signatures(["annotations"]);
    this.signatures[R_ANNOS] = signatures([LAST_APPLIED]);
    this.signatures[R_ROW] = signatures(["object"]);
  }

  /**
   * Most bytes kept between writes: a held object's so far, bounded by one item (and up to MAX_NAME more of a
   * key split across chunks, not counted).
   */
  get maxBuffered(): number {
    return this.maxHeld;
  }

  write(chunk: Buffer): Buffer[] {
    if (this.error) throw this.error;
    this.out = [];
    try {
      this.chunk = chunk;
      this.scan(chunk);
      this.chunkEnd(chunk);
    } catch (e) {
      this.fail(e);
    }
    return this.out;
  }

  end(): Buffer[] {
    if (this.error) throw this.error;
    this.out = [];
    try {
      this.chunk = Buffer.alloc(0);
      const st = this.st;
      if (st === N_ZERO || st === N_INT || st === N_FRAC || st === N_EXP) this.st = this.valueEnd(this.base);
      if (this.st !== S_ROOT) throw new KubeMaskError(`Kubernetes response cut short at byte ${this.base}`);
      this.chunkEnd(this.chunk);
    } catch (e) {
      this.fail(e);
    }
    return this.out;
  }

  private fail(e: unknown): never {
    this.error =
      e instanceof KubeMaskError
        ? e
        : new KubeMaskError(`masking the Kubernetes response failed: ${String(e)}`);
    this.out = [];
    this.pending = [];
    throw this.error;
  }

  private bad(i: number, what: string): never {
    const c = this.chunk[i];
    const got =
      c === undefined
        ? ""
        : c >= 0x20 && c < 0x7f
          ? ` '${String.fromCharCode(c)}'`
          : ` byte 0x${c.toString(16)}`;
    throw new KubeMaskError(
      `malformed JSON in the Kubernetes response at byte ${this.base + i}:${got} ${what}`,
    );
  }

  private scan(buf: Buffer): void {
    const n = buf.length;
    let st = this.st;
    let i = 0;
    // The next quote and backslash at or after a position already searched (see S_STR); -1: not searched yet.
    let q = -1;
    let b = -1;
    while (i < n) {
      const c = buf[i] as number;
      switch (st) {
        case S_STR: {
          // The bulk of a response is string bytes (base64 values, the last-applied annotation). A short string
          // ends within a few bytes read here; a long one is searched natively (memchr), about 28 ns a call
          // against 2-3 ns a byte for a JavaScript loop over a Buffer. `q` and `b` (the next quote and backslash
          // at or after them) are kept across strings, so an escaped text costs one search per escape.
          let j = i;
          const lim = Math.min(i + 12, n);
          while (j < lim) {
            const d = buf[j] as number;
            if (d === QUOTE || d === BACKSLASH) break;
            j++;
          }
          if (j === lim && j < n) {
            if (q < j) q = indexOrEnd(buf, QUOTE, j);
            if (b < j) b = indexOrEnd(buf, BACKSLASH, j);
            j = Math.min(q, b);
          }
          if (j >= n) {
            i = n;
          } else if (buf[j] === QUOTE) {
            st = this.stringEnd(j);
            i = j + 1;
          } else {
            this.capEsc = true;
            st = S_ESC;
            i = j + 1;
          }
          break;
        }
        case S_ESC:
          if (ESCAPABLE[c] !== 1) this.bad(i, "after a backslash");
          if (c === 0x75) {
            this.hexLeft = 4;
            st = S_HEX;
          } else {
            st = S_STR;
          }
          i++;
          break;
        case S_HEX:
          if (HEX[c] !== 1) this.bad(i, "in a \\u escape");
          if (--this.hexLeft === 0) st = S_STR;
          i++;
          break;
        case S_ROOT:
        case S_VALUE:
        case S_ARR_FIRST:
          if (WS[c] === 1) {
            i++;
          } else if (c === RBRACKET && st === S_ARR_FIRST) {
            st = this.close(i);
            i++;
          } else {
            st = this.beginValue(c, i);
            i++;
          }
          break;
        case S_OBJ_FIRST:
        case S_KEY:
          if (WS[c] === 1) {
            i++;
          } else if (c === QUOTE) {
            this.strKey = true;
            if ((this.top as Frame).role !== R_NONE) this.startCapture(1, i + 1);
            st = S_STR;
            i++;
          } else if (c === RBRACE && st === S_OBJ_FIRST) {
            st = this.close(i);
            i++;
          } else {
            this.bad(i, st === S_KEY ? "where a key was due" : "where a key or '}' was due");
          }
          break;
        case S_COLON:
          if (WS[c] === 1) {
            i++;
          } else if (c === COLON) {
            st = S_VALUE;
            i++;
          } else {
            this.bad(i, "where ':' was due");
          }
          break;
        case S_AFTER: {
          if (WS[c] === 1) {
            i++;
            break;
          }
          const obj = (this.top as Frame).obj;
          if (c === COMMA) st = obj ? S_KEY : S_VALUE;
          else if (c === (obj ? RBRACE : RBRACKET)) st = this.close(i);
          else this.bad(i, obj ? "where ',' or '}' was due" : "where ',' or ']' was due");
          i++;
          break;
        }
        case S_LIT:
          if (c !== this.lit[this.litPos]) this.bad(i, "in a literal");
          i++;
          if (++this.litPos === this.lit.length) st = this.valueEnd(this.base + i);
          break;
        case N_MINUS:
          if (c === 0x30) st = N_ZERO;
          else if (DIGIT[c] === 1) st = N_INT;
          else this.bad(i, "in a number");
          i++;
          break;
        case N_INT:
          while (i < n && DIGIT[buf[i] as number] === 1) i++;
          if (i === n) break;
          st = this.numberGoesOn(buf[i] as number, i, false);
          if (st !== S_AFTER && st !== S_ROOT) i++;
          break;
        case N_ZERO:
          st = this.numberGoesOn(c, i, false);
          if (st !== S_AFTER && st !== S_ROOT) i++;
          break;
        case N_DOT:
        case N_ESIGN:
          if (DIGIT[c] !== 1) this.bad(i, "in a number");
          st = st === N_DOT ? N_FRAC : N_EXP;
          i++;
          break;
        case N_FRAC:
          while (i < n && DIGIT[buf[i] as number] === 1) i++;
          if (i === n) break;
          st = this.numberGoesOn(buf[i] as number, i, true);
          if (st !== S_AFTER && st !== S_ROOT) i++;
          break;
        case N_E:
          if (c === 0x2b || c === 0x2d) st = N_ESIGN;
          else if (DIGIT[c] === 1) st = N_EXP;
          else this.bad(i, "in a number's exponent");
          i++;
          break;
        case N_EXP:
          while (i < n && DIGIT[buf[i] as number] === 1) i++;
          if (i === n) break;
          // The number ends at this byte, which is then read again as what follows the value.
          st = this.valueEnd(this.base + i);
          break;
      }
    }
    this.st = st;
  }

  /**
   * After the digits of an integer (or a fraction, `frac`): `.` or an exponent goes on (the byte is consumed);
   * anything else ends the number, and that byte is read again as what follows the value.
   */
  private numberGoesOn(c: number, i: number, frac: boolean): number {
    if (c === 0x2e && !frac) return N_DOT;
    if (c === 0x65 || c === 0x45) return N_E;
    if (DIGIT[c] === 1) this.bad(i, "(a leading zero) in a number");
    return this.valueEnd(this.base + i);
  }

  /** The first byte `c` (at `i`) of a value; returns the next state, the byte consumed. */
  private beginValue(c: number, i: number): number {
    const f = this.top;
    let action = f === null ? A_ROOT : f.obj ? f.action : f.elem;
    if (action === A_EDIT || action === A_FIELD || action === A_LAST) {
      const at = this.base + i;
      if (action === A_FIELD) {
        this.startHold(at);
        this.fieldHold = true;
      }
      this.editStart = at;
      this.editDepth = this.depth;
      this.editRule = action === A_LAST ? null : (f as Frame).rule;
      action = A_NONE; // nothing inside a masked value is looked at
    }
    switch (c) {
      case LBRACE:
        this.push(true, action, i);
        return S_OBJ_FIRST;
      case LBRACKET:
        this.push(false, action, i);
        return S_ARR_FIRST;
      case QUOTE:
        this.strKey = false;
        if (action === A_KIND) this.startCapture(2, i + 1);
        return S_STR;
      case 0x2d:
        return N_MINUS;
      case 0x30:
        return N_ZERO;
      case 0x74:
        return this.literal(TRUE);
      case 0x66:
        return this.literal(FALSE);
      case 0x6e:
        return this.literal(NULL);
    }
    if (DIGIT[c] === 1) return N_INT;
    return this.bad(i, "where a value was due");
  }

  private literal(lit: Buffer): number {
    this.lit = lit;
    this.litPos = 1;
    return S_LIT;
  }

  /** Opens a container at `i` whose place is `action`. */
  private push(obj: boolean, action: number, i: number): void {
    if (this.depth >= MAX_DEPTH) this.bad(i, `nests deeper than ${MAX_DEPTH}`);
    let f = this.frames[this.depth];
    if (f === undefined) {
      f = new Frame();
      this.frames.push(f);
    }
    f.reset(obj);
    const parent = this.top;
    const at = this.base + i;
    if (obj) {
      switch (action) {
        case A_ROOT:
        case A_ROW_OBJECT:
          this.docStart(f, this.resourceIsSecrets, at);
          break;
        case A_DOC:
          this.docStart(f, (parent as Frame).elemSecret, at);
          break;
        case A_OBJECT:
          this.containerize(parent as Frame, at);
          this.docStart(f, this.resourceIsSecrets, at);
          break;
        case A_ROW:
          f.role = R_ROW;
          break;
        case A_META:
          f.role = R_META;
          break;
        case A_ANNOS:
          f.role = R_ANNOS;
          break;
      }
    } else if (action === A_ROOT) {
      f.role = R_LIST;
      f.elem = A_DOC;
      f.elemSecret = this.resourceIsSecrets;
    } else if (action === A_ITEMS) {
      const list = parent as Frame;
      this.containerize(list, at);
      f.role = R_LIST;
      f.elem = A_DOC;
      f.elemSecret = this.resourceIsSecrets || list.kindSecretList;
    } else if (action === A_ROWS) {
      this.containerize(parent as Frame, at);
      f.role = R_ROWS;
      f.elem = A_ROW;
    }
    this.depth++;
    this.top = f;
  }

  private docStart(f: Frame, dflt: boolean, at: number): void {
    f.role = R_DOC;
    f.dflt = dflt;
    // Only a container's items start inside a DOC, and a container is not held: no hold is open here. Were one
    // open, this object's fields could not be masked: fail rather than pass them.
    if (this.holdStart >= 0) throw new KubeMaskError("internal error: an object to mask inside a held one");
    this.startHold(at);
    f.ownsHold = true;
  }

  /** The DOC `d` has `items`, `rows` or `object` (starting at `at`): it is not held any longer. */
  private containerize(d: Frame, at: number): void {
    d.container = true;
    if (!d.ownsHold) return;
    d.ownsHold = false;
    // A masked field before this point, in an object whose kind is not known yet: masked, to be safe.
    this.release(at, d.sawKind && !d.kindSecret ? REL_NONE : REL_ALL);
  }

  /** Closes the container whose closing bracket is at `i`. */
  private close(i: number): number {
    const f = this.top as Frame;
    this.depth--;
    this.top = this.depth > 0 ? (this.frames[this.depth - 1] as Frame) : null;
    const end = this.base + i + 1;
    if (f.role === R_DOC && f.ownsHold) {
      this.release(end, f.kindSecret || (!f.sawKind && f.dflt) ? REL_ALL : REL_LAST);
    }
    return this.valueEnd(end);
  }

  /** A value ended just before `end`. */
  private valueEnd(end: number): number {
    if (this.editDepth === this.depth) this.finishEdit(end);
    return this.depth === 0 ? S_ROOT : S_AFTER;
  }

  /** The closing quote of a string is at `j`. */
  private stringEnd(j: number): number {
    if (this.capture !== 0) this.captured(j);
    return this.strKey ? S_COLON : this.valueEnd(this.base + j + 1);
  }

  private startCapture(kind: number, from: number): void {
    this.capture = kind;
    this.capFrom = from;
    if (this.capParts.length > 0) this.capParts = [];
    this.capLen = 0;
    this.capEsc = false;
  }

  /** The captured key or kind ends at `j` (its closing quote). */
  private captured(j: number): void {
    const kind = this.capture;
    this.capture = 0;
    const f = this.top as Frame;
    // Most keys of the objects looked at (name, uid, labels, …) matter not: their length and first byte say so
    // without making a string of them.
    const sigs = kind === 2 ? KIND_SIGNATURES : (this.signatures[f.role] as Set<number>);
    let name: string | null = null;
    if (this.capParts.length === 0) {
      const from = this.capFrom;
      if (this.capEsc || sigs.has(signature(j - from, j > from ? (this.chunk[from] as number) : 0)))
        name = this.decode(this.chunk, from, j);
    } else if (this.capLen + j - this.capFrom <= MAX_NAME) {
      const bytes = Buffer.concat([...this.capParts, this.chunk.subarray(this.capFrom, j)]);
      name = this.decode(bytes, 0, bytes.length);
    }
    if (this.capParts.length > 0) this.capParts = [];
    if (kind === 2) {
      f.sawKind = true;
      if (name === "Secret") f.kindSecret = true;
      else if (name === "SecretList") f.kindSecretList = true;
      return;
    }
    let a = A_NONE;
    switch (f.role) {
      case R_DOC: {
        // The structure's keys first: a rule naming `items` must not make a whole list one held object.
        const rule = name === null ? undefined : this.rules.get(name);
        if (name === "kind") {
          a = A_KIND;
        } else if (!f.kindSecret && (name === "items" || name === "rows" || name === "object")) {
          a = name === "items" ? A_ITEMS : name === "rows" ? A_ROWS : A_OBJECT;
        } else if (rule !== undefined) {
          f.rule = rule;
          if (f.ownsHold) a = A_EDIT;
          else if (f.container && !(f.sawKind && !f.kindSecret)) a = A_FIELD;
        } else if (name === "metadata") {
          if (f.ownsHold && this.rules.size > 0) a = A_META;
        }
        break;
      }
      case R_META:
        if (name === "annotations") a = A_ANNOS;
        break;
      case R_ANNOS:
        if (name === LAST_APPLIED) a = A_LAST;
        break;
      case R_ROW:
        if (name === "object") a = A_ROW_OBJECT;
        break;
    }
    f.action = a;
  }

  private decode(bytes: Buffer, from: number, to: number): string | null {
    if (to - from > MAX_NAME) return null;
    const raw = bytes.toString("utf8", from, to);
    // Escapes were checked by the scanner: JSON.parse only decodes them.
    return this.capEsc ? (JSON.parse(`"${raw}"`) as string) : raw;
  }

  private finishEdit(end: number): void {
    this.editDepth = -1;
    const k = this.nEdits++;
    this.editStarts[k] = this.editStart;
    this.editEnds[k] = end;
    this.editRules[k] = this.editRule;
    if (this.fieldHold) {
      this.fieldHold = false;
      this.release(end, REL_ALL);
    }
  }

  private startHold(at: number): void {
    this.holdStart = at;
    this.nEdits = 0;
  }

  /** The held region ends before `end`: splice its edits in (as `mode` says) or let it go as it is. */
  private release(end: number, mode: number): void {
    const start = this.holdStart;
    this.holdStart = -1;
    const n = this.nEdits;
    this.nEdits = 0;
    if (mode === REL_NONE || n === 0) return; // the bytes stay pending and go out with the rest
    if (mode === REL_LAST && !this.hasLastApplied(n)) return; // a ConfigMap's `data`: nothing to do
    const base = this.base;
    const chunk = this.chunk;
    // A hold that began in an earlier chunk is all of `pending` (chunkEnd emitted what came before it).
    const held =
      start >= base
        ? chunk.subarray(start - base, end - base)
        : Buffer.concat([...this.pending, chunk.subarray(0, end - base)]);
    const masked = this.applyEdits(held, start, n, mode === REL_ALL);
    if (masked === null) return;
    if (start >= base) {
      this.emitPending();
      if (this.emitFrom < start) this.out.push(chunk.subarray(this.emitFrom - base, start - base));
    }
    this.pending = [];
    this.pendingBytes = 0;
    this.out.push(masked);
    this.emitFrom = end;
  }

  private hasLastApplied(n: number): boolean {
    for (let k = 0; k < n; k++) if (this.editRules[k] === null) return true;
    return false;
  }

  private emitPending(): void {
    for (const p of this.pending) this.out.push(p);
    this.pending = [];
    this.pendingBytes = 0;
    if (this.emitFrom < this.base) this.emitFrom = this.base;
  }

  /** `held` (starting at absolute `origin`) with its edits spliced in, or null when none changes anything. */
  private applyEdits(held: Buffer, origin: number, n: number, secret: boolean): Buffer | null {
    const parts: Buffer[] = [];
    let p = 0;
    for (let k = 0; k < n; k++) {
      const s = (this.editStarts[k] as number) - origin;
      const e = (this.editEnds[k] as number) - origin;
      const rule = this.editRules[k] as Rule | null;
      if (rule === null) {
        const json = this.maskLastApplied(held, s, e, secret);
        if (json === null) continue;
        if (s > p) parts.push(held.subarray(p, s));
        parts.push(Buffer.from(json));
      } else {
        if (!secret) continue;
        if (s > p) parts.push(held.subarray(p, s));
        if (!this.spliceMap(held, s, e, rule, parts)) {
          const masked = this.maskFieldValue(JSON.parse(held.toString("utf8", s, e)), rule);
          parts.push(Buffer.from(JSON.stringify(masked)));
        }
      }
      p = e;
    }
    if (parts.length === 0) return null;
    if (p < held.length) parts.push(held.subarray(p));
    return Buffer.concat(parts);
  }

  /**
   * The usual masked field, a map of strings (`held[s, e)`, valid JSON — the scanner checked it), masked into
   * `parts` with only the values replaced: its keys and layout stay as they were, and neither JSON.parse nor
   * JSON.stringify runs (they were half the time of a masked list). False, with `parts` as it was, for any other
   * shape: the caller masks that through JSON.parse.
   */
  private spliceMap(held: Buffer, s: number, e: number, rule: Rule, parts: Buffer[]): boolean {
    const mark = parts.length;
    let p = skipWs(held, s, e);
    if (held[p] !== LBRACE) return false;
    p = skipWs(held, p + 1, e);
    let copied = s; // held[copied, …) is not in `parts` yet
    let bs = -1; // the next backslash at or after a searched position (as in the scanner)
    if (held[p] !== RBRACE) {
      for (;;) {
        // A key, then a string value: its quotes at v and end.
        p = stringClose(held, p + 1) + 1;
        p = skipWs(held, skipWs(held, p, e) + 1, e); // the colon, then whitespace
        if (held[p] !== QUOTE) {
          parts.length = mark;
          return false;
        }
        const v = p;
        const end = stringClose(held, v + 1);
        if (bs < v) bs = indexOrEnd(held, BACKSLASH, v);
        const escaped = bs < end;
        if (v > copied) parts.push(held.subarray(copied, v));
        parts.push(this.maskedString(held, v, end, escaped, rule));
        copied = end + 1;
        p = skipWs(held, end + 1, e);
        if (held[p] === RBRACE) break;
        p = skipWs(held, p + 1, e); // past the comma
      }
    }
    if (e > copied) parts.push(held.subarray(copied, e));
    return true;
  }

  /** The string `held[v, end]` (both quotes) masked, as a JSON string with its quotes. */
  private maskedString(held: Buffer, v: number, end: number, escaped: boolean, rule: Rule): Buffer {
    if (rule.base64 && rule.strategy === "redact") return REDACTED_BASE64_JSON;
    const value = escaped
      ? (JSON.parse(held.toString("utf8", v, end + 1)) as string)
      : held.toString(rule.base64 ? "latin1" : "utf8", v + 1, end);
    if (!rule.base64) return Buffer.from(JSON.stringify(this.masker.text(value, rule.strategy)));
    return Buffer.from(`"${this.masker.base64(value, rule.strategy)}"`, "latin1");
  }

  /** A map's values are masked (in place: JSON.parse's objects are ours), any other value as a whole. */
  private maskFieldValue(v: unknown, rule: Rule): unknown {
    if (v === null || typeof v !== "object") return this.maskLeaf(v, rule);
    if (Array.isArray(v)) return v.map((x) => this.maskLeaf(x, rule));
    const map = v as Record<string, unknown>;
    for (const key of Object.keys(map)) map[key] = this.maskLeaf(map[key], rule);
    return map;
  }

  private maskLeaf(v: unknown, rule: Rule): unknown {
    if (v === null) return null; // an empty value: nothing to hide
    // A value that is not a string (invalid in a Secret) is masked as its JSON text.
    const s = typeof v === "string" ? v : JSON.stringify(v);
    if (!rule.base64) return this.masker.text(s, rule.strategy);
    return this.masker.base64(s, rule.strategy);
  }

  /**
   * The last-applied annotation `held[s, e)` (a JSON string of JSON) with the applied object's masked fields
   * masked; null to leave it. In a Secret (`secret`) it is always masked, and what cannot be parsed becomes the
   * marker; elsewhere only when the applied object is a Secret.
   */
  private maskLastApplied(held: Buffer, s: number, e: number, secret: boolean): string | null {
    const raw = held.toString("utf8", s, e);
    // Cheap test first: an applied Secret says "Secret", unless escaped (then there is a \u).
    if (!secret && !raw.includes("Secret") && !raw.includes("\\u")) return null;
    const text: unknown = JSON.parse(raw);
    let applied: unknown;
    try {
      applied = typeof text === "string" ? JSON.parse(text) : undefined;
    } catch {
      applied = undefined;
    }
    const isObject = applied !== null && typeof applied === "object" && !Array.isArray(applied);
    const obj = applied as Record<string, unknown>;
    if (!secret && !(isObject && obj.kind === "Secret")) return null;
    if (!isObject) return JSON.stringify(REDACTED);
    for (const [field, rule] of this.rules) {
      if (Object.hasOwn(obj, field)) obj[field] = this.maskFieldValue(obj[field], rule);
    }
    // kubectl ends the annotation with a newline; keep it.
    return JSON.stringify(JSON.stringify(obj) + ((text as string).endsWith("\n") ? "\n" : ""));
  }

  /** After a chunk is scanned: emit what is not held, keep the rest (bounded by one held object). */
  private chunkEnd(chunk: Buffer): void {
    const base = this.base;
    const n = chunk.length;
    if (this.capture !== 0) {
      // Keep the captured string's start, unless it is already too long to matter.
      const part = chunk.subarray(this.capFrom);
      this.capLen += part.length;
      if (this.capLen <= MAX_NAME) this.capParts.push(part);
      this.capFrom = 0;
    }
    const hold = this.holdStart;
    if (hold < 0) {
      this.emitPending();
      if (this.emitFrom < base + n) this.out.push(chunk.subarray(this.emitFrom - base));
      this.emitFrom = base + n;
    } else if (hold >= base) {
      this.emitPending();
      if (this.emitFrom < hold) this.out.push(chunk.subarray(this.emitFrom - base, hold - base));
      this.pending = [chunk.subarray(hold - base)];
      this.pendingBytes = base + n - hold;
      this.emitFrom = hold;
    } else {
      if (n > 0) this.pending.push(chunk);
      this.pendingBytes += n;
    }
    if (this.pendingBytes > this.maxHeld) this.maxHeld = this.pendingBytes;
    this.base = base + n;
  }
}

/** The masker as a Transform (its `masker` for the stats); a KubeMaskError destroys the stream with it. */
export class MaskStream extends Transform {
  readonly masker: SecretMasker;

  constructor(rules: readonly MaskRule[], opts: MaskOptions) {
    super();
    this.masker = new SecretMasker(rules, opts);
  }

  /** See SecretMasker#maxBuffered. */
  get maxBuffered(): number {
    return this.masker.maxBuffered;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.forward(() => this.masker.write(chunk), callback);
  }

  override _flush(callback: TransformCallback): void {
    this.forward(() => this.masker.end(), callback);
  }

  private forward(step: () => Buffer[], callback: TransformCallback): void {
    let bufs: Buffer[];
    try {
      bufs = step();
    } catch (e) {
      callback(e as Error);
      return;
    }
    for (const b of bufs) this.push(b);
    callback();
  }
}

export function createMaskStream(rules: readonly MaskRule[], opts: MaskOptions): MaskStream {
  return new MaskStream(rules, opts);
}
