// Reassembling a session recording from its chunks (in the spool or the PostgreSQL table) and playing it back.
import type { Writable } from "node:stream";
import { setTimeout as delay } from "node:timers/promises";
import pg from "pg";
import { parseRecordLine, type SpoolRecord } from "./record.js";
import type { RecordingFormat } from "./recording.js";
import { quoteTable } from "./sinks/postgres.js";

export interface SessionRecording {
  session_id: string;
  format: RecordingFormat;
  header: Record<string, unknown>;
  /** asciicast: [t, code, data] arrays; jsonl: entry objects. */
  events: unknown[];
  parts: number;
  /** The final chunk (written at close) is present. */
  complete: boolean;
  /** Part numbers that are missing (a chunk deleted, or shipped elsewhere). */
  missing_parts: number[];
  duration: number | null;
  /**
   * asciicast: the exact bytes of the events whose data was not valid UTF-8, by index in `events` (their text has
   * U+FFFD in place of the bad bytes). Every other "o"/"i" event's text, as UTF-8, is exactly what arrived.
   */
  raw: Map<number, Buffer>;
  /** asciicast recorded with keyframes: the screen at the start of some chunks, in order (see recording.ts). */
  keyframes: Keyframe[];
}

/**
 * The screen before event `index` (the first of its chunk): written into a fresh terminal of width × height, then
 * the events from `index` on, it shows what replaying everything from the start would.
 */
export interface Keyframe {
  index: number;
  /** Seconds since the start, as event times count. */
  t: number;
  width: number;
  height: number;
  /** ANSI text that repaints the screen (and sets the terminal modes in force). */
  screen: string;
}

interface ChunkBody {
  session_id: string;
  format: RecordingFormat;
  part: number;
  header?: Record<string, unknown>;
  events: unknown[];
  raw?: Array<[number, string]>;
  keyframe?: Omit<Keyframe, "index">;
  final?: boolean;
  duration?: number;
}

/**
 * Which recordings a scan collects: a cheap test on a chunk's body text first (most records in a spool belong to
 * other sessions, and parsing each would cost more than the whole scan otherwise), then the exact test on its id.
 */
export interface RecordingSelector {
  /** Every chunk body of a wanted recording starts with this text. */
  prefix: string;
  wants(recordingId: string): boolean;
}

/** One recording, by its exact id. */
export function recordingById(recordingId: string): RecordingSelector {
  return {
    prefix: `{"session_id":${JSON.stringify(recordingId)},`,
    wants: (id) => id === recordingId,
  };
}

/** A session's own recording (its transcript) and its terminals `<session>/<n>`, n a number. */
export function sessionRecordings(sessionId: string): RecordingSelector {
  const terminal = `${sessionId}/`;
  return {
    // Without the closing quote: "abc" and "abc/1" both start so; "abcd" too, which wants() then refuses.
    prefix: `{"session_id":${JSON.stringify(sessionId).slice(0, -1)}`,
    wants: (id) =>
      id === sessionId || (id.startsWith(terminal) && /^[0-9]+$/.test(id.slice(terminal.length))),
  };
}

/**
 * Collects the chunks of every recording the selector wants, in one pass over records in seq order, and
 * assembles each. Recordings without a chunk are absent from the map.
 */
export async function loadRecordings(
  records: AsyncIterable<SpoolRecord>,
  selector: RecordingSelector,
): Promise<Map<string, SessionRecording>> {
  const byId = new Map<string, Map<number, ChunkBody>>();
  for await (const r of records) {
    if (r.kind !== "recording" || !r.body.startsWith(selector.prefix)) continue;
    const body = JSON.parse(r.body) as ChunkBody;
    if (typeof body.session_id !== "string" || !selector.wants(body.session_id)) continue;
    let chunks = byId.get(body.session_id);
    if (!chunks) {
      chunks = new Map();
      byId.set(body.session_id, chunks);
    }
    if (!chunks.has(body.part)) chunks.set(body.part, body); // a re-shipped duplicate is the same chunk
  }
  const out = new Map<string, SessionRecording>();
  for (const [id, chunks] of byId) out.set(id, assemble(id, chunks));
  return out;
}

/** Collects the chunks of one session from records in seq order. Null when there are none. */
export async function loadRecording(
  records: AsyncIterable<SpoolRecord>,
  sessionId: string,
): Promise<SessionRecording | null> {
  return (await loadRecordings(records, recordingById(sessionId))).get(sessionId) ?? null;
}

