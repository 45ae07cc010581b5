// The mask strategies (docs/policy-contract.md) on values that arrive as JavaScript strings or small byte strings,
// for adapters other than PostgreSQL (the Kubernetes Secret masker first). They give exactly what the PostgreSQL
// Masker gives for the same value: the same marker, the same `partial` rule (characters, not bytes; 4 or fewer
// characters are all starred), the same keyed SipHash-2-4 under the same derived key — so a value hashed in a SQL
// result and in a Secret compares equal. test/unit/kube-mask.test.ts checks this against Masker itself.
//
// The PostgreSQL path keeps its own writers: they mask in place inside a wire frame, which a string API cannot.
// What both must share is the marker and the key derivation; the marker is imported, the derivation (private to
// Masker's constructor) is repeated in `deriveSipKey` and pinned by that test. Moving siphash.ts and views.ts
// under src/util and letting Masker call deriveSipKey would leave one copy.
import { isAscii, isUtf8 } from "node:buffer";
import { createHmac } from "node:crypto";
import type { MaskRule } from "../decision/contract.js";
import { REDACTED } from "../proxy/postgres/masking.js";
import { SipHash24 } from "../proxy/postgres/siphash.js";

export type Strategy = MaskRule["strategy"];

/** What a redacted base64 value becomes: base64 of the marker ("Kioq" for "***"). */
export { REDACTED, REDACTED_BASE64 };

/**
 * The 16-byte SipHash key for a configured mask secret of any length: HMAC-SHA256 under a label, so the same
 * secret used for something else still yields an unrelated key (as Masker derives it).
 */
export function deriveSipKey(secret: Buffer): Buffer {
  return createHmac("sha256", secret).update("pamgate mask: siphash-2-4").digest().subarray(0, 16);
}

/** Surrogate halves: a string without them has one character per UTF-16 unit. */
const SURROGATE = /[\uD800-\uDFFF]/;
const STAR = 0x2a;
const REDACTED_BASE64 = Buffer.from(REDACTED).toString("base64");

export class ValueMasker {
  private readonly sip: SipHash24;
  /** `h:` and the SipHash output as hex, written here and read back (reused). */
  private readonly hashed = Buffer.from("h:0123456789abcdef");
  private readonly hashedView = new DataView(this.hashed.buffer, this.hashed.byteOffset, 18);
  /** Decoded base64 values (reused, grown on demand), with a view for SipHash. */
  private scratch = Buffer.allocUnsafe(1024);
  private scratchView = new DataView(this.scratch.buffer, this.scratch.byteOffset, this.scratch.length);

  /** @param hashKey the configured mask secret (any length). One instance per server: it holds a Wasm instance. */
  constructor(hashKey: Buffer) {
    this.sip = new SipHash24(deriveSipKey(hashKey));
  }

  /** A text value masked: the marker, `*`s and the last 4 characters, or `h:` and 16 hex digits of its UTF-8. */
  text(value: string, strategy: Strategy): string {
    switch (strategy) {
      case "redact":
        return REDACTED;
      case "partial":
        return partialText(value);
      case "hash": {
        const b = Buffer.from(value, "utf8");
        return this.hash(new DataView(b.buffer, b.byteOffset, b.length), b.length).toString("latin1");
      }
    }
  }

  /**
   * The bytes a base64 string encodes, masked and encoded again (a Kubernetes Secret's `data`), so that decoding
   * the result shows the masked value. `partial` keeps characters when the bytes are UTF-8 text and bytes
   * otherwise (a binary key's tail has no characters to count). Per value, on a list's hot path: the bytes are
   * decoded into a reused buffer, not a new one.
   */
  base64(value: string, strategy: Strategy): string {
    if (strategy === "redact") return REDACTED_BASE64;
    // base64 decodes to at most 3/4 of its length.
    if (this.scratch.length < value.length) {
      this.scratch = Buffer.allocUnsafe(Math.max(value.length, 2 * this.scratch.length));
      this.scratchView = new DataView(this.scratch.buffer, this.scratch.byteOffset, this.scratch.length);
    }
    const n = this.scratch.write(value, 0, "base64");
    if (strategy === "hash") return this.hash(this.scratchView, n).toString("base64");
    const bytes = this.scratch.subarray(0, n);
    if (!isAscii(bytes) && isUtf8(bytes))
      return Buffer.from(partialText(bytes.toString("utf8"))).toString("base64");
    // ASCII (bytes are characters) or binary: star the bytes in place, keep the last 4.
    if (n <= 4) return Buffer.alloc(Math.max(n, 1), STAR).toString("base64");
    bytes.fill(STAR, 0, n - 4);
    return bytes.toString("base64");
  }

  /** `h:` and the hex SipHash of v[0, n), in the reused `hashed` buffer. */
  private hash(v: DataView, n: number): Buffer {
    this.sip.writeHex(v, 0, n, this.hashedView, 2);
    return this.hashed;
  }
}

/** One `*` per character but the last 4, which are kept; all `*` (at least one) when there are 4 or fewer. */
function partialText(s: string): string {
  if (!SURROGATE.test(s)) {
    return s.length <= 4 ? "*".repeat(Math.max(s.length, 1)) : "*".repeat(s.length - 4) + s.slice(-4);
  }
  const chars = Array.from(s);
  if (chars.length <= 4) return "*".repeat(chars.length);
  return "*".repeat(chars.length - 4) + chars.slice(-4).join("");
}
