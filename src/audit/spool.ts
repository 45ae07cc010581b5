// The durable local spool: append-only segment files of hash-chained records (see record.ts), written with
// group commit. record() queues the record; one writer turns everything queued into one buffer, writes it with
// one write and makes it durable with one fdatasync, then resolves every promise in the batch. So a proxy that
// awaits record() before forwarding a command has its decision on disk first ("record before forward"), and
// 256 concurrent sessions cost one fsync per batch, not 256.
//
// The directory layout and the read helpers are in spool-layout.ts, start-up recovery in spool-recovery.ts.
//
// Faults: a full spool (maxBytes), a directory that cannot be written, a failing write or fsync — each rejects
// the records concerned with AuditUnavailableError naming the cause, and nothing is half-written: a failed batch
// is cut off again (ftruncate) and its sequence numbers are reused. The next record tries again, so the spool
// resumes by itself when space returns. At start-up a torn last record (a crash mid-write) is cut off; corruption
// anywhere else makes the spool refuse to write (fail closed) until someone looks at it.
import * as fsp from "node:fs/promises";
import { join } from "node:path";
import { metrics } from "../metrics.js";
import { errorText } from "../util/errors.js";
import { type Logger, silentLogger } from "../util/log.js";
import { acquirePidLock, LockHeldError } from "../util/pid-lock.js";
import { AuditUnavailableError, errnoCode } from "./errors.js";
import { nodeIo, type SpoolIo } from "./io.js";
import { encodeInto, genesisHash, KIND_PATTERN } from "./record.js";
import {
  ANCHOR_FILE,
  LOCK_FILE,
  lastRecordOf,
  listSegmentFiles,
  MAX_BATCH_BYTES,
  MAX_UNSYNCED_BYTES,
  readAnchor,
  readOrCreateMeta,
  type SegmentInfo,
  segmentName,
  writeAtomic,
} from "./spool-layout.js";
import { recoverSegment } from "./spool-recovery.js";

export interface SpoolOptions {
  dir: string;
  /** Total bytes of segment files; beyond it new records are refused ("audit spool full"). Default 1 GiB. */
  maxBytes?: number;
  /** A segment is sealed and a new one started once it reaches this size. Default 64 MiB, at most maxBytes/4. */
  segmentBytes?: number;
  /**
   * Largest batch written at once; default and maximum 1 MiB. Smaller batches let the write of the next batch
   * overlap the fdatasync of the previous one more often (more records/s) but make records wait for two
   * fdatasyncs more often (a longer tail): at 256 concurrent writers, 256 KiB gave ~1.4× the records/s and
   * ~2× the p99 of 1 MiB on the 2-core test VM.
   */
  batchBytes?: number;
  /** Largest single record. Default 4 MiB. */
  maxRecordBytes?: number;
  /** How long an unavailable spool (unwritable directory, corrupt segment) waits before trying to open again. */
  retryMs?: number;
  logger?: Logger;
  /** The file operations of the write path; tests replace them to simulate ENOSPC and friends. */
  io?: SpoolIo;
}

export interface AuditReceipt {
  seq: number;
  hash: string;
}

/**
 * What recordWritten() resolves with: the record is in the operating system (it survives the gateway process
 * dying, `kill -9` included) but not yet fdatasync'd. `durable` resolves once it is on disk, or rejects with
 * AuditUnavailableError when the disk refused it — then the caller must not release the command's result.
 */
export interface WrittenReceipt extends AuditReceipt {
  durable: Promise<void>;
}

export interface SpoolStatus {
  dir: string;
  spool_id: string | null;
  available: boolean;
  /** Why records are refused right now (full, unwritable, corrupt), or null. */
  reason: string | null;
  used_bytes: number;
  max_bytes: number;
  segments: number;
  last_seq: number;
  last_hash: string | null;
}

interface Pending {
  kind: string;
  body: string;
  size: number;
  /** Resolved once written to the OS (recordWritten) rather than once durable (record). */
  ackOnWrite: boolean;
  resolve: (r: AuditReceipt | WrittenReceipt) => void;
  reject: (e: Error) => void;
}

