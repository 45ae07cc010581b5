// Session recordings through the spool: the protocol adapters push terminal output/input or transcript entries,
// and the recording writes them as spool records of kind "recording" — hash-chained, durable and shipped like
// decision events — in chunks (every flushMs or chunkBytes), each naming its session:
//
//   {"session_id":"…","format":"asciicast-v2","part":0,"timestamp":"…","header":{…},"events":[…],"final":false}
//
// Terminal sessions use asciicast v2 (https://docs.asciinema.org/manual/asciicast/v2/): the header goes in part 0,
// events are [seconds, "o" | "i" | "r" | "m", data]. Statement/request sessions (PostgreSQL, Kubernetes) are
// JSON-lines transcripts: a header object, then one object per entry with `t` in seconds. Concatenating the parts
// gives the file: `pamgate replay <session-id>` does that, and plays it.
//
// A terminal's bytes are kept exactly. asciicast data is text, so bytes are cut at the last whole UTF-8 character
// (the rest waits for the next read, or for close); when what is left is valid UTF-8 the text *is* the bytes and
// nothing more is written. When it is not (a binary file cat'ed, a Latin-1 log), the event's text has U+FFFD where
// the bad bytes were, so players still play it, and the chunk carries the exact bytes beside its events:
//
//   {…,"events":[[0.1,"o","ok"],[0.2,"o","\uFFFD\uFFFDok"]],"raw":[[1,"//5vaw=="]]}
//
// `raw` pairs an event's index in this chunk with its bytes in base64; the events array stays plain asciicast.
//
// Keyframes (option `keyframes`, set for sessions with a pty): a headless terminal emulator (@xterm/headless) is fed
// the output as a player would see it, sized from the pty and resized with it, and a chunk starts with the screen it
// shows — serialized as the ANSI text that repaints it (@xterm/addon-serialize) — when it is the first chunk or at
// least 256 KiB of output or 10 s have passed since the last keyframe (a chunk is cut early to keep to that):
//
//   {…,"part":7,…,"keyframe":{"t":12.5,"width":120,"height":40,"screen":"\u001b[1;1H…"},"events":[…]}
//
// Why: to show a session from minute 40 a player otherwise has to replay every byte from the start (a full-screen
// program may have drawn 100 MB by then). With keyframes it writes the last keyframe's screen into a terminal of
// that size and replays only the events after it — at most 256 KiB or 10 s of them. The web console will seek
// recordings that way; asciinema ignores the field. Without the option nothing of this runs or is loaded.
//
// Chunks are written one at a time, in order; what arrives while one is being written gathers in the next (up to
// 1 MiB, then in another). When the spool refuses one (full, unwritable) it stays queued, with what was pushed
// after it, and goes out with the next attempt, so a recording has no holes; `ok` turns false and `error` says
// why, so the proxy can stop the session (pushing more while !ok is allowed up to maxBufferedBytes, then dropped).

import { isUtf8 } from "node:buffer";
import { createRequire } from "node:module";
import type { SerializeAddon } from "@xterm/addon-serialize";
import type { Terminal } from "@xterm/headless";
import { errorText } from "../util/errors.js";
import { AuditUnavailableError } from "./errors.js";
import type { AuditReceipt } from "./spool.js";

export type RecordFn = (kind: string, body: string) => Promise<AuditReceipt>;

export interface RecordingOptions {
  /** Write a chunk at least this often while there is something to write. Default 250 ms. */
  flushMs?: number;
  /** Write a chunk once this much is buffered. Default 64 KiB. */
  chunkBytes?: number;
  /** While the spool refuses chunks, keep at most this much; beyond it events are dropped (and counted). */
  maxBufferedBytes?: number;
  /** Called once each time the recording starts failing. */
  onError?: (err: AuditUnavailableError) => void;
  /** Clock in milliseconds (tests). */
  now?: () => number;
}

export type RecordingFormat = "asciicast-v2" | "jsonl";

