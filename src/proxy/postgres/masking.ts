// Rewriting result values of masked columns: DataRow frames and COPY … TO STDOUT text rows.
//
// Strategies (docs/policy-contract.md): redact (a fixed marker), partial (keep the last 4 characters), hash (a
// keyed pseudorandom function, SipHash-2-4, stable within a bundle revision so joins on the masked value still
// work). They apply to text-like columns; a masked column of any other type (a number, a date) is sent as NULL,
// because a marker string in an int4 column would break the client's decoding — NULL is the type-safe redaction.
//
// A masked bulk read rewrites every row, so the rewrites write straight into a caller's output buffer
// (`…Into`): no Buffer per value or per row. The Buffer-returning forms are conveniences for single frames.
import { createHmac } from "node:crypto";
import siphash24 from "siphash24";
import type { MaskRule } from "../../decision/contract.js";
import { type FieldDescription, ProtocolError } from "./wire.js";

export const REDACTED = "***";

/** text, varchar, bpchar, name, unknown, "char": the types whose text and binary forms are the string itself. */
const TEXT_LIKE = new Set([25, 1043, 1042, 19, 705, 18]);

export type Strategy = MaskRule["strategy"];

export interface ColumnMask {
  strategy: Strategy;
  /** false: the value is replaced by NULL whatever the strategy. */
  textLike: boolean;
}

/** Per result column: how to mask it, or null to pass it through. */
export type MaskPlan = Array<ColumnMask | null>;

/** `h:` and 16 hex digits: the 64-bit SipHash output. */
const HASH_LENGTH = 18;
/**
 * How much longer than the original a masked value can be: a hash is 18 bytes; `partial` keeps 4 characters of
 * up to 4 bytes each behind one `*` per other character, so at most 12 bytes more (invalid UTF-8 included: each
 * bad byte decodes to one 3-byte U+FFFD); an empty value still gets one `*`.
 */
const MASK_GROWTH = HASH_LENGTH;

const STAR = 0x2a;
const HEX = Buffer.from("0123456789abcdef");
const REDACTED_BYTES = Buffer.from(REDACTED);
const TAB = 0x09;
const NEWLINE = 0x0a;
const BACKSLASH = 0x5c;

export class Masker {
  /** SipHash's 128-bit key. */
  private readonly sipKey: Uint8Array;
  private readonly digest = new Uint8Array(8);
  /** A COPY value with its escapes undone, and its masked form before escaping (reused, grown on demand). */
  private unescaped: Buffer = Buffer.allocUnsafe(256);
  private masked: Buffer = Buffer.allocUnsafe(256);

  constructor(hashKey: Buffer) {
    // The configured secret may have any length; SipHash takes exactly 16 bytes. HMAC-SHA256 under a label
    // derives them (once), so the same secret used for something else still yields an unrelated key.
    this.sipKey = new Uint8Array(
      createHmac("sha256", hashKey).update("pamgate mask: siphash-2-4").digest(),
    ).slice(0, 16);
  }

  /** The masked form of one value, or null for SQL NULL. */
  maskValue(value: Buffer, m: ColumnMask): Buffer | null {
    if (!m.textLike) return null;
    const out = Buffer.allocUnsafe(value.length + MASK_GROWTH);
    return out.subarray(0, this.writeMasked(value, 0, value.length, m.strategy, out, 0));
  }

  /**
   * Writes the masked form of the text value `src[start, end)` at `out[at]` and returns its length. `out` must
   * have MASK_GROWTH bytes more room than the value's length.
   */
  writeMasked(src: Buffer, start: number, end: number, strategy: Strategy, out: Buffer, at: number): number {
    switch (strategy) {
      case "redact":
        return copyBytes(REDACTED_BYTES, 0, REDACTED_BYTES.length, out, at);
      case "partial":
        return writePartial(src, start, end, out, at);
      case "hash":
        return this.writeHash(src, start, end, out, at);
    }
  }

  /** `h:` and SipHash-2-4 of the value (8 bytes) in lowercase hex. */
  private writeHash(src: Buffer, start: number, end: number, out: Buffer, at: number): number {
    const d = this.digest;
    siphash24(src.subarray(start, end), this.sipKey, d, true);
    out[at] = 0x68; // h
    out[at + 1] = 0x3a; // :
    for (let i = 0; i < 8; i++) {
      const b = d[i] as number;
      out[at + 2 + 2 * i] = HEX[b >> 4] as number;
      out[at + 3 + 2 * i] = HEX[b & 15] as number;
    }
    return HASH_LENGTH;
  }

  /** Room a rewritten DataRow of `length` bytes may need (masked values can grow, see MASK_GROWTH). */
  static dataRowRoom(length: number, plan: MaskPlan): number {
    return length + MASK_GROWTH * plan.length;
  }

