// The spool directory's layout and the read helpers every reader shares (the writer in spool.ts, the reader,
// verify, tail and the shippers): file names, the meta and anchor files, listing segments, finding a segment's
// last record, and writing small files atomically.
//
//   spool.json                      {"version":1,"spool_id":"…","created_at":"…"}: the genesis of the chain
//   seg-00000000000000000001.jsonl  segments, named by the seq of their first record; all but the last are
//   seg-00000000000000004711.jsonl  sealed: their last record is a "seal" record naming the segment's range
//   anchor.json                     {"seq","hash"} of the last record of segments already deleted (shipped)
//   cursors/<sink>.json             each sink's shipped position (see shipper.ts)
//   torn/                           bytes cut off a torn tail at start-up, kept for inspection
//   LOCK                            the pid of the process writing the spool (src/util/pid-lock.ts)
import { randomUUID } from "node:crypto";
import * as fsp from "node:fs/promises";
import { join } from "node:path";
import { errorText } from "../util/errors.js";
import { AuditUnavailableError, errnoCode } from "./errors.js";
import { parseRecordLine, type SpoolRecord } from "./record.js";

export const SEGMENT_PATTERN = /^seg-(\d{20})\.jsonl$/;
export const META_FILE = "spool.json";
export const ANCHOR_FILE = "anchor.json";
export const LOCK_FILE = "LOCK";

export function segmentName(firstSeq: number): string {
  return `seg-${String(firstSeq).padStart(20, "0")}.jsonl`;
}

export interface SegmentInfo {
  name: string;
  path: string;
  firstSeq: number;
  /** Bytes that are durable (committed); readers never read past them. */
  bytes: number;
  /** seq of the segment's last durable record (firstSeq - 1 when it has none). */
  lastSeq: number;
  sealed: boolean;
}

/** Largest batch in one write. */
export const MAX_BATCH_BYTES = 1024 * 1024;
/** Most bytes written but not yet fdatasync'd; the write stage waits beyond it. */
export const MAX_UNSYNCED_BYTES = 4 * 1024 * 1024;
/**
 * How far from the end of the last segment a bad record can be and still be a torn write (never acknowledged):
 * what can be written and not yet synced, plus the batch being written.
 */
export const TORN_WINDOW_BYTES = MAX_UNSYNCED_BYTES + 2 * MAX_BATCH_BYTES;

interface Meta {
  version: 1;
  spool_id: string;
  created_at: string;
}

export interface Anchor {
  seq: number;
  hash: string;
}

export interface SegmentFile {
  name: string;
  path: string;
  firstSeq: number;
  size: number;
}

/** The segment files of a spool directory, oldest first. */
export async function listSegmentFiles(dir: string): Promise<SegmentFile[]> {
  const out: SegmentFile[] = [];
  for (const name of await fsp.readdir(dir)) {
    const m = SEGMENT_PATTERN.exec(name);
    if (!m) continue;
    const path = join(dir, name);
    const st = await fsp.stat(path).catch(() => null);
    if (!st) continue;
    out.push({ name, path, firstSeq: Number(m[1]), size: st.size });
  }
  return out.sort((a, b) => a.firstSeq - b.firstSeq);
}

export async function readOrCreateMeta(dir: string): Promise<string> {
  const path = join(dir, META_FILE);
  try {
    const meta = JSON.parse(await fsp.readFile(path, "utf8")) as Meta;
    if (typeof meta.spool_id !== "string" || !meta.spool_id) throw new Error("no spool_id");
    return meta.spool_id;
  } catch (err) {
    if (errnoCode(err) !== "ENOENT") {
      throw new AuditUnavailableError(`audit spool ${path} is unreadable: ${errorText(err)}`);
    }
  }
  const existing = await listSegmentFiles(dir);
  if (existing.length > 0) {
    throw new AuditUnavailableError(
      `audit spool ${dir} has segments but no ${META_FILE}: the chain's genesis is unknown`,
    );
  }
  const meta: Meta = { version: 1, spool_id: randomUUID(), created_at: new Date().toISOString() };
  await writeAtomic(path, `${JSON.stringify(meta)}\n`);
  return meta.spool_id;
}

export async function readSpoolId(dir: string): Promise<string> {
  const meta = JSON.parse(await fsp.readFile(join(dir, META_FILE), "utf8")) as Meta;
  return meta.spool_id;
}

export async function readAnchor(dir: string): Promise<Anchor | null> {
  try {
    const a = JSON.parse(await fsp.readFile(join(dir, ANCHOR_FILE), "utf8")) as Anchor;
    return typeof a.seq === "number" && typeof a.hash === "string" ? a : null;
  } catch {
    return null;
  }
}

/** Writes a small file so that it is either the old or the new content, and durable. */
export async function writeAtomic(path: string, content: string, sync = true): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  const fh = await fsp.open(tmp, "w", 0o640);
  try {
    await fh.writeFile(content);
    if (sync) await fh.datasync();
  } finally {
    await fh.close();
  }
  await fsp.rename(tmp, path);
}

/** The last complete, well-formed record of a (sealed) segment file. */
export async function lastRecordOf(path: string): Promise<SpoolRecord | null> {
  const fh = await fsp.open(path, "r");
  try {
    const { size } = await fh.stat();
    let window = 64 * 1024;
    for (;;) {
      const start = Math.max(0, size - window);
      const buf = Buffer.alloc(size - start);
      await fh.read(buf, 0, buf.length, start);
      const text = buf.toString("utf8");
      const end = text.endsWith("\n") ? text.length - 1 : text.lastIndexOf("\n");
      const begin = text.lastIndexOf("\n", end - 1) + 1;
      if (end > 0 && (begin > 0 || start === 0)) {
        const r = parseRecordLine(text.slice(begin, end));
        return typeof r === "string" ? null : r;
      }
      if (start === 0) return null;
      window *= 4;
    }
  } finally {
    await fh.close();
  }
}