/**
 * A chunk gathering while a write is in flight starts another past this size (in UTF-16 units of event JSON: at most
 * 3 MiB of UTF-8, under the spool's 4 MiB record limit).
 */
const MAX_CHUNK_BYTES = 1024 * 1024;

/** A chunk being gathered or waiting to be written. */
interface Chunk {
  /** Event JSON texts. */
  events: string[];
  bytes: number;
  /** `[index in events,"base64"]` of events whose bytes were not valid UTF-8. */
  raw: string[] | null;
  /** Fields about the chunk's start (a keyframe), as `,"name":value` text; resolved once known. */
  lead: Promise<string> | null;
}

abstract class Recording {
  /** Chunks not yet written, oldest first; `open` (the last of them, if set) gathers what is pushed. */
  private queue: Chunk[] = [];
  private open: Chunk | null = null;
  private queuedBytes = 0;
  private part = 0;
  private timer: NodeJS.Timeout | null = null;
  private writing: Promise<void> | null = null;
  private closed = false;
  private failure: AuditUnavailableError | null = null;
  private droppedEvents = 0;
  private readonly flushMs: number;
  private readonly chunkBytes: number;
  private readonly maxChunkBytes: number;
  private readonly maxBufferedBytes: number;
  protected readonly clock: () => number;
  protected readonly startedMs: number;
  /** Whether the last push() took its event (false: closed, or dropped while failing). */
  protected accepted = false;
  /** Wall-clock start, for headers. */
  readonly startedAt: Date;

  protected constructor(
    private readonly recordFn: RecordFn,
    readonly sessionId: string,
    readonly format: RecordingFormat,
    private readonly options: RecordingOptions,
  ) {
    this.flushMs = options.flushMs ?? 250;
    this.chunkBytes = options.chunkBytes ?? 64 * 1024;
    this.maxChunkBytes = Math.max(this.chunkBytes, MAX_CHUNK_BYTES);
    this.maxBufferedBytes = options.maxBufferedBytes ?? 8 * 1024 * 1024;
    this.clock = options.now ?? (() => performance.now());
    this.startedMs = this.clock();
    this.startedAt = new Date();
  }

  /** The header object of part 0. */
  protected abstract header(): Record<string, unknown>;

  /** Fields describing the state at the start of a new chunk (`,"name":value`), or null; called as it starts. */
  protected chunkLead(): Promise<string> | null {
    return null;
  }

  /** False once a chunk could not be written (and until one can): the proxy should end the session. */
  get ok(): boolean {
    return this.failure === null;
  }

  get error(): AuditUnavailableError | null {
    return this.failure;
  }

  /** True once close() was called (its final chunk may still be on its way, or need a retry). */
  get isClosed(): boolean {
    return this.closed;
  }

  /** Events dropped because the spool refused chunks for longer than maxBufferedBytes lasted. */
  get dropped(): number {
    return this.droppedEvents;
  }

  /** Seconds since the start, as asciicast and transcripts count time. */
  protected elapsed(): number {
    return Math.round((this.clock() - this.startedMs) * 1000) / 1e6;
  }

  /** Whether pushed events are gathering in a chunk (false: the next push starts one). */
  protected get gathering(): boolean {
    return this.open !== null && this.open.events.length > 0;
  }

  /** Ends the chunk being gathered: the next event starts a new one, and this one is written now. */
  protected cut(): void {
    if (!this.gathering) return;
    this.open = null;
    void this.flush().catch(() => {});
  }