/** One promise shared by every write-acknowledged record of a batch: settled by the batch's fdatasync. */
class Durable {
  readonly promise: Promise<void>;
  resolve!: () => void;
  reject!: (e: Error) => void;
  constructor() {
    this.promise = new Promise<void>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    // A caller that never awaits it must not turn a failed sync into an unhandled rejection.
    this.promise.catch(() => {});
  }
}

interface Batch {
  items: Pending[];
  hashes: string[];
  /** seq before the batch's first record. */
  startSeq: number;
  /** seq of its last record (the seal, if it has one). */
  endSeq: number;
  lastHash: string;
  bytes: number;
  sealed: boolean;
  /** Set when some of its records were acknowledged at write: their callers hold results until it settles. */
  durable: Durable | null;
}

/** Room for a seal record at the end of a batch. */
const SEAL_RESERVE = 1024;

/** Fixed bytes of a record line besides body and kind: `{"seq":…,"kind":"","prev":"…","body":,"hash":"…"}\n`. */
const RECORD_OVERHEAD = 175 + 16;

const ENV_ERRORS = new Set([
  "EACCES",
  "EPERM",
  "EROFS",
  "ENOSPC",
  "EDQUOT",
  "EIO",
  "ENOTDIR",
  "ENOENT",
  "EEXIST",
  "EISDIR",
  "EMFILE",
  "ENFILE",
]);

export class Spool {
  readonly dir: string;
  readonly maxBytes: number;
  readonly segmentBytes: number;
  readonly maxRecordBytes: number;
  private readonly batchBytes: number;
  private readonly retryMs: number;
  private readonly log: Logger;
  private readonly io: SpoolIo;

  private spoolId: string | null = null;
  private segments: SegmentInfo[] = [];
  private fd = -1;
  private seq = 0;
  private lastHash = "";
  private usedBytes = 0;

  private queue: Pending[] = [];
  /** Bytes of records accepted but not yet durable or refused: counted against maxBytes. */
  private reservedBytes = 0;
  /** A record was refused for lack of room, and nothing has been freed or accepted since. */
  private refusedFull = false;

  // The write stage: builds batches from the queue and writes them at `writeOffset`, chaining from
  // `writeSeq`/`writeHash` — ahead of what is durable — but not while an fdatasync runs (what arrives meanwhile
  // gathers into the next batch). The sync stage: one fdatasync for everything written so far, then the batches
  // it covers are committed and their promises resolved.
  private writing = false;
  private scheduled = false;
  private currentWrite: Promise<unknown> | null = null;
  private writeSeq = 0;
  private writeHash = "";
  private writeOffset = 0;
  private unsynced: Batch[] = [];
  private unsyncedBytes = 0;
  private syncing = false;
  /** Incremented when a sync fails: batches written before it learn that they were rolled back. */
  private generation = 0;
  private syncWaiters: Array<() => void> = [];
  private idleWaiters: Array<() => void> = [];
  /** Bytes after the durable end that could not be cut off yet: truncated before the next write. */
  private dirtyTail = false;
  /** The active segment is sealed (its seal is written): the next write goes to a new segment. */
  private needsRotation = false;

  private unavailable: AuditUnavailableError | null = null;
  /**
   * The last write's failure (a full disk, an I/O error), until a write succeeds or, for a full disk, room is
   * seen again. The spool stays open — the next write may succeed — but its status says it cannot record, so
   * readiness drops and a load balancer stops sending work while every command is being blocked.
   */
  private writeFailure: AuditUnavailableError | null = null;
  private writeProbe: NodeJS.Timeout | null = null;
  private retryAt = 0;
  private opening: Promise<void> | null = null;
  private closed = false;
  private unlock: (() => void) | null = null;
  private readonly commitListeners = new Set<(lastSeq: number) => void>();
  private readonly flushNow = () => void this.writeLoop();

