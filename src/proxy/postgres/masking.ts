// Rewriting result values of masked columns: DataRow frames and COPY … TO STDOUT text rows.
//
// Strategies (docs/policy-contract.md): redact (a fixed marker), partial (keep the last 4 characters), hash (a
// keyed HMAC, stable within a bundle revision so joins on the masked value still work). They apply to
// text-like columns; a masked column of any other type (a number, a date) is sent as NULL, because a marker
// string in an int4 column would break the client's decoding — NULL is the type-safe redaction.
import { hash } from "node:crypto";
import type { MaskRule } from "../../decision/contract.js";
import type { FieldDescription } from "./wire.js";

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

const BLOCK = 64; // SHA-256 block size

export class Masker {
  private readonly ipad: Buffer;
  private readonly opad: Buffer;

  constructor(hashKey: Buffer) {
    // HMAC-SHA256 by hand with the key pads computed once: one-shot hashes instead of an Hmac object per value
    // (a masked bulk read hashes every row).
    const key = hashKey.length > BLOCK ? Buffer.from(hash("sha256", hashKey, "buffer")) : hashKey;
    this.ipad = Buffer.alloc(BLOCK, 0x36);
    this.opad = Buffer.alloc(BLOCK, 0x5c);
    for (let i = 0; i < key.length; i++) {
      this.ipad[i] = (this.ipad[i] as number) ^ (key[i] as number);
      this.opad[i] = (this.opad[i] as number) ^ (key[i] as number);
    }
  }

  private hmacHex(value: Buffer): string {
    const inner = hash("sha256", Buffer.concat([this.ipad, value]), "buffer");
    return hash("sha256", Buffer.concat([this.opad, inner]), "hex");
  }

  /** The masked form of one value, or null for SQL NULL. */
  maskValue(value: Buffer, m: ColumnMask): Buffer | null {
    if (!m.textLike) return null;
    switch (m.strategy) {
      case "redact":
        return Buffer.from(REDACTED);
      case "partial": {
        if (isAscii(value)) {
          // Bytes are characters: build the result without decoding.
          const out = Buffer.alloc(Math.max(value.length, 1), 0x2a);
          if (value.length > 4) value.copy(out, value.length - 4, value.length - 4);
          return out;
        }
        const chars = [...value.toString("utf8")];
        const keep = chars.length > 4 ? chars.slice(-4).join("") : "";
        return Buffer.from("*".repeat(Math.max(chars.length - keep.length, 1)) + keep);
      }
      case "hash":
        return Buffer.from(`h:${this.hmacHex(value).slice(0, 16)}`);
    }
  }

  /** Rewrites a DataRow frame (type 'D') according to `plan`. Returns the frame unchanged when nothing applies. */
  maskDataRow(frame: Buffer, plan: MaskPlan): Buffer {
    const n = frame.readInt16BE(5);
    const parts: Buffer[] = [];
    let pos = 7;
    let changed = false;
    let start = 0; // start of the unchanged stretch being carried over
    const head = Buffer.allocUnsafe(7);
    frame.copy(head, 0, 0, 7);
    parts.push(head);
    start = 7;
    for (let i = 0; i < n; i++) {
      const len = frame.readInt32BE(pos);
      const valueStart = pos + 4;
      const next = len < 0 ? valueStart : valueStart + len;
      const m = plan[i];
      if (m && len >= 0) {
        if (pos > start) parts.push(frame.subarray(start, pos));
        const masked = this.maskValue(frame.subarray(valueStart, next), m);
        const lenBuf = Buffer.allocUnsafe(4);
        lenBuf.writeInt32BE(masked ? masked.length : -1, 0);
        parts.push(lenBuf);
        if (masked) parts.push(masked);
        start = next;
        changed = true;
      }
      pos = next;
    }
    if (!changed) return frame;
    if (pos > start) parts.push(frame.subarray(start, pos));
    const out = Buffer.concat(parts);
    out.writeInt32BE(out.length - 1, 1);
    return out;
  }

  /**
   * Rewrites one COPY … TO STDOUT data frame in text format: tab-separated columns, `\N` for NULL, one or more
   * rows per frame (PostgreSQL sends one row per CopyData, but the protocol does not promise it).
   */
  maskCopyText(frame: Buffer, plan: MaskPlan): Buffer {
    const text = frame.toString("utf8", 5);
    const rows = text.split("\n");
    const out = rows.map((row, idx) => {
      if (row === "" && idx === rows.length - 1) return row;
      const cols = row.split("\t");
      for (let i = 0; i < cols.length; i++) {
        const m = plan[i];
        const value = cols[i] as string;
        if (!m || value === "\\N") continue;
        const masked = this.maskValue(Buffer.from(unescapeCopy(value)), m);
        cols[i] = masked ? escapeCopy(masked.toString("utf8")) : "\\N";
      }
      return cols.join("\t");
    });
    const body = Buffer.from(out.join("\n"));
    const result = Buffer.allocUnsafe(body.length + 5);
    result[0] = 0x64;
    result.writeInt32BE(body.length + 4, 1);
    body.copy(result, 5);
    return result;
  }
}

function isAscii(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) if ((b[i] as number) > 0x7f) return false;
  return true;
}

function unescapeCopy(s: string): string {
  return s.replace(/\\(.)/g, (_, c: string) => ({ t: "\t", n: "\n", r: "\r", "\\": "\\" })[c] ?? c);
}

function escapeCopy(s: string): string {
  return s.replace(/[\\\t\n\r]/g, (c) => ({ "\t": "\\t", "\n": "\\n", "\r": "\\r", "\\": "\\\\" })[c] ?? c);
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