  /** Adds an event (its JSON text), with its exact bytes in base64 when its text is not them. */
  protected push(eventJson: string, rawBase64?: string): boolean {
    this.accepted = false;
    if (this.closed) return false;
    const size = eventJson.length + 1 + (rawBase64 === undefined ? 0 : rawBase64.length + 8);
    if (this.failure && this.queuedBytes + size > this.maxBufferedBytes) {
      this.droppedEvents++;
      return false;
    }
    let c = this.open;
    if (!c) {
      c = { events: [], bytes: 0, raw: null, lead: this.chunkLead() };
      this.open = c;
      this.queue.push(c);
    }
    if (rawBase64 !== undefined) {
      c.raw ??= [];
      c.raw.push(`[${c.events.length},"${rawBase64}"]`);
    }
    c.events.push(eventJson);
    c.bytes += size;
    this.queuedBytes += size;
    this.accepted = true;
    if (c.bytes >= this.chunkBytes) {
      // While a write is in flight what arrives gathers in the next chunk; past MAX_CHUNK_BYTES it starts another,
      // so that a fast stream behind a slow disk never makes a record larger than the spool takes.
      if (c.bytes >= this.maxChunkBytes) this.open = null;
      void this.flush().catch(() => {});
    } else if (!this.timer) {
      this.timer = setTimeout(() => {
        this.timer = null;
        void this.flush().catch(() => {});
      }, this.flushMs);
      this.timer.unref();
    }
    return this.failure === null;
  }

  /** Writes everything pushed so far; resolves once it is durable, rejects if the spool refused it. */
  async flush(final = false): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    // One chunk at a time, in order: wait for the write in flight, then write what has gathered since.
    while (this.writing) await this.writing.catch(() => {});
    if (this.queue.length === 0) {
      if (this.part > 0 && !final) return;
      // Part 0 (the header) or the final marker, without events.
      this.queue.push({ events: [], bytes: 0, raw: null, lead: this.part === 0 ? this.chunkLead() : null });
    }
    this.open = null; // what is pushed from now on goes into the next chunk
    const attempt = this.writeQueued(this.queue.length, final);
    this.writing = attempt
      .then(
        () => {},
        () => {},
      )
      .finally(() => {
        this.writing = null;
      });
    await attempt;
  }

  /** Writes the first `count` queued chunks, in order, each as one record; a refused one stays queued. */
  private async writeQueued(count: number, final: boolean): Promise<void> {
    for (let i = 0; i < count; i++) {
      const c = this.queue[0] as Chunk;
      const lead = c.lead ? await c.lead : "";
      const head = this.part === 0 ? `,"header":${JSON.stringify(this.header())}` : "";
      const raw = c.raw ? `,"raw":[${c.raw.join(",")}]` : "";
      const dropped = this.droppedEvents ? `,"dropped_events":${this.droppedEvents}` : "";
      const tail = final && i === count - 1 ? `,"final":true,"duration":${this.elapsed()}` : "";
      const body = `{"session_id":${JSON.stringify(this.sessionId)},"format":"${this.format}","part":${this.part},"timestamp":"${new Date().toISOString()}"${head}${lead},"events":[${c.events.join(",")}]${raw}${dropped}${tail}}`;
      try {
        await this.recordFn("recording", body);
      } catch (err) {
        // The chunk stays at the head of the queue, for the next attempt.
        const e =
          err instanceof AuditUnavailableError
            ? err
            : new AuditUnavailableError(`recording chunk not written: ${errorText(err)}`);
        if (!this.failure) this.options.onError?.(e);
        this.failure = e;
        if (!this.closed && !this.timer) {
          this.timer = setTimeout(() => {
            this.timer = null;
            void this.flush().catch(() => {});
          }, this.flushMs);
          this.timer.unref();
        }
        throw e;
      }
      this.queue.shift();
      this.queuedBytes -= c.bytes;
      this.part++;
      if (this.failure) this.failure = null;
    }
  }

  /** Writes the final chunk (with the duration). Rejects if it cannot be made durable; call again to retry. */
  async close(): Promise<void> {
    this.closed = true;
    await this.flush(true);
  }
}

export interface TerminalRecordingOptions extends RecordingOptions {
  width: number;
  height: number;
  title?: string;
  /** The command run, for an exec session. */
  command?: string;
  /** asciicast's env (e.g. TERM, SHELL). */
  env?: Record<string, string>;
  /** Limit idle time on playback (asciicast idle_time_limit), in seconds. */
  idleTimeLimit?: number;
  /**
   * Keep a headless terminal emulator fed with the output and start chunks with keyframes (the screen as ANSI
   * that repaints it), at most KEYFRAME_BYTES of output or KEYFRAME_MS apart. For sessions with a pty.
   */
  keyframes?: boolean;
}

