// Reading the spool back: the shippers (in the writing process, never past what is durable), and the CLI
// (`audit verify`, `audit tail`, `replay`) from another process, which sees whatever complete lines are there.
import * as fsp from "node:fs/promises";
import { parseRecordLine, type SpoolRecord } from "./record.js";
import type { Spool } from "./spool.js";
import { listSegmentFiles, type SegmentInfo } from "./spool-layout.js";

const CHUNK = 1024 * 1024;

/** One line of a segment file as stored, with where it is. */
export interface RawLine {
  segment: string;
  /** 1-based line number within the segment. */
  line: number;
  offset: number;
  /** Offset just after the line's newline. */
  next: number;
  text: string;
  /** False for trailing bytes without a newline (a torn or in-progress write). */
  complete: boolean;
}

/**
 * Yields the lines of a file from `start` up to `end` (default: its current size), reading 1 MiB at a time.
 * Lines longer than a chunk are handled by growing the chunk.
 */
export async function* fileLines(
  path: string,
  segment: string,
  start = 0,
  end?: number,
  firstLineNo = 1,
): AsyncGenerator<RawLine> {
  const fh = await fsp.open(path, "r");
  try {
    const limit = end ?? (await fh.stat()).size;
    let pos = start;
    let lineNo = firstLineNo;
    let size = CHUNK;
    while (pos < limit) {
      const want = Math.min(size, limit - pos);
      const buf = Buffer.allocUnsafe(want);
      const { bytesRead } = await fh.read(buf, 0, want, pos);
      if (bytesRead === 0) break;
      let p = 0;
      for (;;) {
        const nl = buf.indexOf(10, p);
        if (nl < 0 || nl >= bytesRead) break;
        const text = buf.toString("utf8", p, nl);
        yield { segment, line: lineNo++, offset: pos + p, next: pos + nl + 1, text, complete: true };
        p = nl + 1;
      }
      if (p === 0) {
        if (pos + bytesRead >= limit) {
          const text = buf.toString("utf8", 0, bytesRead);
          yield { segment, line: lineNo, offset: pos, next: pos + bytesRead, text, complete: false };
          return;
        }
        size *= 4; // a line longer than the chunk: read more at once
        continue;
      }
      pos += p; // a partial line at the end of the chunk is read again with the next one
    }
  } finally {
    await fh.close();
  }
}

/**
 * A shipper's view of the spool in the writing process: records after a seq, never beyond what is durable.
 * Keeps its place (segment and byte offset) between calls.
 */
export class SpoolReader {
  private segment: SegmentInfo | null = null;
  private offset = 0;

  constructor(
    private readonly spool: Spool,
    private after: number,
  ) {}

  /** seq of the last record returned (or the starting point). */
  get position(): number {
    return this.after;
  }

  /** Up to `maxRecords` / about `maxBytes` of records after the position; [] when there is nothing new. */
  async read(maxRecords: number, maxBytes: number): Promise<SpoolRecord[]> {
    const out: SpoolRecord[] = [];
    let bytes = 0;
    while (out.length < maxRecords && bytes < maxBytes) {
      const seg = this.locate();
      if (!seg) break;
      const limit = seg.bytes;
      if (this.offset >= limit) {
        if (!seg.sealed) break;
        const list = this.spool.segmentList();
        const next = list[list.indexOf(seg) + 1];
        if (!next) break;
        this.segment = next;
        this.offset = 0;
        continue;
      }
      let advanced = false;
      for await (const l of fileLines(seg.path, seg.name, this.offset, limit)) {
        if (!l.complete) break;
        const r = parseRecordLine(l.text, false);
        this.offset = l.next;
        advanced = true;
        if (typeof r === "string") {
          throw new Error(`audit spool ${seg.name} line ${l.line} at byte ${l.offset}: ${r}`);
        }
        if (r.seq <= this.after) continue;
        out.push(r);
        this.after = r.seq;
        bytes += l.text.length;
        if (out.length >= maxRecords || bytes >= maxBytes) break;
      }
      if (!advanced) break;
    }
    return out;
  }

  /** The segment holding the record after the position (its first one with seq > after). */
  private locate(): SegmentInfo | null {
    const list = this.spool.segmentList();
    if (this.segment && list.includes(this.segment)) return this.segment;
    // Start (or the segment was released): the last segment whose first seq is ≤ after + 1.
    let found: SegmentInfo | null = null;
    for (const s of list) {
      if (s.firstSeq <= this.after + 1) found = s;
      else break;
    }
    found ??= list[0] ?? null;
    this.segment = found;
    this.offset = 0;
    return found;
  }
}

/** All records of a spool directory in order, for the CLI (no writer needed). Incomplete tails are skipped. */
export async function* spoolRecords(dir: string, fromSeq = 0): AsyncGenerator<SpoolRecord> {
  const files = await listSegmentFiles(dir);
  let start = 0;
  for (let i = 0; i < files.length; i++)
    if ((files[i] as { firstSeq: number }).firstSeq <= fromSeq) start = i;
  for (const f of files.slice(start)) {
    let lines: AsyncGenerator<RawLine>;
    try {
      lines = fileLines(f.path, f.name);
      for await (const l of lines) {
        if (!l.complete) break;
        const r = parseRecordLine(l.text, false);
        if (typeof r === "string" || r.seq < fromSeq) continue;
        yield r;
      }
    } catch (err) {
      if ((err as { code?: string }).code === "ENOENT") continue; // released while we read
      throw err;
    }
  }
}
