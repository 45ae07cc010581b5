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

/** Collects the chunks of one session from records in seq order. Null when there are none. */
export async function loadRecording(
  records: AsyncIterable<SpoolRecord>,
  sessionId: string,
): Promise<SessionRecording | null> {
  const prefix = `{"session_id":${JSON.stringify(sessionId)},`;
  const chunks = new Map<number, ChunkBody>();
  for await (const r of records) {
    if (r.kind !== "recording" || !r.body.startsWith(prefix)) continue;
    const body = JSON.parse(r.body) as ChunkBody;
    if (body.session_id !== sessionId) continue;
    if (!chunks.has(body.part)) chunks.set(body.part, body); // a re-shipped duplicate is the same chunk
  }
  if (chunks.size === 0) return null;
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