/** Output between keyframes, at most (an event larger than this alone is the exception). */
export const KEYFRAME_BYTES = 256 * 1024;
/** Time between keyframes, at most (while there are events). */
export const KEYFRAME_MS = 10_000;
/** An emulator this far behind the output (UTF-16 units not yet parsed) stops: keyframes end, recording goes on. */
const MAX_EMULATOR_BACKLOG = 32 * 1024 * 1024;

/** An event's data: its text and, when the bytes were not valid UTF-8, the exact bytes in base64. */
interface Piece {
  text: string;
  raw?: string;
  bytes: number;
}

/**
 * Length of `b` up to its last whole UTF-8 character: what follows is the start of a character whose other bytes
 * have not arrived. Bytes that can never start one (continuations without a lead, 0xC0, 0xC1, 0xF5–0xFF) are not
 * held back.
 */
export function utf8CompleteLength(b: Uint8Array): number {
  const n = b.length;
  for (let i = n - 1; i >= 0 && i >= n - 4; i--) {
    const c = b[i] as number;
    if ((c & 0xc0) === 0x80) continue; // a continuation byte: look further back for its lead
    const need = c < 0xc2 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : c < 0xf5 ? 4 : 1;
    return n - i < need ? i : n;
  }
  return n;
}

function piece(b: Buffer): Piece {
  const text = b.toString("utf8");
  return isUtf8(b) ? { text, bytes: b.length } : { text, raw: b.toString("base64"), bytes: b.length };
}

/** Bytes → event data, cut at whole UTF-8 characters (a split character waits for its other bytes). */
class ByteText {
  private tail: Buffer | null = null;

  take(data: Uint8Array): Piece | null {
    let b = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    if (this.tail) {
      b = Buffer.concat([this.tail, b]);
      this.tail = null;
    }
    const n = utf8CompleteLength(b);
    if (n < b.length) {
      this.tail = Buffer.from(b.subarray(n)); // a copy: the caller may reuse its buffer
      b = b.subarray(0, n);
    }
    return b.length === 0 ? null : piece(b);
  }

  /** What is held back (an incomplete character at the end of the stream), as is. */
  end(): Piece | null {
    const t = this.tail;
    this.tail = null;
    return t ? piece(t) : null;
  }
}

type XtermModules = {
  Terminal: typeof Terminal;
  SerializeAddon: typeof SerializeAddon;
};
let xterm: XtermModules | null = null;

/** @xterm/headless and its serialize addon, loaded the first time a keyframed recording starts. */
function loadXterm(): XtermModules {
  if (!xterm) {
    const require = createRequire(import.meta.url);
    xterm = {
      Terminal: (require("@xterm/headless") as { Terminal: typeof Terminal }).Terminal,
      SerializeAddon: (require("@xterm/addon-serialize") as { SerializeAddon: typeof SerializeAddon })
        .SerializeAddon,
    };
  }
  return xterm;
}

const clampSize = (n: number, max: number) => Math.min(max, Math.max(1, Math.trunc(n) || 1));

/**
 * The screen a player would show, for keyframes: a headless xterm.js fed the event texts. Its writes are parsed
 * asynchronously, in order; a keyframe, a resize and the disposal are queued behind the output before them (an
 * empty write's callback runs once everything written before it is parsed, before anything after).
 */
class Screen {
  private readonly term: Terminal;
  private readonly serializer: SerializeAddon;
  private sinceBytes = 0;
  private lastMs = 0;
  private keyed = false;
  private backlog = 0;
  /** Why keyframes stopped, to be said once in the next chunk. */
  private stopNote: string | null = null;
  private stopped = false;
  private disposed = false;

