// Draining the spool into a sink, at least once. Each sink has its own cursor (the seq of the last record it has
// acknowledged) in <spool>/cursors/<name>.json, written after every acknowledged batch. A batch the sink did not
// acknowledge is sent again — after a restart too — with exponential backoff; meanwhile the records wait in the
// spool (which refuses new ones once it is full, rather than dropping any).
import * as fsp from "node:fs/promises";
import { join } from "node:path";
import { errorText } from "../util/errors.js";
import { type Logger, silentLogger } from "../util/log.js";
import { SpoolReader } from "./reader.js";
import type { SpoolRecord } from "./record.js";
import type { Spool } from "./spool.js";
import { writeAtomic } from "./spool-layout.js";

/** Where records go. send() resolves once the sink has them (acknowledged), and throws otherwise. */
export interface Sink {
  /** Stable name: the cursor file is named after it. */
  readonly name: string;
  /** For logs and status; never contains credentials. */
  readonly description: string;
  readonly maxBatchRecords: number;
  readonly maxBatchBytes: number;
  /** Records of other kinds are skipped (the cursor moves past them). */
  accepts(kind: string): boolean;
  send(records: SpoolRecord[]): Promise<void>;
  close(): Promise<void>;
}

export interface Cursor {
  spool_id: string;
  seq: number;
  hash: string | null;
  updated_at: string;
}

export interface ShipperStatus {
  name: string;
  sink: string;
  shipped_seq: number;
  /** Durable records not yet acknowledged by the sink. */
  lag: number;
  failures: number;
  last_error: string | null;
  last_success: string | null;
}

export interface BackoffOptions {
  initialMs?: number;
  maxMs?: number;
}

export function cursorPath(dir: string, name: string): string {
  return join(dir, "cursors", `${name}.json`);
}

export async function readCursor(dir: string, name: string, spoolId: string): Promise<Cursor | null> {
  try {
    const c = JSON.parse(await fsp.readFile(cursorPath(dir, name), "utf8")) as Cursor;
    if (c.spool_id !== spoolId || !Number.isSafeInteger(c.seq) || c.seq < 0) return null;
    return c;
  } catch {
    return null;
  }
}

export class Shipper {
  private reader: SpoolReader | null = null;
  private shipped = 0;
  private failures = 0;
  private lastError: string | null = null;
  private lastSuccess: string | null = null;
  private stopped = false;
  private running: Promise<void> | null = null;
  private wake: (() => void) | null = null;
  private unsubscribe: (() => void) | null = null;
  private waiters: Array<{ seq: number; resolve: () => void }> = [];
  private readonly log: Logger;

  constructor(
    private readonly spool: Spool,
    readonly sink: Sink,
    private readonly options: {
      logger?: Logger;
      backoff?: BackoffOptions;
      /** After every acknowledged batch, with the new cursor. */
      onAdvance?: (seq: number) => void;
    } = {},
  ) {
    this.log = (options.logger ?? silentLogger).child({ sink: sink.name });
  }

  get shippedSeq(): number {
    return this.shipped;
  }

  async start(): Promise<void> {
    const spoolId = this.spool.id;
    if (!spoolId) throw new Error("the audit spool is not open");
    const cursor = await readCursor(this.spool.dir, this.sink.name, spoolId);
    const first = this.spool.segmentList()[0];
    // A new sink starts at the oldest record still in the spool.
    this.shipped = cursor?.seq ?? Math.max(0, (first?.firstSeq ?? 1) - 1);
    this.reader = new SpoolReader(this.spool, this.shipped);
    this.unsubscribe = this.spool.onCommit(() => this.wake?.());
    this.running = this.loop();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribe?.();
    this.wake?.();
    await this.running;
    for (const w of this.waiters) w.resolve();
    this.waiters = [];
    await this.sink.close().catch(() => {});
  }

