// Rewriting result values of masked columns: DataRow frames and COPY … TO STDOUT text rows.
//
// Strategies (docs/policy-contract.md): redact (a fixed marker), partial (keep the last 4 characters), hash (a
// keyed pseudorandom function, SipHash-2-4, stable within a bundle revision so joins on the masked value still
// work). They apply to text-like columns; a masked column of any other type (a number, a date) is sent as NULL,
// because a marker string in an int4 column would break the client's decoding — NULL is the type-safe redaction.
//
// A masked bulk read rewrites every row, so the rewrites write straight into a caller's output buffer
// (`…Into`): no Buffer per value or per row. The Buffer-returning forms are conveniences for single frames.
//
// Bytes are read and written through DataViews, four at a time where they can be (see views.ts).
import { createHmac } from "node:crypto";
import type { MaskRule } from "../../decision/contract.js";
import { SipHash24 } from "./siphash.js";
import { copyWords, viewOf } from "./views.js";
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
const STARS4 = 0x2a2a2a2a;
const REDACTED_BYTES = Buffer.from(REDACTED);
/** Stretches longer than this are copied with Buffer#copy (a memcpy after its fixed cost), shorter ones by hand. */
const LONG_COPY = 128;
const NO_BYTES = Buffer.alloc(0);
const NO_VIEW = viewOf(NO_BYTES);
const TAB = 0x09;
const NEWLINE = 0x0a;
const BACKSLASH = 0x5c;

export class Masker {
  private readonly sip: SipHash24;
  /** A COPY value with its escapes undone, and its masked form before escaping (reused, grown on demand). */
  private unescaped: Buffer = Buffer.allocUnsafe(256);
  private unescapedView = viewOf(this.unescaped);
  private masked: Buffer = Buffer.allocUnsafe(256);
  private maskedView = viewOf(this.masked);
  /**
   * The buffers being read and written, with their views. A chunk holds hundreds of rows and the output slab
   * takes many more, so the views are made again only when a buffer changes (see `use`). Between reads they
   * keep the last chunk and slab alive: one of each per server, not per session.
   */
  private src: Buffer = NO_BYTES;
  private sv: DataView = NO_VIEW;
  private out: Buffer = NO_BYTES;
  private ov: DataView = NO_VIEW;

  constructor(hashKey: Buffer) {
    // The configured secret may have any length; SipHash takes exactly 16 bytes. HMAC-SHA256 under a label
    // derives them (once), so the same secret used for something else still yields an unrelated key.
    this.sip = new SipHash24(
      createHmac("sha256", hashKey).update("pamgate mask: siphash-2-4").digest().subarray(0, 16),
    );
  }

  /** Points `sv` and `ov` at `src` and `out`. */
  private use(src: Buffer, out: Buffer): void {
    if (src !== this.src) {
      this.src = src;
      this.sv = viewOf(src);
    }
    if (out !== this.out) {
      this.out = out;
      this.ov = viewOf(out);
    }
  }

  /**
   * Writes the masked form of the text value `src[start, end)` (view `sv`) at `out[at]` (view `ov`) and returns
   * its length. `out` must have MASK_GROWTH bytes more room than the value's length.
   */
  private maskInto(
    src: Buffer,
    sv: DataView,
    start: number,
    end: number,
    strategy: Strategy,
    out: Buffer,
    ov: DataView,
    at: number,
  ): number {
    switch (strategy) {
      case "redact":
        for (let i = 0; i < REDACTED_BYTES.length; i++) ov.setUint8(at + i, REDACTED_BYTES[i] as number);
        return REDACTED_BYTES.length;
      case "partial":
        return writePartial(src, sv, start, end, out, ov, at);
      case "hash":
        // `h:` and SipHash-2-4 of the value (8 bytes) in lowercase hex.
        ov.setUint16(at, 0x683a);
        this.sip.writeHex(sv, start, end, ov, at + 2);
        return HASH_LENGTH;
    }
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
    this.use(src, out);
    const sv = this.sv;
    const ov = this.ov;
    if (end - start < 7) throw new ProtocolError("malformed DataRow from the server: no column count");
    const n = sv.getInt16(start + 5);
    let pos = start + 7;
    let o = at; // next byte to write in out
    let carried = start; // start of the unchanged stretch of src not yet copied
    for (let i = 0; i < n; i++) {
      if (pos + 4 > end)
        throw new ProtocolError("malformed DataRow from the server: values overrun the message");
      const len = sv.getInt32(pos);
      const valueStart = pos + 4;
      const next = len < 0 ? valueStart : valueStart + len;
      if (next > end)
        throw new ProtocolError("malformed DataRow from the server: values overrun the message");
      const m = plan[i];
      if (m && len >= 0) {
        o += copySpan(src, sv, carried, pos, out, ov, o);
        if (m.textLike) {
          const w = this.maskInto(src, sv, valueStart, next, m.strategy, out, ov, o + 4);
          ov.setInt32(o, w);
          o += 4 + w;
        } else {
          ov.setInt32(o, -1);
          o += 4;
        }
        carried = next;
      }
      pos = next;
    }
    if (carried === start) return -1;
    o += copySpan(src, sv, carried, end, out, ov, o);
    ov.setInt32(at + 1, o - at - 1);
    return o - at;
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
    this.use(src, out);
    const sv = this.sv;
    const ov = this.ov;
    ov.setUint8(at, sv.getUint8(start));
    let o = at + 5;
    let col = 0;
    let field = start + 5;
    for (let p = field; p <= end; p++) {
      const c = p < end ? (src[p] as number) : -1;
      if (c !== TAB && c !== NEWLINE && c !== -1) continue;
      // The field src[field, p) of column `col`; nothing after a final newline.
      if (!(c === -1 && col === 0 && field === end)) {
        const m = plan[col];
        o += m ? this.writeCopyValue(field, p, m, o) : copySpan(src, sv, field, p, out, ov, o);
      }
      if (c !== -1) ov.setUint8(o++, c);
      col = c === NEWLINE ? 0 : col + 1;
      field = p + 1;
    }
    ov.setInt32(at + 1, o - at - 1);
    return o - at;
  }