  constructor(width: number, height: number) {
    const { Terminal, SerializeAddon } = loadXterm();
    this.term = new Terminal({
      cols: clampSize(width, 1000),
      rows: clampSize(height, 500),
      scrollback: 0, // a keyframe is the screen; what scrolled off is in the events before it
      allowProposedApi: true,
    });
    this.serializer = new SerializeAddon();
    // The addon's typings name @xterm/xterm's Terminal; the headless one has the same API.
    this.term.loadAddon(this.serializer as unknown as Parameters<Terminal["loadAddon"]>[0]);
  }

  /** Whether a keyframe is due before `bytes` more output at `nowMs`. */
  due(bytes: number, nowMs: number): boolean {
    if (this.stopped) return false;
    return !this.keyed || this.sinceBytes + bytes > KEYFRAME_BYTES || nowMs - this.lastMs >= KEYFRAME_MS;
  }

  write(text: string, bytes: number): void {
    if (this.stopped) return;
    this.sinceBytes += bytes;
    if (this.backlog + text.length > MAX_EMULATOR_BACKLOG) {
      this.stopped = true;
      this.stopNote = `the terminal emulator fell ${Math.round(this.backlog / 1048576)} MiB behind the output; no more keyframes`;
      return;
    }
    this.backlog += text.length;
    this.term.write(text, () => {
      this.backlog -= text.length;
    });
  }

  resize(width: number, height: number): void {
    if (this.stopped) return;
    this.term.write("", () => this.term.resize(clampSize(width, 1000), clampSize(height, 500)));
  }

  /** The lead of a chunk starting now: a keyframe if one is due, the note that keyframes stopped, or null. */
  lead(t: number, nowMs: number, bytes: number): Promise<string> | null {
    if (this.stopNote) {
      const note = `,"keyframes_stopped":${JSON.stringify(this.stopNote)}`;
      this.stopNote = null;
      return Promise.resolve(note);
    }
    if (!this.due(bytes, nowMs)) return null;
    this.keyed = true;
    this.sinceBytes = 0;
    this.lastMs = nowMs;
    return new Promise((resolve) => {
      // Never rejects: a chunk waits for its lead, and a keyframe that cannot be made must not hold it back.
      const failed = (err: unknown) => resolve(`,"keyframe_error":${JSON.stringify(errorText(err))}`);
      try {
        this.term.write("", () => {
          try {
            const screen = this.serializer.serialize({ scrollback: 0 });
            const { cols, rows } = this.term;
            resolve(
              `,"keyframe":{"t":${t},"width":${cols},"height":${rows},"screen":${JSON.stringify(screen)}}`,
            );
          } catch (err) {
            failed(err);
          }
        });
      } catch (err) {
        failed(err);
      }
    });
  }

  /** Frees the emulator once everything queued before (keyframes in particular) is done. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.stopped = true;
    this.term.write("", () => this.term.dispose());
  }
}

/** An asciicast v2 recording of a terminal session (SSH shell, kubectl exec -it). */
export class TerminalRecording extends Recording {
  private readonly outText = new ByteText();
  private readonly inText = new ByteText();
  private readonly screen: Screen | null;
  /** Output bytes of the event being pushed, for the keyframe decision of a chunk it starts. */
  private pushingOutput = 0;

  constructor(
    recordFn: RecordFn,
    sessionId: string,
    private readonly terminal: TerminalRecordingOptions,
  ) {
    super(recordFn, sessionId, "asciicast-v2", terminal);
    this.screen = terminal.keyframes ? new Screen(terminal.width, terminal.height) : null;
  }

  protected header(): Record<string, unknown> {
    const h: Record<string, unknown> = {
      version: 2,
      width: this.terminal.width,
      height: this.terminal.height,
      timestamp: Math.floor(this.startedAt.getTime() / 1000),
    };
    if (this.terminal.idleTimeLimit !== undefined) h.idle_time_limit = this.terminal.idleTimeLimit;
    if (this.terminal.command !== undefined) h.command = this.terminal.command;
    if (this.terminal.title !== undefined) h.title = this.terminal.title;
    if (this.terminal.env !== undefined) h.env = this.terminal.env;
    return h;
  }