  /**
   * Rewrites the DataRow frame `src[start, end)` according to `plan` into `out` at `at` (which needs
   * `Masker.dataRowRoom` bytes) and returns the new frame's length, or -1 when nothing applies (every masked
   * column is NULL): then nothing was written and the frame goes out as it is.
   */
  maskDataRowInto(src: Buffer, start: number, end: number, plan: MaskPlan, out: Buffer, at: number): number {
    const n = src.readInt16BE(start + 5);
    let pos = start + 7;
    let o = at; // next byte to write in out
    let carried = start; // start of the unchanged stretch of src not yet copied
    for (let i = 0; i < n; i++) {
      const len = src.readInt32BE(pos);
      const valueStart = pos + 4;
      const next = len < 0 ? valueStart : valueStart + len;
      if (next > end)
        throw new ProtocolError("malformed DataRow from the server: values overrun the message");
      const m = plan[i];
      if (m && len >= 0) {
        o += copyBytes(src, carried, pos, out, o);
        if (m.textLike) {
          const w = this.writeMasked(src, valueStart, next, m.strategy, out, o + 4);
          out.writeInt32BE(w, o);
          o += 4 + w;
        } else {
          out.writeInt32BE(-1, o);
          o += 4;
        }
        carried = next;
      }
      pos = next;
    }
    if (carried === start) return -1;
    o += copyBytes(src, carried, end, out, o);
    out.writeInt32BE(o - at - 1, at + 1);
    return o - at;
  }

  /** Rewrites a DataRow frame (type 'D') according to `plan`. Returns the frame unchanged when nothing applies. */
  maskDataRow(frame: Buffer, plan: MaskPlan): Buffer {
    const out = Buffer.allocUnsafe(Masker.dataRowRoom(frame.length, plan));
    const n = this.maskDataRowInto(frame, 0, frame.length, plan, out, 0);
    return n < 0 ? frame : out.subarray(0, n);
  }

  /**
   * Room a rewritten CopyData frame `src[start, end)` may need: every byte escaped, plus each masked value's
   * growth in every row (rows are counted: a frame may hold several).
   */
  static copyDataRoom(src: Buffer, start: number, end: number, plan: MaskPlan): number {
    let rows = 1;
    for (let p = start + 5; p < end; p++) if (src[p] === NEWLINE) rows++;
    return 2 * (end - start) + 2 * MASK_GROWTH * plan.length * rows;
  }

  /**
   * Rewrites the COPY … TO STDOUT data frame `src[start, end)` (text format: tab-separated columns, `\N` for
   * NULL, backslash escapes; one or more rows per frame — PostgreSQL sends one row per CopyData, but the protocol
   * does not promise it) into `out` at `at`, which needs `Masker.copyDataRoom` bytes. Returns the new length.
   */
  maskCopyTextInto(src: Buffer, start: number, end: number, plan: MaskPlan, out: Buffer, at: number): number {
    out[at] = src[start] as number;
    let o = at + 5;
    let col = 0;
    let field = start + 5;
    for (let p = field; p <= end; p++) {
      const c = p < end ? (src[p] as number) : -1;
      if (c !== TAB && c !== NEWLINE && c !== -1) continue;
      // The field src[field, p) of column `col`; nothing after a final newline.
      if (!(c === -1 && col === 0 && field === end)) {
        const m = plan[col];
        o += m ? this.writeCopyValue(src, field, p, m, out, o) : copyBytes(src, field, p, out, o);
      }
      if (c !== -1) out[o++] = c;
      col = c === NEWLINE ? 0 : col + 1;
      field = p + 1;
    }
    out.writeInt32BE(o - at - 1, at + 1);
    return o - at;
  }

  /** Rewrites one COPY … TO STDOUT data frame in text format (see maskCopyTextInto). */
  maskCopyText(frame: Buffer, plan: MaskPlan): Buffer {
    const out = Buffer.allocUnsafe(Masker.copyDataRoom(frame, 0, frame.length, plan));
    return out.subarray(0, this.maskCopyTextInto(frame, 0, frame.length, plan, out, 0));
  }

  /** One masked COPY text field: `\N` stays NULL; otherwise unescape, mask, escape. */
  private writeCopyValue(
    src: Buffer,
    start: number,
    end: number,
    m: ColumnMask,
    out: Buffer,
    at: number,
  ): number {
    const isNull = end - start === 2 && src[start] === BACKSLASH && src[start + 1] === 0x4e;
    if (isNull || !m.textLike) {
      out[at] = BACKSLASH;
      out[at + 1] = 0x4e; // N
      return 2;
    }
    let value = src;
    let vs = start;
    let ve = end;
    if (contains(src, start, end, BACKSLASH)) {
      value = this.unescape(src, start, end);
      vs = 0;
      ve = value.length;
    }
    // Only `partial` keeps original characters, which may need escaping again; a hash or marker never does.
    if (m.strategy !== "partial") return this.writeMasked(value, vs, ve, m.strategy, out, at);
    this.masked = grown(this.masked, ve - vs + MASK_GROWTH);
    const n = writePartial(value, vs, ve, this.masked, 0);
    return escapeCopy(this.masked, n, out, at);
  }