  /** One masked COPY text field of the buffers in use: `\N` stays NULL; otherwise unescape, mask, escape. */
  private writeCopyValue(start: number, end: number, m: ColumnMask, at: number): number {
    const { src, sv, out, ov } = this;
    const isNull = end - start === 2 && src[start] === BACKSLASH && src[start + 1] === 0x4e;
    if (isNull || !m.textLike) {
      ov.setUint8(at, BACKSLASH);
      ov.setUint8(at + 1, 0x4e); // N
      return 2;
    }
    let value = src;
    let vv = sv;
    let vs = start;
    let ve = end;
    if (contains(src, start, end, BACKSLASH)) {
      value = this.unescape(src, start, end);
      vv = this.unescapedView; // value is the start of this.unescaped
      vs = 0;
      ve = value.length;
    }
    // Only `partial` keeps original characters, which may need escaping again; a hash or marker never does.
    if (m.strategy !== "partial") return this.maskInto(value, vv, vs, ve, m.strategy, out, ov, at);
    if (this.masked.length < ve - vs + MASK_GROWTH) {
      this.masked = grown(this.masked, ve - vs + MASK_GROWTH);
      this.maskedView = viewOf(this.masked);
    }
    const n = writePartial(value, vv, vs, ve, this.masked, this.maskedView, 0);
    return escapeCopy(this.masked, n, out, at);
  }

  /** COPY text escapes undone (into a reused buffer): \b \f \n \r \t \v, and a backslash before anything else. */
  private unescape(src: Buffer, start: number, end: number): Buffer {
    if (this.unescaped.length < end - start) {
      this.unescaped = grown(this.unescaped, end - start);
      this.unescapedView = viewOf(this.unescaped);
    }
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

/**
 * `partial`: one `*` per character but the last 4, which are kept (all `*` when there are 4 or fewer). Reads
 * `src[start, end)` through its view `sv`, writes at `out[at]` through its view `ov`.
 */
function writePartial(
  src: Buffer,
  sv: DataView,
  start: number,
  end: number,
  out: Buffer,
  ov: DataView,
  at: number,
): number {
  const len = end - start;
  if (isAscii(sv, start, end)) {
    // Bytes are characters: no decoding.
    if (len <= 4) {
      fillStars(ov, at, len > 0 ? len : 1);
      return len > 0 ? len : 1;
    }
    fillStars(ov, at, len - 4);
    ov.setInt32(at + len - 4, sv.getInt32(end - 4));
    return len;
  }
  const chars = [...src.toString("utf8", start, end)];
  const keep = chars.length > 4 ? chars.slice(-4).join("") : "";
  const stars = Math.max(chars.length - (chars.length > 4 ? 4 : 0), 1);
  out.fill(STAR, at, at + stars);
  return stars + out.write(keep, at + stars);
}

function fillStars(ov: DataView, at: number, n: number): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) ov.setInt32(at + i, STARS4);
  for (; i < n; i++) ov.setUint8(at + i, STAR);
}

/** No byte of v[start, end) has its top bit set (checked 4 bytes at a time). */
function isAscii(v: DataView, start: number, end: number): boolean {
  let p = start;
  for (; p + 4 <= end; p += 4) if ((v.getInt32(p) & 0x80808080) !== 0) return false;
  for (; p < end; p++) if (v.getUint8(p) > 0x7f) return false;
  return true;
}

/**
 * Copies bytes [start, end) of `src` (whose view is `sv`) to `out` (view `ov`) at `at`; returns the count: four
 * bytes at a time up to LONG_COPY bytes, a memcpy beyond. `out` and `src` must not be the same bytes.
 */
function copySpan(
  src: Buffer,
  sv: DataView,
  start: number,
  end: number,
  out: Buffer,
  ov: DataView,
  at: number,
): number {
  return end - start > LONG_COPY ? src.copy(out, at, start, end) : copyWords(sv, start, end, ov, at);
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
