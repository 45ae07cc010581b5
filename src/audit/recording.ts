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
// Chunks are written one at a time, in order. When the spool refuses one (full, unwritable) its events stay
// buffered and go out with the next attempt, so a recording has no holes; `ok` turns false and `error` says why,
// so the proxy can stop the session (pushing more while !ok is allowed up to maxBufferedBytes, then dropped).

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

abstract class Recording {
  private events: string[] = [];
  private bufferedBytes = 0;
  private part = 0;
  private timer: NodeJS.Timeout | null = null;
  private writing: Promise<void> | null = null;
  private closed = false;
  private failure: AuditUnavailableError | null = null;
  private droppedEvents = 0;
  private readonly flushMs: number;
  private readonly chunkBytes: number;
  private readonly maxBufferedBytes: number;
  protected readonly clock: () => number;
  protected readonly startedMs: number;
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
    this.maxBufferedBytes = options.maxBufferedBytes ?? 8 * 1024 * 1024;
    this.clock = options.now ?? (() => performance.now());
    this.startedMs = this.clock();
    this.startedAt = new Date();
  }

  /** The header object of part 0. */
  protected abstract header(): Record<string, unknown>;

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

  protected push(eventJson: string): boolean {
    if (this.closed) return false;
    if (this.failure && this.bufferedBytes + eventJson.length > this.maxBufferedBytes) {
      this.droppedEvents++;
      return false;
    }
    this.events.push(eventJson);
    this.bufferedBytes += eventJson.length + 1;
    if (this.bufferedBytes >= this.chunkBytes) void this.flush().catch(() => {});
    else if (!this.timer) {
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
    // One chunk at a time, in order: wait for the one in flight, then write what has gathered since.
    while (this.writing) await this.writing.catch(() => {});
    if (this.events.length === 0 && this.part > 0 && !final) return;
    const events = this.events;
    const bytes = this.bufferedBytes;
    this.events = [];
    this.bufferedBytes = 0;
    const head = this.part === 0 ? `,"header":${JSON.stringify(this.header())}` : "";
    const tail = final ? `,"final":true,"duration":${this.elapsed()}` : "";
    const body = `{"session_id":${JSON.stringify(this.sessionId)},"format":"${this.format}","part":${this.part},"timestamp":"${new Date().toISOString()}"${head},"events":[${events.join(",")}]${this.droppedEvents ? `,"dropped_events":${this.droppedEvents}` : ""}${tail}}`;
    const attempt = this.recordFn("recording", body).then(
      () => {
        this.part++;
        if (this.failure) this.failure = null;
      },
      (err: unknown) => {
        // Keep the events (in front of anything pushed meanwhile) for the next attempt.
        this.events = events.concat(this.events);
        this.bufferedBytes += bytes;
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
      },
    );
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
}

/** An asciicast v2 recording of a terminal session (SSH shell, kubectl exec -it). */
export class TerminalRecording extends Recording {
  private readonly outDecoder = new TextDecoder("utf-8", { fatal: false });
  private readonly inDecoder = new TextDecoder("utf-8", { fatal: false });

  constructor(
    recordFn: RecordFn,
    sessionId: string,
    private readonly terminal: TerminalRecordingOptions,
  ) {
    super(recordFn, sessionId, "asciicast-v2", terminal);
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

  /** What the terminal showed (target → user). Bytes are decoded as UTF-8 across chunk boundaries. */
  output(data: string | Uint8Array): boolean {
    const text = typeof data === "string" ? data : this.outDecoder.decode(data, { stream: true });
    return text ? this.push(`[${this.elapsed()},"o",${JSON.stringify(text)}]`) : this.ok;
  }

  /** What the user typed (user → target). */
  input(data: string | Uint8Array): boolean {
    const text = typeof data === "string" ? data : this.inDecoder.decode(data, { stream: true });
    return text ? this.push(`[${this.elapsed()},"i",${JSON.stringify(text)}]`) : this.ok;
  }

  /** The terminal was resized (asciicast "r" event, "COLSxROWS"). */
  resize(width: number, height: number): boolean {
    return this.push(`[${this.elapsed()},"r","${Math.trunc(width)}x${Math.trunc(height)}"]`);
  }

  /** A marker (asciicast "m" event), e.g. the decision id of a command typed in the shell. */
  marker(label: string): boolean {
    return this.push(`[${this.elapsed()},"m",${JSON.stringify(label)}]`);
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