  status(): ShipperStatus {
    return {
      name: this.sink.name,
      sink: this.sink.description,
      shipped_seq: this.shipped,
      lag: Math.max(0, this.spool.lastSeq - this.shipped),
      failures: this.failures,
      last_error: this.lastError,
      last_success: this.lastSuccess,
    };
  }

  /** Resolves true once the sink has acknowledged `seq`, false after `timeoutMs` (or when stopped). */
  waitFor(seq: number, timeoutMs: number): Promise<boolean> {
    if (this.shipped >= seq) return Promise.resolve(true);
    return new Promise((resolve) => {
      const entry = { seq, resolve: () => resolve(this.shipped >= seq) };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== entry);
        resolve(false);
      }, timeoutMs);
      timer.unref();
      this.waiters.push({
        seq,
        resolve: () => {
          clearTimeout(timer);
          entry.resolve();
        },
      });
    });
  }

  private async loop(): Promise<void> {
    const reader = this.reader as SpoolReader;
    while (!this.stopped) {
      let batch: SpoolRecord[];
      try {
        batch = await reader.read(this.sink.maxBatchRecords, this.sink.maxBatchBytes);
      } catch (err) {
        this.fail(`reading the spool: ${errorText(err)}`);
        await this.sleep(this.backoff());
        continue;
      }
      if (batch.length === 0) {
        if (this.spool.lastSeq <= reader.position) await this.idle();
        continue;
      }
      const toSend = batch.filter((r) => this.sink.accepts(r.kind));
      const last = batch[batch.length - 1] as SpoolRecord;
      let sent = false;
      while (!this.stopped && !sent) {
        try {
          if (toSend.length > 0) await this.sink.send(toSend);
          sent = true;
        } catch (err) {
          this.fail(errorText(err));
          await this.sleep(this.backoff());
        }
      }
      if (!sent) return; // stopped before the sink acknowledged: sent again next time
      await this.advance(last);
    }
  }

  private async advance(last: SpoolRecord): Promise<void> {
    const cursor: Cursor = {
      spool_id: this.spool.id as string,
      seq: last.seq,
      hash: last.hash,
      updated_at: new Date().toISOString(),
    };
    try {
      await writeAtomic(cursorPath(this.spool.dir, this.sink.name), `${JSON.stringify(cursor)}\n`);
    } catch (err) {
      // The sink has the records; losing the cursor only means sending them again after a restart.
      this.log.warn({ err: errorText(err) }, "audit shipper cannot save its cursor");
    }
    if (this.failures > 0) this.log.info({ after_failures: this.failures }, "audit sink reachable again");
    this.failures = 0;
    this.lastError = null;
    this.lastSuccess = cursor.updated_at;
    this.shipped = last.seq;
    const ready = this.waiters.filter((w) => w.seq <= this.shipped);
    this.waiters = this.waiters.filter((w) => w.seq > this.shipped);
    for (const w of ready) w.resolve();
    this.options.onAdvance?.(this.shipped);
  }

  private fail(message: string): void {
    this.failures++;
    this.lastError = message;
    // Log the first failure and then every 10th, so an outage does not flood the log.
    if (this.failures === 1 || this.failures % 10 === 0) {
      this.log.warn(
        { err: message, failures: this.failures },
        "audit sink failed; records stay in the spool",
      );
    }
  }

  private backoff(): number {
    const initial = this.options.backoff?.initialMs ?? 200;
    const max = this.options.backoff?.maxMs ?? 30_000;
    const base = Math.min(max, initial * 2 ** Math.min(this.failures - 1, 20));
    return base / 2 + Math.random() * (base / 2);
  }

  private idle(): Promise<void> {
    return new Promise((resolve) => {
      this.wake = () => {
        this.wake = null;
        resolve();
      };
      if (this.stopped || this.spool.lastSeq > (this.reader?.position ?? 0)) this.wake();
    });
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.wake = null;
        resolve();
      }, ms);
      // stop() interrupts a backoff; a new commit does not.
      this.wake = () => {
        if (!this.stopped) return;
        clearTimeout(timer);
        this.wake = null;
        resolve();
      };
    });
  }
}
