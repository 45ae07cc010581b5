// Decision search over spool directories (one, or one per worker: `<audit.dir>/worker-<i>`), newest first.
//
// Each spool is read backwards, segment by segment from the newest, in chunks from the end of the file, so the
// first page costs what its records cost, not what the spool holds. A line is looked at cheaply before it is
// parsed: its kind from the fixed record header, and the exact-match filter values as bytes it must contain.
// Several spools are merged by event time; within one spool, records come in record order (newest record
// first), which is event-time order except for a decision recorded late (one held for an approval is recorded
// when the approval settles, with the time it was decided).
//
// A page ends after `limit` rows or `maxScan` lines; its cursor names, per spool, the segment, byte offset and
// seq where the next page continues. What is appended after the first page is not in later pages: the pages
// are a listing of the spool as it was when the first one was read.
import type { FileHandle } from "node:fs/promises";
import * as fsp from "node:fs/promises";
import { join } from "node:path";
import { parseRecordLine } from "./record.js";
import {
  bodyFilters,
  checkQuery,
  compareTime,
  type DecisionPage,
  type DecisionQuery,
  type DecisionSearch,
  dateKey,
  decodeCursor,
  encodeCursor,
  filterKey,
  InvalidSearchError,
  inRange,
  type TimeKey,
  timeKey,
} from "./search-query.js";
import { bodyMatches, type DecisionRow, decisionRow, lineNeedles } from "./search-row.js";
import { listSegmentFiles, META_FILE, readSpoolId } from "./spool-layout.js";

export interface SpoolSearchOptions {
  /** Lines looked at, at most, for one page (over all spools). Default 200,000. */
  maxScan?: number;
  /** Bytes read at a time. Default 1 MiB. */
  chunkBytes?: number;
}

export const DEFAULT_MAX_SCAN = 200_000;

/**
 * A segment written last at mtime holds no event later than that (an event is decided before it is written);
 * this much slack allows for the wall clock being stepped back in between.
 */
const MTIME_SLACK_MS = 10 * 60_000;

