// Byte copies through DataViews, for the per-row hot paths (masking, the SipHash input).
//
// In V8 a DataView access is one inlined load or store, while indexing a Buffer costs about 2 ns per byte and
// Buffer#copy / TypedArray#set have a fixed cost of about 80 ns — and most stretches of a row are a few bytes to a
// few dozen. So short stretches are copied four bytes at a time here; callers keep memcpy for long ones.

/** A DataView of exactly `b`'s bytes. */
export function viewOf(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

/**
 * Copies bytes [start, end) of the view `src` to `out` at `at`, four at a time, and returns the count. Meant for
 * short stretches (a loop, no fixed cost); the two ranges must not be the same bytes.
 */
export function copyWords(src: DataView, start: number, end: number, out: DataView, at: number): number {
  const n = end - start;
  if (n < 4) {
    for (let i = 0; i < n; i++) out.setUint8(at + i, src.getUint8(start + i));
    return n;
  }
  // Whole words, then the last 4 bytes as one more word (overlapping what was just written).
  for (let i = 0; i + 4 < n; i += 4) out.setInt32(at + i, src.getInt32(start + i));
  out.setInt32(at + n - 4, src.getInt32(end - 4));
  return n;
}
