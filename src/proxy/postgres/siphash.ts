// SipHash-2-4 (Aumasson & Bernstein; the reference is github.com/veorq/SipHash) for the `hash` mask strategy: a
// WebAssembly function assembled below, fed and read through DataViews with no allocation per call.
//
// Why not a library: a masked bulk read hashes one value per row, and the rounds are the cheap part (~30 ns for
// an e-mail address in WebAssembly's native 64-bit arithmetic, against ~120 ns for the same rounds in JavaScript
// over 32-bit halves). What a general-purpose wrapper adds around them cost more than the hash itself: a subarray
// of the input, TypedArray#set calls to copy the key and the input into WebAssembly memory, a subarray and a
// copy for the output. Here the key is written into this hasher's own memory once, short inputs are copied in
// four bytes at a time, and the 8 output bytes are read back as two integers and written out as hex directly.
//
// The function is a few hundred bytes, assembled at load from the instruction list in `assemble` (which reads
// like the reference's C). It is checked against the reference's 64 test vectors and against the siphash24
// package on random inputs (test/unit/siphash.test.ts).

import { copyWords, viewOf } from "./views.js";

/** Where things are in a hasher's memory: the key, the 8-byte result, the input (followed by 8 zero bytes). */
const KEY_AT = 0;
const RESULT_AT = 16;
const INPUT_AT = 32;
/** Inputs longer than this are copied into WebAssembly memory with TypedArray#set, shorter ones by hand. */
const LONG_INPUT = 128;
const PAGE = 65536;

/** The two lowercase hex digits of each byte value, as a big-endian 16-bit word (DataView#setUint16 order). */
const HEX_PAIRS = new Uint16Array(256);
for (let b = 0; b < 256; b++) {
  const hex = b.toString(16).padStart(2, "0");
  HEX_PAIRS[b] = (hex.charCodeAt(0) << 8) | hex.charCodeAt(1);
}

/**
 * The module: one memory (exported as `memory`) and `siphash(ptr, len)`, which hashes memory[ptr, ptr + len)
 * under the key at KEY_AT and stores the 64-bit result at RESULT_AT (little-endian, as the reference's output
 * bytes). The 8 bytes after the input must be zero: the last, partial word is loaded whole.
 */
function assemble(): Uint8Array<ArrayBuffer> {
  // Locals: the parameters, then the state and the current word (i64), then the end of the whole words (i32).
  const PTR = 0;
  const LEN = 1;
  const V0 = 2;
  const V1 = 3;
  const V2 = 4;
  const V3 = 5;
  const M = 6;
  const END = 7;
  const code: number[] = [];
  const get = (i: number) => code.push(0x20, i); // local.get
  const set = (i: number) => code.push(0x21, i); // local.set
  const i32 = (v: number) => code.push(0x41, ...sleb(BigInt(v))); // i32.const
  const i64 = (v: bigint) => code.push(0x42, ...sleb(v)); // i64.const
  const load64 = (offset: number) => code.push(0x29, 0x00, ...uleb(offset)); // i64.load (align 1), offset
  const I64_ADD = 0x7c;
  const I64_XOR = 0x85;
  const I64_OR = 0x84;
  const I64_SHL = 0x86;
  const I64_ROTL = 0x89;
  // a += b
  const add = (a: number, b: number) => {
    get(a);
    get(b);
    code.push(I64_ADD);
    set(a);
  };
  // a ^= b
  const xor = (a: number, b: number) => {
    get(a);
    get(b);
    code.push(I64_XOR);
    set(a);
  };
  // a = rotl(a, r) ^ b
  const rotlXor = (a: number, r: number, b: number) => {
    get(a);
    i64(BigInt(r));
    code.push(I64_ROTL);
    get(b);
    code.push(I64_XOR);
    set(a);
  };
  // a = rotl(a, 32)
  const rotl32 = (a: number) => {
    get(a);
    i64(32n);
    code.push(I64_ROTL);
    set(a);
  };
  const sipRound = () => {
    add(V0, V1);
    rotlXor(V1, 13, V0);
    rotl32(V0);
    add(V2, V3);
    rotlXor(V3, 16, V2);
    add(V0, V3);
    rotlXor(V3, 21, V0);
    add(V2, V1);
    rotlXor(V1, 17, V2);
    rotl32(V2);
  };
  // v0 = k0 ^ "somepseu"; v1 = k1 ^ "dorandom"; v2 = k0 ^ "lygenera"; v3 = k1 ^ "tedbytes"
  const init: Array<[number, number, bigint]> = [
    [V0, KEY_AT, 0x736f6d6570736575n],
    [V1, KEY_AT + 8, 0x646f72616e646f6dn],
    [V2, KEY_AT, 0x6c7967656e657261n],
    [V3, KEY_AT + 8, 0x7465646279746573n],
  ];
  for (const [v, k, c] of init) {
    i32(0);
    load64(k);
    i64(c);
    code.push(I64_XOR);
    set(v);
  }
  // end = ptr + (len & ~7)
  get(PTR);
  get(LEN);
  i32(-8);
  code.push(0x71, 0x6a); // i32.and, i32.add
  set(END);
  // while (ptr != end) { m = load(ptr); v3 ^= m; 2 rounds; v0 ^= m; ptr += 8 }
  code.push(0x02, 0x40, 0x03, 0x40); // block, loop
  get(PTR);
  get(END);
  code.push(0x46, 0x0d, 1); // i32.eq, br_if (out of the block)
  get(PTR);
  load64(0);
  set(M);
  xor(V3, M);
  sipRound();
  sipRound();
  xor(V0, M);
  get(PTR);
  i32(8);
  code.push(0x6a); // i32.add
  set(PTR);
  code.push(0x0c, 0, 0x0b, 0x0b); // br (to the loop), end loop, end block
  // The last word: the 0-7 bytes left (zeros after them) and the length's low byte on top: m = load(ptr) | len << 56
  get(PTR);
  load64(0);
  get(LEN);
  code.push(0xad); // i64.extend_i32_u
  i64(56n);
  code.push(I64_SHL, I64_OR);
  set(M);
  xor(V3, M);
  sipRound();
  sipRound();
  xor(V0, M);
  // v2 ^= 0xff; 4 rounds; result = v0 ^ v1 ^ v2 ^ v3
  get(V2);
  i64(0xffn);
  code.push(I64_XOR);
  set(V2);
  sipRound();
  sipRound();
  sipRound();
  sipRound();
  i32(RESULT_AT);
  get(V0);
  get(V1);
  code.push(I64_XOR);
  get(V2);
  code.push(I64_XOR);
  get(V3);
  code.push(I64_XOR);
  code.push(0x37, 0x00, 0x00); // i64.store (align 1, offset 0)
  code.push(0x0b); // end
  const body = [2, 5, 0x7e, 1, 0x7f, ...code]; // locals: 5 × i64, 1 × i32
  const section = (id: number, content: number[]) => [id, ...uleb(content.length), ...content];
  const name = (s: string) => [s.length, ...Buffer.from(s, "latin1")];
  return new Uint8Array([
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00], // "\0asm", version 1
    ...section(1, [1, 0x60, 2, 0x7f, 0x7f, 0]), // types: (i32, i32) -> ()
    ...section(3, [1, 0]), // functions: one, of type 0
    ...section(5, [1, 0x00, 1]), // memory: one, at least 1 page, no maximum
    ...section(7, [2, ...name("memory"), 0x02, 0, ...name("siphash"), 0x00, 0]), // exports
    ...section(10, [1, ...uleb(body.length), ...body]), // code
  ]);
}

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
}