  private constructor(options: SpoolOptions) {
    this.dir = options.dir;
    this.maxBytes = options.maxBytes ?? 1024 ** 3;
    if (!(this.maxBytes >= 64 * 1024)) throw new RangeError("audit spool maxBytes must be at least 64 KiB");
    this.segmentBytes = Math.max(
      16 * 1024,
      Math.min(options.segmentBytes ?? 64 * 1024 ** 2, Math.floor(this.maxBytes / 4)),
    );
    this.maxRecordBytes = Math.min(options.maxRecordBytes ?? 4 * 1024 ** 2, this.segmentBytes);
    this.batchBytes = Math.max(1, Math.min(options.batchBytes ?? MAX_BATCH_BYTES, MAX_BATCH_BYTES));
    this.retryMs = options.retryMs ?? 1000;
    this.log = options.logger ?? silentLogger;
    this.io = options.io ?? nodeIo;
  }

  /**
   * Opens (creating if needed) the spool in `options.dir`. Never fails because of the environment: a spool that
   * cannot be used yet is returned unavailable — record() rejects with the reason and tries again later.
   */
  static async open(options: SpoolOptions): Promise<Spool> {
    const spool = new Spool(options);
    await spool.tryOpen();
    return spool;
  }

  get id(): string | null {
    return this.spoolId;
  }

  get lastSeq(): number {
    return this.seq;
  }

  /** The hash the first record of this spool chains from. */
  get genesis(): string | null {
    return this.spoolId ? genesisHash(this.spoolId) : null;
  }

  status(): SpoolStatus {
    const full = this.refusedFull || this.usedBytes + this.reservedBytes >= this.maxBytes - RECORD_OVERHEAD;
    return {
      dir: this.dir,
      spool_id: this.spoolId,
      available: !this.unavailable && !this.writeFailure && !full,
      reason: this.unavailable?.reason ?? this.writeFailure?.reason ?? (full ? this.fullReason() : null),
      used_bytes: this.usedBytes,
      max_bytes: this.maxBytes,
      segments: this.segments.length,
      last_seq: this.seq,
      last_hash: this.lastHash || null,
    };
  }

  /** The segments as they are now (durable sizes only), oldest first. */
  segmentList(): readonly SegmentInfo[] {
    return this.segments;
  }

  /** Called after every durable batch with the last durable seq. Returns an unsubscribe function. */
  onCommit(listener: (lastSeq: number) => void): () => void {
    this.commitListeners.add(listener);
    return () => this.commitListeners.delete(listener);
  }

  /**
   * Appends one record; resolves once it is durable (written and fdatasync'd), with its seq and hash. Rejects with
   * AuditUnavailableError when it cannot be made durable: the caller must then not act as if it were recorded.
   * `body` is the record body as JSON text (serialized once by the caller).
   */
  record(kind: string, body: string): Promise<AuditReceipt> {
    return this.enqueue(kind, body, false);
  }

  /**
   * Appends one record; resolves once it is written to the operating system — before its fdatasync, which the
   * receipt's `durable` promise follows. For the `write` durability level: the command may go ahead once this
   * resolves (a crash of this process loses nothing the OS has), its result only once `durable` resolves.
   */
  recordWritten(kind: string, body: string): Promise<WrittenReceipt> {
    return this.enqueue(kind, body, true) as Promise<WrittenReceipt>;
  }

  private enqueue(kind: string, body: string, ackOnWrite: boolean): Promise<AuditReceipt> {
    if (this.closed) return Promise.reject(new AuditUnavailableError("audit spool is closed"));
    if (!KIND_PATTERN.test(kind)) return Promise.reject(new TypeError(`invalid audit record kind "${kind}"`));
    if (this.unavailable) return this.recordWhenUnavailable(kind, body, ackOnWrite);
    const size = Buffer.byteLength(body) + RECORD_OVERHEAD + kind.length;
    if (size > this.maxRecordBytes) {
      return Promise.reject(
        new AuditUnavailableError(`audit record too large: ${size} bytes (at most ${this.maxRecordBytes})`),
      );
    }
    if (this.usedBytes + this.reservedBytes + size > this.maxBytes) {
      this.refusedFull = true;
      return Promise.reject(new AuditUnavailableError(this.fullReason(), "ENOSPC"));
    }
    return new Promise<AuditReceipt>((resolve, reject) => {
      this.queue.push({ kind, body, size, ackOnWrite, resolve, reject });
      this.reservedBytes += size;
      if (!this.writing && !this.scheduled) {
        this.scheduled = true;
        setImmediate(this.flushNow);
      }
    });
  }