  protected override chunkLead(): Promise<string> | null {
    return this.screen?.lead(this.elapsed(), this.clock(), this.pushingOutput) ?? null;
  }

  /** Pushes one event; with keyframes, first cuts the chunk when one is due before `outputBytes` more output. */
  private event(code: string, p: Piece, outputBytes = 0): boolean {
    const s = this.screen;
    if (!s) return this.push(`[${this.elapsed()},"${code}",${JSON.stringify(p.text)}]`, p.raw);
    if (this.gathering && s.due(outputBytes, this.clock())) this.cut();
    this.pushingOutput = outputBytes;
    const ok = this.push(`[${this.elapsed()},"${code}",${JSON.stringify(p.text)}]`, p.raw);
    this.pushingOutput = 0;
    if (this.accepted && code === "o") s.write(p.text, outputBytes);
    return ok;
  }

  /**
   * What the terminal showed (target → user). Bytes are cut at whole UTF-8 characters (a character split across
   * reads waits for the rest); bytes that are not UTF-8 are kept exactly beside the event's text.
   */
  output(data: string | Uint8Array): boolean {
    const p =
      typeof data === "string"
        ? data
          ? { text: data, bytes: this.screen ? Buffer.byteLength(data) : 0 }
          : null
        : this.outText.take(data);
    return p ? this.event("o", p, p.bytes) : this.ok;
  }

  /** What the user typed (user → target), kept like the output. */
  input(data: string | Uint8Array): boolean {
    const p = typeof data === "string" ? (data ? { text: data, bytes: 0 } : null) : this.inText.take(data);
    return p ? this.event("i", p) : this.ok;
  }

  /** The terminal was resized (asciicast "r" event, "COLSxROWS"). */
  resize(width: number, height: number): boolean {
    const ok = this.event("r", { text: `${Math.trunc(width)}x${Math.trunc(height)}`, bytes: 0 });
    if (this.accepted) this.screen?.resize(width, height);
    return ok;
  }

  /** A marker (asciicast "m" event), e.g. the decision id of a command typed in the shell. */
  marker(label: string): boolean {
    return this.event("m", { text: label, bytes: 0 });
  }

  /** Writes what is held back (an incomplete character at the end), then the final chunk. */
  override async close(): Promise<void> {
    if (!this.isClosed) {
      const out = this.outText.end();
      if (out) this.event("o", out, out.bytes);
      const typed = this.inText.end();
      if (typed) this.event("i", typed);
    }
    await super.close();
    this.screen?.dispose();
  }
}

export interface TranscriptOptions extends RecordingOptions {
  /** Free-form header fields: protocol, resource, identity summary, … (never secrets). */
  meta?: Record<string, unknown>;
}

/**
 * A JSON-lines transcript of a statement- or request-based session. Entries are whatever the adapter passes,
 * e.g. {"type": "statement", "decision_id": "…", "action": "allow", "statement": "select", "rows": 3} — like the
 * decision log, an entry must never contain bind values or literals the policy did not see.
 */
export class TranscriptRecording extends Recording {
  constructor(
    recordFn: RecordFn,
    sessionId: string,
    private readonly transcript: TranscriptOptions = {},
  ) {
    super(recordFn, sessionId, "jsonl", transcript);
  }

  protected header(): Record<string, unknown> {
    return {
      version: 1,
      session_id: this.sessionId,
      started_at: this.startedAt.toISOString(),
      ...this.transcript.meta,
    };
  }

  /** Appends one entry; `t` (seconds since the start) is added in front. */
  entry(entry: Record<string, unknown>): boolean {
    const json = JSON.stringify(entry);
    return this.push(json === "{}" ? `{"t":${this.elapsed()}}` : `{"t":${this.elapsed()},${json.slice(1)}`);
  }
}
