// Single-frame conveniences over the Masker's slab API, for tests: the proxy itself only writes masked frames
// into its output slab (maskDataRowInto, maskCopyTextInto), so these live here rather than in src/.
import type { ColumnMask, Masker, MaskPlan } from "../../src/proxy/postgres/masking.js";
import { Masker as M } from "../../src/proxy/postgres/masking.js";

/** A DataRow frame (type 'D') rewritten according to `plan`; the frame itself when nothing applies. */
export function maskDataRow(masker: Masker, frame: Buffer, plan: MaskPlan): Buffer {
  const out = Buffer.allocUnsafe(M.dataRowRoom(frame.length, plan));
  const n = masker.maskDataRowInto(frame, 0, frame.length, plan, out, 0);
  return n < 0 ? frame : out.subarray(0, n);
}

/** One COPY … TO STDOUT data frame in text format, rewritten according to `plan`. */
export function maskCopyText(masker: Masker, frame: Buffer, plan: MaskPlan): Buffer {
  const out = Buffer.allocUnsafe(M.copyDataRoom(frame, 0, frame.length, plan));
  return out.subarray(0, masker.maskCopyTextInto(frame, 0, frame.length, plan, out, 0));
}

/** The masked form of one value (null for SQL NULL), through a one-column DataRow. */
export function maskValue(masker: Masker, value: Buffer, m: ColumnMask): Buffer | null {
  const frame = Buffer.alloc(1 + 4 + 2 + 4 + value.length);
  frame[0] = 0x44;
  frame.writeInt32BE(frame.length - 1, 1);
  frame.writeInt16BE(1, 5);
  frame.writeInt32BE(value.length, 7);
  value.copy(frame, 11);
  const out = maskDataRow(masker, frame, [m]);
  const len = out.readInt32BE(7);
  return len < 0 ? null : Buffer.from(out.subarray(11, 11 + len));
}