  private fullReason(): string {
    return `audit spool full: ${this.usedBytes + this.reservedBytes} bytes of ${this.maxBytes}`;
  }

  private async recordWhenUnavailable(
    kind: string,
    body: string,
    ackOnWrite: boolean,
  ): Promise<AuditReceipt> {
    if (Date.now() >= this.retryAt) await this.tryOpen();
    if (this.unavailable) throw this.unavailable;
    return this.enqueue(kind, body, ackOnWrite);
  }

  /** Tries to open an unavailable spool again (at most every retryMs); resolves whether it is open. */
  async ensureOpen(): Promise<boolean> {
    if (this.closed) return false;
    if (this.unavailable && Date.now() >= this.retryAt) await this.tryOpen();
    return this.unavailable === null;
  }

  /** Resolves when everything queued so far is durable (or refused). */
  async idle(): Promise<void> {
    while (this.writing || this.scheduled || this.syncing || this.queue.length > 0) {
      await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    }
  }

  private wakeIdle(): void {
    if (this.writing || this.scheduled || this.syncing || this.queue.length > 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.idle();
    this.closed = true;
    this.clearWriteFailure();
    if (this.fd >= 0) {
      await this.io.close(this.fd).catch(() => {});
      this.fd = -1;
    }
    this.unlock?.();
    this.unlock = null;
  }

  // ---- the writer -------------------------------------------------------------------------------------------

  private async writeLoop(): Promise<void> {
    this.scheduled = false;
    if (this.writing) return;
    this.writing = true;
    try {
      while (this.queue.length > 0) {
        // Unavailable: closed, never opened, or a failed sync of write-acknowledged records (see rollBack), which
        // waits for the spool to be opened again from what is on disk.
        if (this.closed || this.fd < 0 || this.unavailable) {
          this.refuse(
            this.takeQueue(),
            this.unavailable ?? new AuditUnavailableError("audit spool is closed"),
          );
          continue;
        }
        while (this.rollingBack) await this.rollingBack;
        // Bound what is written but not yet durable (also bounds what a power loss can tear at the end).
        while (this.unsyncedBytes >= MAX_UNSYNCED_BYTES) await this.nextSync();
        if (this.dirtyTail || this.needsRotation) {
          await this.syncIdle();
          try {
            if (this.dirtyTail) {
              await this.io.ftruncate(this.fd, this.active.bytes);
              this.dirtyTail = false;
            }
            if (this.needsRotation) await this.rotate();
          } catch (err) {
            this.refuse(this.takeQueue(), this.ioError("audit spool cannot be written", err));
            continue;
          }
        }
        // Group commit: what arrives while an fdatasync runs waits for it, then goes out as one write that the
        // next fdatasync covers — one write and one fdatasync per round, however the records trickle in. Except
        // records acknowledged at write: their commands wait for the write alone, so it happens now, and the next
        // fdatasync covers it all the same.
        if (this.syncing && !this.queue.some((p) => p.ackOnWrite)) {
          await this.nextSync();
          continue;
        }
        await this.writeBatch(this.takeBatch());
      }
    } finally {
      this.writing = false;
      this.wakeIdle();
    }
  }

  /** Everything queued. */
  private takeQueue(): Pending[] {
    const q = this.queue;
    this.queue = [];
    return q;
  }

  /** The oldest queued records, up to batchBytes (at least one). */
  private takeBatch(): Pending[] {
    let bytes = 0;
    let n = 0;
    while (n < this.queue.length && (n === 0 || bytes + (this.queue[n] as Pending).size <= this.batchBytes)) {
      bytes += (this.queue[n] as Pending).size;
      n++;
    }
    if (n === this.queue.length) return this.takeQueue();
    return this.queue.splice(0, n);
  }

  private refuse(items: Pending[], err: Error): void {
    for (const p of items) {
      this.reservedBytes -= p.size;
      p.reject(err);
    }
  }

  private async writeBatch(items: Pending[]): Promise<void> {
    const seg = this.active;
    const startSeq = this.writeSeq;
    const startOffset = this.writeOffset;
    // Records are encoded straight into one reusable buffer (the write stage writes one batch at a time) and each
    // is hashed from its bytes: one UTF-8 encoding, no batch-sized string, no new buffer per batch.
    let need = SEAL_RESERVE;
    for (const p of items) need += p.size;
    const buf = need <= this.batchBuffer.length ? this.batchBuffer : Buffer.allocUnsafe(need);
    let seq = startSeq;
    let prev = this.writeHash;
    let off = 0;
    const hashes: string[] = new Array(items.length);
    for (let i = 0; i < items.length; i++) {
      const p = items[i] as Pending;
      const r = encodeInto(buf, off, ++seq, p.kind, prev, p.body);
      off = r.end;
      prev = r.hash;
      hashes[i] = r.hash;
    }
    let sealed = false;
    if (startOffset + off >= this.segmentBytes) {
      // This batch fills the segment: it ends with the seal, written and synced together with it.
      const body = JSON.stringify({
        segment: seg.name,
        first_seq: seg.firstSeq,
        last_seq: seq,
        records: seq - seg.firstSeq + 1,
        last_hash: prev,
        sealed_at: new Date().toISOString(),
      });
      const r = encodeInto(buf, off, ++seq, "seal", prev, body);
      off = r.end;
      prev = r.hash;
      sealed = true;
    }
    const bytes = buf.subarray(0, off);
    const generation = this.generation;
    const write = this.io.writeAll(this.fd, bytes, startOffset);
    this.currentWrite = write.catch(() => {});
    try {
      await write;
    } catch (err) {
      const e = this.ioError("audit spool write failed", err);
      // Cut the partial batch off again; if even that fails, it is cut before the next write.
      try {
        await this.io.ftruncate(this.fd, startOffset);
      } catch {
        this.dirtyTail = true;
      }
      this.refuse(items, e);
      this.noteWriteFailure(e);
      this.log.error({ err: e.reason, records: items.length }, "audit spool write failed; records refused");
      return;
    } finally {
      this.currentWrite = null;
    }
    if (generation !== this.generation) {
      // A sync failed while this was being written: everything after the durable end was rolled back.
      this.refuse(items, this.lastSyncError ?? new AuditUnavailableError("audit spool write failed"));
      return;
    }
    if (this.writeFailure) this.clearWriteFailure();
    this.writeSeq = seq;
    this.writeHash = prev;
    this.writeOffset = startOffset + off;
    if (sealed) this.needsRotation = true;
    // Write-acknowledged records are told now: they are in the OS. The rest are told after the fdatasync.
    let durable: Durable | null = null;
    for (let i = 0; i < items.length; i++) {
      const p = items[i] as Pending;
      if (!p.ackOnWrite) continue;
      durable ??= new Durable();
      p.resolve({ seq: startSeq + i + 1, hash: hashes[i] as string, durable: durable.promise });
    }
    this.unsynced.push({ items, hashes, startSeq, endSeq: seq, lastHash: prev, bytes: off, sealed, durable });
    this.unsyncedBytes += off;
    if (!this.syncing) void this.syncLoop();
  }

  private readonly batchBuffer = Buffer.allocUnsafe(MAX_BATCH_BYTES + 64 * 1024);
  private lastSyncError: AuditUnavailableError | null = null;
  private rollingBack: Promise<void> | null = null;

  /** The sync stage: one fdatasync covers every batch written before it started. */
  private async syncLoop(): Promise<void> {
    if (this.syncing) return;
    this.syncing = true;
    try {
      while (this.unsynced.length > 0) {
        const batches = this.unsynced;
        const bytes = this.unsyncedBytes;
        this.unsynced = [];
        this.unsyncedBytes = 0;
        try {
          await this.io.fdatasync(this.fd);
        } catch (err) {
          // The write stage waits for the roll-back before it writes again.
          this.rollingBack = this.rollBack(batches, this.ioError("audit spool write failed", err));
          await this.rollingBack;
          this.rollingBack = null;
          continue;
        }
        this.commit(batches, bytes);
        const waiters = this.syncWaiters;
        this.syncWaiters = [];
        for (const w of waiters) w();
      }
    } finally {
      this.syncing = false;
      const waiters = this.syncWaiters;
      this.syncWaiters = [];
      for (const w of waiters) w();
      this.wakeIdle();
    }
  }

  /** Durable: commit the state, resolve the promises, tell the listeners. */
  private commit(batches: Batch[], bytes: number): void {
    const seg = this.active;
    this.refusedFull = false;
    let decisions = 0;
    let recordings = 0;
    for (const b of batches) {
      for (let i = 0; i < b.items.length; i++) {
        const p = b.items[i] as Pending;
        this.reservedBytes -= p.size;
        if (p.kind === "decision") decisions++;
        else if (p.kind === "recording") recordings++;
        else metrics.auditRecords.inc({ kind: p.kind });
        if (!p.ackOnWrite) p.resolve({ seq: b.startSeq + i + 1, hash: b.hashes[i] as string });
      }
      b.durable?.resolve();
      this.seq = b.endSeq;
      this.lastHash = b.lastHash;
      if (b.sealed) {
        seg.sealed = true;
        metrics.auditRecords.inc({ kind: "seal" });
      }
    }
    seg.bytes += bytes;
    seg.lastSeq = this.seq;
    this.usedBytes += bytes;
    if (decisions) metrics.auditRecords.inc({ kind: "decision" }, decisions);
    if (recordings) metrics.auditRecords.inc({ kind: "recording" }, recordings);
    for (const l of this.commitListeners) l(this.seq);
  }

  /**
   * A sync failed: nothing after the durable end can be trusted. Wait for a write in progress, refuse every batch
   * after the durable end, cut the file back to it, and continue the chain from there.
   *
   * Except where records were acknowledged at write (recordWritten): their commands may already have run, so
   * their records are never cut off. The file is cut after the last such batch, the callers holding results are
   * told the sync failed (their `durable` rejects), and the spool becomes unavailable until it is opened again
   * from what is on disk — the chain there is intact, and start-up recovery checks it as after a crash.
   */
  private async rollBack(failed: Batch[], err: AuditUnavailableError): Promise<void> {
    this.generation++;
    this.lastSyncError = err;
    await this.currentWrite;
    const batches = [...failed, ...this.unsynced];
    this.unsynced = [];
    this.unsyncedBytes = 0;
    let keep = 0;
    for (let i = 0; i < batches.length; i++) if ((batches[i] as Batch).durable) keep = i + 1;
    let keepBytes = 0;
    for (let i = 0; i < keep; i++) keepBytes += (batches[i] as Batch).bytes;
    this.writeSeq = this.seq;
    this.writeHash = this.lastHash;
    this.writeOffset = this.active.bytes;
    this.needsRotation = false;
    try {
      await this.io.ftruncate(this.fd, this.active.bytes + keepBytes);
    } catch {
      this.dirtyTail = keep === 0;
    }
    for (let i = 0; i < batches.length; i++) {
      const b = batches[i] as Batch;
      b.durable?.reject(err);
      this.refuse(
        b.items.filter((p) => i >= keep || !p.ackOnWrite),
        err,
      );
      if (i < keep) for (const p of b.items) if (p.ackOnWrite) this.reservedBytes -= p.size;
    }
    if (keep > 0) {
      this.unavailable = err;
      this.retryAt = Date.now() + this.retryMs;
    }
    this.log.error(
      { err: err.reason, batches: batches.length, kept_written: keep },
      "audit spool sync failed; records refused",
    );
  }

  /** Resolves after the sync in progress (starting one if something is waiting to be synced). */
  private nextSync(): Promise<void> {
    if (!this.syncing) {
      if (this.unsynced.length === 0) return Promise.resolve();
      void this.syncLoop();
    }
    return new Promise((resolve) => this.syncWaiters.push(resolve));
  }

  private async syncIdle(): Promise<void> {
    while (this.syncing || this.unsynced.length > 0) await this.nextSync();
  }

  private get active(): SegmentInfo {
    return this.segments[this.segments.length - 1] as SegmentInfo;
  }

  /** Starts the next segment after a sealed one: create, fsync the directory, switch the fd. */
  private async rotate(): Promise<void> {
    const firstSeq = this.seq + 1;
    const name = segmentName(firstSeq);
    const path = join(this.dir, name);
    const fd = await this.openNewSegment(path);
    try {
      await this.io.syncDir(this.dir);
    } catch (err) {
      await this.io.close(fd).catch(() => {});
      await fsp.unlink(path).catch(() => {});
      throw err;
    }
    const old = this.fd;
    this.fd = fd;
    this.segments.push({ name, path, firstSeq, bytes: 0, lastSeq: firstSeq - 1, sealed: false });
    this.writeOffset = 0;
    this.needsRotation = false;
    await this.io.close(old).catch(() => {});
  }

  /** Creates a segment file; one left empty by an earlier failed attempt is reused. */
  private async openNewSegment(path: string): Promise<number> {
    try {
      return await this.io.open(path, "wx+");
    } catch (err) {
      if (errnoCode(err) !== "EEXIST") throw err;
      const st = await fsp.stat(path);
      if (st.size !== 0) throw err;
      return this.io.open(path, "r+");
    }
  }

  private noteWriteFailure(e: AuditUnavailableError): void {
    this.writeFailure = e;
    if (this.writeProbe) return;
    // Without traffic no write would tell that the disk has room again: look every retryMs. A full disk is
    // back once a batch fits; any other error is given the next write's chance after one interval.
    this.writeProbe = setInterval(() => {
      const failure = this.writeFailure;
      if (!failure) return this.clearWriteFailure();
      if (failure.code !== "ENOSPC") return this.clearWriteFailure();
      fsp.statfs(this.dir).then(
        (fs) => {
          if (fs.bavail * fs.bsize >= this.batchBytes + RECORD_OVERHEAD) this.clearWriteFailure();
        },
        () => {},
      );
    }, this.retryMs);
    this.writeProbe.unref();
  }

  private clearWriteFailure(): void {
    this.writeFailure = null;
    if (this.writeProbe) clearInterval(this.writeProbe);
    this.writeProbe = null;
  }

  private ioError(what: string, err: unknown): AuditUnavailableError {
    if (err instanceof AuditUnavailableError) return err;
    const code = errnoCode(err);
    return new AuditUnavailableError(`${what}: ${errorText(err)}`, code);
  }

  // ---- retention --------------------------------------------------------------------------------------------

  /**
   * Deletes sealed segments whose records all have seq ≤ `shippedSeq` (every sink has them). The hash of the last
   * deleted record is kept in anchor.json, so the chain of what remains can still be verified from its start.
   */
  async release(shippedSeq: number): Promise<number> {
    let deleted = 0;
    while (this.segments.length > 1) {
      const first = this.segments[0] as SegmentInfo;
      if (!first.sealed || first.lastSeq > shippedSeq) break;
      const last = await lastRecordOf(first.path);
      if (!last || last.seq !== first.lastSeq) break;
      await writeAtomic(
        join(this.dir, ANCHOR_FILE),
        `${JSON.stringify({ seq: last.seq, hash: last.hash })}\n`,
      );
      await fsp.unlink(first.path);
      this.segments.shift();
      this.usedBytes -= first.bytes;
      deleted++;
    }
    if (deleted > 0) {
      this.refusedFull = false;
      await this.io.syncDir(this.dir).catch(() => {});
    }
    return deleted;
  }

  // ---- opening and recovery ---------------------------------------------------------------------------------

  private async tryOpen(): Promise<void> {
    if (!this.opening) {
      this.opening = this.openOnce().finally(() => {
        this.opening = null;
      });
    }
    await this.opening;
  }

  private async openOnce(): Promise<void> {
    try {
      await this.init();
      if (this.unavailable) this.log.info({ dir: this.dir }, "audit spool available again");
      this.unavailable = null;
    } catch (err) {
      this.retryAt = Date.now() + this.retryMs;
      const code = errnoCode(err);
      const reason =
        err instanceof AuditUnavailableError
          ? err.reason
          : code && ENV_ERRORS.has(code)
            ? `audit spool directory ${this.dir} is not usable: ${errorText(err)}`
            : `audit spool cannot be opened: ${errorText(err)}`;
      if (this.unavailable?.reason !== reason)
        this.log.error({ dir: this.dir, reason }, "audit spool unavailable");
      this.unavailable = new AuditUnavailableError(reason, code);
    }
  }

  private async init(): Promise<void> {
    if (this.fd >= 0) {
      await this.io.close(this.fd).catch(() => {});
      this.fd = -1;
    }
    await fsp.mkdir(join(this.dir, "cursors"), { recursive: true });
    await this.lock();
    this.spoolId = await readOrCreateMeta(this.dir);
    const genesis = genesisHash(this.spoolId);
    const anchor = await readAnchor(this.dir);
    const files = await listSegmentFiles(this.dir);

    const segments: SegmentInfo[] = [];
    for (const f of files) {
      segments.push({
        name: f.name,
        path: f.path,
        firstSeq: f.firstSeq,
        bytes: f.size,
        lastSeq: f.firstSeq - 1,
        sealed: true,
      });
    }
    let seq: number;
    let lastHash: string;
    let needsNewSegment = false;
    const active = segments[segments.length - 1];
    if (!active) {
      seq = anchor?.seq ?? 0;
      lastHash = anchor?.hash ?? genesis;
      needsNewSegment = true;
    } else {
      const tail = await recoverSegment(this.dir, active, this.log);
      active.bytes = tail.goodBytes;
      active.sealed = tail.sealed;
      active.lastSeq = tail.last ? tail.last.seq : active.firstSeq - 1;
      if (tail.last) {
        seq = tail.last.seq;
        lastHash = tail.last.hash;
      } else {
        // An empty last segment: the chain continues from the one before it, the anchor, or the genesis.
        seq = active.firstSeq - 1;
        const before = segments[segments.length - 2];
        const prev = before ? await lastRecordOf(before.path) : null;
        if (prev && prev.seq === seq) lastHash = prev.hash;
        else if (anchor && anchor.seq === seq) lastHash = anchor.hash;
        else if (seq === 0) lastHash = genesis;
        else {
          throw new AuditUnavailableError(
            `audit spool ${this.dir} is inconsistent: segment ${active.name} is empty and the hash of record ${seq} is nowhere to be found`,
          );
        }
      }
      if (active.sealed) needsNewSegment = true;
    }
    // Every segment but the active one is sealed; their record ranges follow from the next one's name.
    for (let i = 0; i < segments.length - 1; i++) {
      (segments[i] as SegmentInfo).lastSeq = (segments[i + 1] as SegmentInfo).firstSeq - 1;
    }

    this.segments = segments;
    this.seq = seq;
    this.lastHash = lastHash;
    this.usedBytes = segments.reduce((n, s) => n + s.bytes, 0);
    this.dirtyTail = false;
    this.needsRotation = false;
    this.unsynced = [];
    this.unsyncedBytes = 0;
    if (needsNewSegment) {
      this.fd = -1;
      await this.rotateFromOpen();
    } else {
      this.fd = await this.io.open((active as SegmentInfo).path, "r+");
    }
    this.writeSeq = this.seq;
    this.writeHash = this.lastHash;
    this.writeOffset = this.active.bytes;
  }

  private async rotateFromOpen(): Promise<void> {
    const firstSeq = this.seq + 1;
    const name = segmentName(firstSeq);
    const path = join(this.dir, name);
    const existing = this.segments.find((s) => s.name === name);
    if (existing) {
      this.fd = await this.io.open(path, "r+");
      return;
    }
    const fd = await this.openNewSegment(path);
    this.fd = fd;
    await this.io.syncDir(this.dir);
    this.segments.push({ name, path, firstSeq, bytes: 0, lastSeq: firstSeq - 1, sealed: false });
  }

  private async lock(): Promise<void> {
    if (this.unlock) return;
    try {
      this.unlock = acquirePidLock(join(this.dir, LOCK_FILE), {
        onStale: (pid) =>
          this.log.warn({ dir: this.dir, pid }, "audit spool: removing the lock of a process that is gone"),
      });
    } catch (err) {
      if (err instanceof LockHeldError)
        throw new AuditUnavailableError(
          `audit spool ${this.dir} is in use by process ${err.pid}${err.thisProcess ? " (this one)" : ""}`,
        );
      throw new AuditUnavailableError(
        `audit spool ${this.dir}: cannot take the lock: ${errorText(err)}`,
        errnoCode(err),
      );
    }
  }
}