function assemble(sessionId: string, chunks: Map<number, ChunkBody>): SessionRecording {
  const parts = [...chunks.keys()].sort((a, b) => a - b);
  const last = parts[parts.length - 1] as number;
  const missing: number[] = [];
  for (let p = 0; p <= last; p++) if (!chunks.has(p)) missing.push(p);
  const first = chunks.get(0);
  const events: unknown[] = [];
  const raw = new Map<number, Buffer>();
  const keyframes: Keyframe[] = [];
  let final: ChunkBody | undefined;
  for (const p of parts) {
    const c = chunks.get(p) as ChunkBody;
    const start = events.length;
    if (c.keyframe) keyframes.push({ index: start, ...c.keyframe });
    for (const e of c.events) events.push(e);
    for (const [i, b64] of c.raw ?? []) raw.set(start + i, Buffer.from(b64, "base64"));
    if (c.final) final = c;
  }
  return {
    session_id: sessionId,
    format: (first ?? chunks.get(parts[0] as number))?.format ?? "jsonl",
    header: first?.header ?? {},
    events,
    parts: chunks.size,
    complete: final !== undefined,
    missing_parts: missing,
    duration: final?.duration ?? null,
    raw,
    keyframes,
  };
}

/**
 * The exact bytes of a terminal recording's output ("o") or input ("i") events, in order: the bytes kept beside an
 * event whose data was not valid UTF-8, the UTF-8 of its text for every other (which is what arrived).
 */
export function recordedBytes(rec: SessionRecording, code: "o" | "i" = "o"): Buffer {
  const parts: Buffer[] = [];
  rec.events.forEach((e, i) => {
    if (!Array.isArray(e) || e[1] !== code) return;
    parts.push(rec.raw.get(i) ?? Buffer.from(String(e[2]), "utf8"));
  });
  return Buffer.concat(parts);
}

/**
 * The recording as a file: an asciicast v2 .cast or a JSON-lines transcript (header line first). The chunks' side
 * fields (raw bytes, keyframes) are not in it: the file is plain asciicast, for any player.
 */
export function recordingFile(rec: SessionRecording): string {
  const lines = [JSON.stringify(rec.header)];
  for (const e of rec.events) lines.push(JSON.stringify(e));
  return `${lines.join("\n")}\n`;
}

/** A terminal recording as the .cast file `pamgate replay --cast` prints; null for a transcript. */
export function castFile(rec: SessionRecording): string | null {
  return rec.format === "asciicast-v2" ? recordingFile(rec) : null;
}

export interface PlayOptions {
  /** Playback speed factor. Default 1. */
  speed?: number;
  /** Longest pause, in seconds, before speed is applied (asciinema's idle time limit). Default: the header's idle_time_limit or 2. */
  idleCap?: number;
  /** Also show what the user typed ("i" events); normally the echo in the output shows it. */
  showInput?: boolean;
  sleep?: (ms: number) => Promise<unknown>;
}

/** Plays a terminal recording to `out` with its timing (pauses capped, scaled by speed). */
export async function playTerminal(
  rec: SessionRecording,
  out: Writable,
  options: PlayOptions = {},
): Promise<void> {
  const speed = options.speed && options.speed > 0 ? options.speed : 1;
  const headerCap = typeof rec.header.idle_time_limit === "number" ? rec.header.idle_time_limit : undefined;
  const cap = options.idleCap ?? headerCap ?? 2;
  const sleep = options.sleep ?? ((ms: number) => delay(ms));
  let last = 0;
  let pending = 0; // seconds to wait before the next event that is shown
  for (const e of rec.events) {
    if (!Array.isArray(e) || e.length < 3) continue;
    const [t, code, data] = e as [number, string, string];
    pending += Math.min(Math.max(0, t - last), cap) / speed;
    last = t;
    if (code !== "o" && !(code === "i" && options.showInput)) continue;
    if (pending > 0.001) await sleep(pending * 1000);
    pending = 0;
    await new Promise<void>((resolve, reject) => out.write(data, (err) => (err ? reject(err) : resolve())));
  }
}

/** The recording chunks of one session from the PostgreSQL sink's table, in order. */
export async function* postgresRecordingRecords(
  url: string,
  table: string,
  sessionId: string,
): AsyncGenerator<SpoolRecord> {
  const client = new pg.Client({ connectionString: url, application_name: "pamgate-replay" });
  await client.connect();
  try {
    const { rows } = await client.query<{ record: string }>(
      `SELECT record FROM ${quoteTable(table)} WHERE session_id = $1 AND kind = 'recording' ORDER BY spool_id, seq`,
      [sessionId],
    );
    for (const row of rows) {
      const r = parseRecordLine(row.record);
      if (typeof r !== "string") yield r;
    }
  } finally {
    await client.end().catch(() => {});
  }
}