  /** COPY text escapes undone (into a reused buffer): \b \f \n \r \t \v, and a backslash before anything else. */
  private unescape(src: Buffer, start: number, end: number): Buffer {
    this.unescaped = grown(this.unescaped, end - start);
    const out = this.unescaped;
    let o = 0;
    for (let p = start; p < end; p++) {
      let c = src[p] as number;
      if (c === BACKSLASH && p + 1 < end) {
        c = src[++p] as number;
        c = UNESCAPE[c] ?? c;
      }
      out[o++] = c;
    }
    return out.subarray(0, o);
  }
}

/** `buf` if it has `n` bytes, else a larger one (contents not kept). */
function grown(buf: Buffer, n: number): Buffer {
  return buf.length >= n ? buf : Buffer.allocUnsafe(Math.max(n, 2 * buf.length));
}

function contains(b: Buffer, start: number, end: number, byte: number): boolean {
  for (let i = start; i < end; i++) if (b[i] === byte) return true;
  return false;
}

/** COPY text's backslash escapes (PostgreSQL's CopyAttributeOutText writes these). */
const UNESCAPE: Record<number, number> = { 98: 0x08, 102: 0x0c, 110: 0x0a, 114: 0x0d, 116: 0x09, 118: 0x0b };
const ESCAPE: Record<number, number> = { 8: 0x62, 12: 0x66, 10: 0x6e, 13: 0x72, 9: 0x74, 11: 0x76, 92: 0x5c };

function escapeCopy(src: Buffer, length: number, out: Buffer, at: number): number {
  let o = at;
  for (let p = 0; p < length; p++) {
    const c = src[p] as number;
    const e = c < 0x20 || c === BACKSLASH ? ESCAPE[c] : undefined;
    if (e !== undefined) {
      out[o++] = BACKSLASH;
      out[o++] = e;
    } else {
      out[o++] = c;
    }
  }
  return o - at;
}

/** `partial`: one `*` per character but the last 4, which are kept (all `*` when there are 4 or fewer). */
function writePartial(src: Buffer, start: number, end: number, out: Buffer, at: number): number {
  const len = end - start;
  if (isAscii(src, start, end)) {
    // Bytes are characters: no decoding.
    const stars = len > 4 ? len - 4 : Math.max(len, 1);
    for (let i = 0; i < stars; i++) out[at + i] = STAR;
    if (len > 4) copyBytes(src, end - 4, end, out, at + stars);
    return Math.max(len, 1);
  }
  const chars = [...src.toString("utf8", start, end)];
  const keep = chars.length > 4 ? chars.slice(-4).join("") : "";
  const stars = Math.max(chars.length - (chars.length > 4 ? 4 : 0), 1);
  out.fill(STAR, at, at + stars);
  return stars + out.write(keep, at + stars);
}

function isAscii(b: Buffer, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if ((b[i] as number) > 0x7f) return false;
  return true;
}

/**
 * Copies src[start, end) to out[at]. Buffer#copy costs about as much as a 32-byte loop (measured), so the short
 * stretches that make up most rows are copied by hand.
 */
function copyBytes(src: Buffer, start: number, end: number, out: Buffer, at: number): number {
  const n = end - start;
  if (n > 32) return src.copy(out, at, start, end);
  for (let i = 0; i < n; i++) out[at + i] = src[start + i] as number;
  return n;
}

/**
 * Builds the plan for a result: each column whose origin (table OID, column number) resolves to a masked
 * `schema.table.column` gets that rule's strategy.
 */
export function planFor(
  fields: FieldDescription[],
  origins: Array<string | null>,
  masks: readonly MaskRule[],
): MaskPlan {
  const byField = new Map(masks.map((m) => [m.field, m.strategy]));
  return fields.map((f, i) => {
    const origin = origins[i];
    const strategy = origin ? byField.get(origin) : undefined;
    return strategy ? { strategy, textLike: TEXT_LIKE.has(f.typeOid) } : null;
  });
}

/** A plan for COPY of a table: the columns in order, typed as text (COPY's text format is always text). */
export function planForColumns(columns: string[], masks: readonly MaskRule[]): MaskPlan {
  const byField = new Map(masks.map((m) => [m.field, m.strategy]));
  return columns.map((c) => {
    const strategy = byField.get(c);
    return strategy ? { strategy, textLike: true } : null;
  });
}