function sleb(v: bigint): number[] {
  const out: number[] = [];
  for (;;) {
    const b = Number(v & 0x7fn);
    v >>= 7n;
    if ((v === 0n && !(b & 0x40)) || (v === -1n && b & 0x40)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

const MODULE = new WebAssembly.Module(assemble());

export class SipHash24 {
  private readonly siphash: (ptr: number, len: number) => void;
  private readonly memory: WebAssembly.Memory;
  /** A view of `memory` (made again when the memory grows for a long input). */
  private mv: DataView;
  /** The last result's low and high 32 bits (as int32). */
  private lo = 0;
  private hi = 0;

  /** @param key 16 bytes (k0 and k1, little-endian, as in the reference). */
  constructor(key: Uint8Array) {
    if (key.length !== 16) throw new RangeError("SipHash-2-4 takes a 16-byte key");
    const { exports } = new WebAssembly.Instance(MODULE, {});
    this.siphash = exports.siphash as (ptr: number, len: number) => void;
    this.memory = exports.memory as WebAssembly.Memory;
    this.mv = new DataView(this.memory.buffer);
    new Uint8Array(this.memory.buffer).set(key, KEY_AT);
  }

  /** SipHash-2-4 of `src[start, end)`, as the reference's 8 output bytes (little-endian). */
  digest(src: Uint8Array, start = 0, end = src.length): Buffer {
    this.compute(viewOf(src), start, end);
    const out = Buffer.allocUnsafe(8);
    out.writeInt32LE(this.lo, 0);
    out.writeInt32LE(this.hi, 4);
    return out;
  }

  /**
   * Writes SipHash-2-4 of the bytes [start, end) of `src` at `out[at]` as 16 lowercase hex digits, the output
   * bytes in the reference's order (the same text as Buffer#toString("hex") of `digest`).
   */
  writeHex(src: DataView, start: number, end: number, out: DataView, at: number): void {
    this.compute(src, start, end);
    const lo = this.lo;
    const hi = this.hi;
    out.setUint16(at, HEX_PAIRS[lo & 0xff] as number);
    out.setUint16(at + 2, HEX_PAIRS[(lo >>> 8) & 0xff] as number);
    out.setUint16(at + 4, HEX_PAIRS[(lo >>> 16) & 0xff] as number);
    out.setUint16(at + 6, HEX_PAIRS[lo >>> 24] as number);
    out.setUint16(at + 8, HEX_PAIRS[hi & 0xff] as number);
    out.setUint16(at + 10, HEX_PAIRS[(hi >>> 8) & 0xff] as number);
    out.setUint16(at + 12, HEX_PAIRS[(hi >>> 16) & 0xff] as number);
    out.setUint16(at + 14, HEX_PAIRS[hi >>> 24] as number);
  }

  private compute(src: DataView, start: number, end: number): void {
    const len = end - start;
    if (INPUT_AT + len + 8 > this.mv.byteLength) {
      this.memory.grow(Math.ceil((INPUT_AT + len + 8 - this.mv.byteLength) / PAGE));
      this.mv = new DataView(this.memory.buffer);
    }
    const mv = this.mv;
    if (len > LONG_INPUT) {
      new Uint8Array(this.memory.buffer, INPUT_AT, len).set(
        new Uint8Array(src.buffer, src.byteOffset + start, len),
      );
    } else {
      copyWords(src, start, end, mv, INPUT_AT);
    }
    mv.setInt32(INPUT_AT + len, 0);
    mv.setInt32(INPUT_AT + len + 4, 0);
    this.siphash(INPUT_AT, len);
    this.lo = mv.getInt32(RESULT_AT, true);
    this.hi = mv.getInt32(RESULT_AT + 4, true);
  }
}
