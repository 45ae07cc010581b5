// Start-up recovery of the spool's last segment after a crash: a torn tail (a write that was never acknowledged)
// is cut off and kept under torn/; corruption anywhere else makes the spool refuse to write until someone looks.
import * as fsp from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "../util/log.js";
import { AuditUnavailableError } from "./errors.js";
import { parseRecordLine, type SpoolRecord } from "./record.js";
import { type SegmentInfo, TORN_WINDOW_BYTES } from "./spool-layout.js";

export interface Recovered {
  goodBytes: number;
  last: SpoolRecord | null;
  sealed: boolean;
}

/**
 * Checks the last segment after a restart. Records must be well formed, hash correctly and follow each other; at
 * the first one that does not, the rest of the file is a torn write — cut off, and kept under torn/ — if it is
 * within the last TORN_WINDOW_BYTES (what can have been written without being acknowledged: after a power loss
 * any of it may be garbage) or nothing valid follows it. A bad record further back with valid ones after it is
 * corruption, not a crash: refuse to write until someone has looked.
 */
export async function recoverSegment(dir: string, seg: SegmentInfo, log: Logger): Promise<Recovered> {
  const buf = await fsp.readFile(seg.path);
  let pos = 0;
  let last: SpoolRecord | null = null;
  let good = 0;
  let badAt = -1;
  let problem = "";
  while (pos < buf.length) {
    const nl = buf.indexOf(10, pos);
    if (nl < 0) {
      badAt = pos;
      problem = "incomplete last record (no newline)";
      break;
    }
    const r = parseRecordLine(buf.toString("utf8", pos, nl));
    const expected = last ? last.seq + 1 : seg.firstSeq;
    if (typeof r === "string") problem = r;
    else if (r.seq !== expected) problem = `seq ${r.seq} where ${expected} was expected`;
    else if (last && r.prev !== last.hash) problem = `seq ${r.seq} does not chain from seq ${last.seq}`;
    if (problem) {
      badAt = pos;
      break;
    }
    last = r as SpoolRecord;
    pos = nl + 1;
    good = pos;
  }
  if (badAt >= 0 && badAt < buf.length - TORN_WINDOW_BYTES) {
    // Far from the end: a torn write cannot reach this far back. Anything valid after the bad spot?
    let p = buf.indexOf(10, badAt);
    while (p >= 0 && p + 1 < buf.length) {
      const nl = buf.indexOf(10, p + 1);
      if (nl < 0) break;
      if (typeof parseRecordLine(buf.toString("utf8", p + 1, nl)) !== "string") {
        throw new AuditUnavailableError(
          `audit spool segment ${seg.path} is corrupt at byte ${badAt} (${problem}) and valid records follow; run "pamgate audit verify --spool ${dir}" and move the segment aside`,
        );
      }
      p = nl;
    }
  }
  if (badAt >= 0) {
    const torn = buf.subarray(good);
    await fsp.mkdir(join(dir, "torn"), { recursive: true });
    await fsp.writeFile(join(dir, "torn", `${seg.name}.${good}.bin`), torn);
    const fh = await fsp.open(seg.path, "r+");
    try {
      await fh.truncate(good);
      await fh.sync();
    } finally {
      await fh.close();
    }
    log.warn(
      { segment: seg.name, offset: good, bytes: torn.length, problem, last_seq: last?.seq ?? null },
      "audit spool: cut off a torn record at the end (a crash during a write); kept it under torn/",
    );
  }
  return { goodBytes: good, last, sealed: last?.kind === "seal" };
}