const HEADER = /^\{"seq":(\d{1,16}),"kind":"([a-z][a-z0-9_.-]{0,31})","prev":"/;

/**
 * Where a spool's scan continues: lines of segment `segment` (its first seq) that end before byte `offset`, then
 * the older segments; only records with seq below `seq` (a guard if the segment changed in between).
 */
type Position = [segment: number, offset: number, seq: number];

/** One line as read, not yet parsed. */
interface Line {
  seq: number;
  kind: string;
  segment: number;
  /** Byte offsets of the line in its segment (end: of its newline). */
  start: number;
  end: number;
  bytes: Buffer;
}

/**
 * The spool directories of an audit directory: itself when it holds a spool, and every `worker-<i>`
 * subdirectory that holds one (a gateway with `workers: N`).
 */
export async function findSpoolDirs(auditDir: string): Promise<string[]> {
  const out: string[] = [];
  const hasSpool = async (dir: string) =>
    (await fsp.stat(join(dir, META_FILE)).catch(() => null))?.isFile() === true;
  if (await hasSpool(auditDir)) out.push(auditDir);
  const entries = await fsp.readdir(auditDir, { withFileTypes: true }).catch(() => []);
  const workers = entries
    .filter((e) => e.isDirectory() && /^worker-\d+$/.test(e.name))
    .map((e) => e.name)
    .sort((a, b) => Number(a.slice(7)) - Number(b.slice(7)));
  for (const w of workers) if (await hasSpool(join(auditDir, w))) out.push(join(auditDir, w));
  return out;
}

/** Reads one spool's lines backwards from a position: newest first, segment after segment. */
class BackwardScan {
  private segments: Array<{ firstSeq: number; path: string }> = [];
  private index = -1;
  private fh: FileHandle | null = null;
  /** The unread part of the current segment is [0, pos), plus `carry` (the start of a line read in part). */
  private pos = 0;
  private carry: Buffer | null = null;
  /** Lines read but not yet returned, oldest first (returned from the end). */
  private pending: Line[] = [];
  private done = false;
  /** Where the scan continues after the last line returned. */
  position: Position;

  constructor(
    private readonly dir: string,
    private readonly chunkBytes: number,
    start: Position | null,
    /** Segments written last before this (epoch ms) are not read: their events are all older. */
    private readonly notBeforeMs: number | null,
  ) {
    this.position = start ?? [Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER];
  }

  async open(): Promise<void> {
    const [segment] = this.position;
    const files = await listSegmentFiles(this.dir).catch(() => []);
    // Oldest first; the scan walks them from the end of this list.
    this.segments = files
      .filter((f) => f.firstSeq <= segment)
      .map((f) => ({ firstSeq: f.firstSeq, path: f.path }));
    this.index = this.segments.length;
  }

  /** The next line (older than the last one), or null at the start of the spool. */
  async next(): Promise<Line | null> {
    for (;;) {
      const line = this.pending.pop();
      if (line) {
        const bound = this.position[2];
        if (line.seq >= bound) continue; // returned before: the segment grew or changed
        // A damaged line (no header, seq -1) moves the position but keeps the seq guard.
        this.position = [line.segment, line.start, line.seq >= 0 ? line.seq : bound];
        return line;
      }
      if (this.done) return null;
      if (this.fh && this.pos > 0) await this.readChunk();
      else if (!(await this.openPrevious())) {
        this.done = true;
        await this.close();
      }
    }
  }

  /** Opens the next older segment; false when there is none (or the rest are older than notBeforeMs). */
  private async openPrevious(): Promise<boolean> {
    this.carry = null;
    while (--this.index >= 0) {
      await this.close();
      const seg = this.segments[this.index] as { firstSeq: number; path: string };
      let fh: FileHandle;
      try {
        fh = await fsp.open(seg.path, "r");
      } catch (err) {
        // Shipped and released while we read: so were all older ones.
        if ((err as { code?: string }).code === "ENOENT") return false;
        throw err;
      }
      const st = await fh.stat();
      if (this.notBeforeMs !== null && st.mtimeMs + MTIME_SLACK_MS < this.notBeforeMs) {
        await fh.close();
        return false;
      }
      this.fh = fh;
      const [segment, offset] = this.position;
      this.pos = seg.firstSeq === segment ? Math.min(offset, st.size) : st.size;
      // Bytes after the last newline are a write in progress (or a torn one): not a record yet.
      this.pos = await this.lastLineEnd(this.pos);
      if (this.pos > 0) return true;
    }
    await this.close();
    return false;
  }

  /** The offset just after the last newline before `end` (0 when there is none). */
  private async lastLineEnd(end: number): Promise<number> {
    const fh = this.fh as FileHandle;
    let hi = end;
    while (hi > 0) {
      const lo = Math.max(0, hi - this.chunkBytes);
      const buf = Buffer.allocUnsafe(hi - lo);
      const { bytesRead } = await fh.read(buf, 0, buf.length, lo);
      const nl = buf.subarray(0, bytesRead).lastIndexOf(10);
      if (nl >= 0) return lo + nl + 1;
      hi = lo;
    }
    return 0;
  }

  /** Reads the chunk before `pos` and queues the whole lines it completes. */
  private async readChunk(): Promise<void> {
    const fh = this.fh as FileHandle;
    const lo = Math.max(0, this.pos - this.chunkBytes);
    const chunk = Buffer.allocUnsafe(this.pos - lo);
    const { bytesRead } = await fh.read(chunk, 0, chunk.length, lo);
    if (bytesRead !== chunk.length) throw new Error(`audit spool segment ${this.dir}: short read`);
    // buf covers [lo, lo + buf.length) and ends with a newline (the region always ends at one).
    const buf = this.carry ? Buffer.concat([chunk, this.carry]) : chunk;
    this.pos = lo;
    let from = 0;
    if (lo > 0) {
      // The first piece is the end of a line that starts in an earlier chunk: keep it for the next read.
      const nl = buf.indexOf(10);
      if (nl === buf.length - 1) {
        this.carry = buf; // one line longer than the chunk so far
        return;
      }
      this.carry = buf.subarray(0, nl + 1);
      from = nl + 1;
    } else this.carry = null;
    const segment = (this.segments[this.index] as { firstSeq: number }).firstSeq;
    while (from < buf.length) {
      const nl = buf.indexOf(10, from);
      const end = nl < 0 ? buf.length : nl;
      const bytes = buf.subarray(from, end);
      const h = HEADER.exec(bytes.toString("latin1", 0, Math.min(bytes.length, 80)));
      // A line without a record header (damaged) still counts as looked at: kind "".
      this.pending.push({
        seq: h ? Number(h[1]) : -1,
        kind: h ? (h[2] as string) : "",
        segment,
        start: lo + from,
        end: lo + end + 1,
        bytes,
      });
      from = end + 1;
    }
  }

  async close(): Promise<void> {
    const fh = this.fh;
    this.fh = null;
    await fh?.close().catch(() => {});
  }
}

/** A spool in a search: its scan, and its next matching row (looked ahead for the merge). */
interface Source {
  spoolId: string;
  scan: BackwardScan | null;
  head: { row: DecisionRow; time: TimeKey | null; line: Line } | null;
}

export class SpoolDecisionSearch implements DecisionSearch {
  private readonly dirs: readonly string[];
  private readonly maxScan: number;
  private readonly chunkBytes: number;

  constructor(dirs: string | readonly string[], options: SpoolSearchOptions = {}) {
    this.dirs = typeof dirs === "string" ? [dirs] : [...dirs];
    this.maxScan = Math.max(1, options.maxScan ?? DEFAULT_MAX_SCAN);
    this.chunkBytes = Math.max(64, options.chunkBytes ?? 1024 * 1024);
  }

  async searchDecisions(query: DecisionQuery): Promise<DecisionPage> {
    checkQuery(query);
    const key = filterKey(query);
    const positions = query.before === undefined ? null : cursorPositions(query.before, key);
    const since = query.since ? dateKey(query.since) : null;
    const until = query.until ? dateKey(query.until) : null;
    const filters = bodyFilters(query);
    const needles = lineNeedles(filters);

    const sources: Source[] = [];
    try {
      for (const dir of this.dirs) {
        const spoolId = await readSpoolId(dir).catch(() => null);
        if (!spoolId || sources.some((s) => s.spoolId === spoolId)) continue; // no spool there yet, or a copy
        let start: Position | null = null;
        if (positions) {
          // A spool the first page did not see (or had finished) is not part of this listing.
          const p = positions[spoolId];
          if (!p) continue;
          start = p;
        }
        const scan = new BackwardScan(dir, this.chunkBytes, start, query.since?.getTime() ?? null);
        await scan.open();
        sources.push({ spoolId, scan, head: null });
      }

      let scanned = 0;
      const rows: DecisionRow[] = [];
      const matchLine = (s: Source, line: Line): Source["head"] => {
        if (line.kind !== "decision") return null;
        for (const n of needles) if (line.bytes.indexOf(n) < 0) return null;
        const r = parseRecordLine(line.bytes.toString("utf8"), false);
        if (typeof r === "string") return null;
        let body: Record<string, unknown>;
        try {
          body = JSON.parse(r.body) as Record<string, unknown>;
        } catch {
          return null;
        }
        if (body === null || typeof body !== "object" || Array.isArray(body)) return null;
        const time = timeKey(body.timestamp);
        if (!inRange(time, since, until) || !bodyMatches(body, filters)) return null;
        const row = decisionRow(body, { spool_id: s.spoolId, seq: r.seq });
        return row ? { row, time, line } : null;
      };

      // Each spool's next matching row is found before the newest of them is taken; after `limit` rows, they are
      // still looked for (within maxScan), so that a page says there is no more when there is none.
      for (;;) {
        let bounded = false;
        for (const s of sources) {
          while (!s.head && s.scan && !bounded) {
            if (scanned >= this.maxScan) {
              bounded = true;
              break;
            }
            const line = await s.scan.next();
            if (!line) s.scan = null;
            else {
              scanned++;
              s.head = matchLine(s, line);
            }
          }
        }
        if (bounded) break;
        // The newest head; ties as PostgreSQL orders them (by spool_id; one spool's records come in seq order).
        let best: Source | null = null;
        for (const s of sources) {
          if (!s.head) continue;
          const c = best?.head ? compareTime(s.head.time, best.head.time) : 1;
          if (c > 0 || (c === 0 && s.spoolId < (best as Source).spoolId)) best = s;
        }
        if (!best?.head || rows.length >= query.limit) break;
        rows.push(best.head.row);
        best.head = null;
      }

      const open: Record<string, Position> = {};
      for (const s of sources) {
        // A row looked ahead but not returned is read again by the next page.
        if (s.head) open[s.spoolId] = [s.head.line.segment, s.head.line.end, s.head.line.seq + 1];
        else if (s.scan) open[s.spoolId] = s.scan.position;
      }
      const more = Object.keys(open).length > 0;
      return {
        decisions: rows,
        next_cursor: more ? encodeCursor({ v: 1, b: "spool", f: key, p: open }) : null,
        source: "spool",
        scanned,
      };
    } finally {
      await Promise.all(sources.map((s) => s.scan?.close()));
    }
  }
}

function cursorPositions(cursor: string, key: string): Record<string, Position> {
  const p = decodeCursor(cursor, "spool", key).p as unknown;
  const out: Record<string, Position> = {};
  const bad = () => new InvalidSearchError("before is not a cursor this search returned");
  if (p === null || typeof p !== "object" || Array.isArray(p)) throw bad();
  for (const [spoolId, pos] of Object.entries(p)) {
    if (
      !Array.isArray(pos) ||
      pos.length !== 3 ||
      !pos.every((n) => Number.isSafeInteger(n) && (n as number) >= 0)
    )
      throw bad();
    out[spoolId] = pos as Position;
  }
  return out;
}
