// The audit trail, as the gateway and the protocol adapters use it. Protocol-neutral and configured by a plain
// object:
//
//   const audit = await AuditTrail.open({
//     dir: "/var/lib/pamgate/audit", maxBytes: 1 << 30, segmentBytes: 64 << 20,
//     sinks: [
//       { type: "postgres", url: "postgres://audit@db/audit", table: "pamgate_audit" },
//       { type: "http", url: "https://collector.example.com/logs", headers: { authorization: "Bearer …" } },
//       { type: "file", path: "-" },
//     ],
//   });
//   // for every command, after the decision and BEFORE forwarding it:
//   await audit.recordDecision(decision, { requested_by: clientAddr });   // throws AuditUnavailableError
//   // terminal sessions / statement sessions:
//   const rec = audit.openTerminalRecording(sessionId, { width: 80, height: 24 });
//   rec.output(bytes); rec.input(bytes); … await rec.close();
//
// See docs/audit.md.
import { createHash, randomUUID } from "node:crypto";
import type { Decision } from "../decision/contract.js";
import { errorText } from "../util/errors.js";
import { type Logger, silentLogger } from "../util/log.js";
import { packageVersion } from "../util/tools.js";
import { AuditUnavailableError } from "./errors.js";
import { buildDecisionEvent, type DecisionContext, type DecisionEvent } from "./event.js";
import type { SpoolIo } from "./io.js";
import {
  type RecordingOptions,
  TerminalRecording,
  type TerminalRecordingOptions,
  type TranscriptOptions,
  TranscriptRecording,
} from "./recording.js";
import { type BackoffOptions, Shipper, type ShipperStatus, type Sink } from "./shipper.js";
import { FileSink, type FileSinkConfig } from "./sinks/file.js";
import { describeUrl, HttpSink, type HttpSinkConfig } from "./sinks/http.js";
import { PostgresSink, type PostgresSinkConfig, quoteTable } from "./sinks/postgres.js";
import { type AuditReceipt, Spool, type SpoolStatus, type WrittenReceipt } from "./spool.js";

export { AuditUnavailableError } from "./errors.js";
export { buildDecisionEvent, type DecisionContext, type DecisionEvent, MASK_ENTRYPOINT } from "./event.js";
export type { SpoolIo } from "./io.js";
export type { RecordingOptions, TerminalRecordingOptions, TranscriptOptions } from "./recording.js";
export { TerminalRecording, TranscriptRecording } from "./recording.js";
export type { ShipperStatus } from "./shipper.js";
export type { AuditReceipt, SpoolStatus, WrittenReceipt } from "./spool.js";
export { registerAuditStatus, sinkComponentStatus, spoolComponentStatus } from "./status.js";
export type { FileSinkConfig, HttpSinkConfig, PostgresSinkConfig };

export type SinkConfig = PostgresSinkConfig | HttpSinkConfig | FileSinkConfig;

/**
 * When a decision record counts as taken, like PostgreSQL's synchronous_commit (docs/audit.md, "Durability"):
 * - `fsync`: on disk (written and fdatasync'd) before the command is forwarded. Loses nothing.
 * - `write`: in the operating system before the command is forwarded, on disk before its result is released to
 *   the client (the fdatasync overlaps the command's run). A crash of the gateway process, `kill -9` included,
 *   loses nothing; a crash of the machine or a power loss can lose the records of the last fdatasync round, whose
 *   commands may have run but whose results no client has seen.
 */
export type AuditDurability = "fsync" | "write";

export interface AuditConfig {
  /** The spool directory (created if missing). */
  dir: string;
  /** When a decision record counts as taken. Default "fsync". */
  durability?: AuditDurability;
  /** Spool size limit in bytes; when reached, records (and so commands) are refused. Default 1 GiB. */
  maxBytes?: number;
  /** Segment size at which a segment is sealed and a new one started. Default 64 MiB (≤ maxBytes/4). */
  segmentBytes?: number;
  /** Largest write batch (group commit): default and maximum 1 MiB; smaller trades tail latency for records/s. */
  batchBytes?: number;
  /** Where the spool is shipped. Sealed segments are deleted once every sink has them; with no sinks, never. */
  sinks?: SinkConfig[];
  /** Extra decision log labels (OPA's `labels`); `id` and `version` are always set. */
  labels?: Record<string, string>;
  /** The key under the events' `bundles`. Default "pamgate". */
  bundleName?: string;
  /** Chunking of session recordings. */
  recording?: Pick<RecordingOptions, "flushMs" | "chunkBytes" | "maxBufferedBytes">;
  /** Shipper retry backoff. Default 200 ms doubling to 30 s. */
  backoff?: BackoffOptions;
  /** How often an unavailable spool (unwritable directory) is retried. Default 1000 ms. */
  retryMs?: number;
}

export interface AuditStatus {
  spool: SpoolStatus;
  sinks: ShipperStatus[];
}

const VERSION: string = packageVersion();

const NAME = /^[A-Za-z0-9_.-]{1,64}$/;

/** A sink's default name: its type and a hash of where it points (not of credentials), so cursors survive reordering. */
export function sinkName(config: SinkConfig): string {
  if (config.name !== undefined) {
    if (!NAME.test(config.name))
      throw new Error(`invalid audit sink name "${config.name}" ([A-Za-z0-9_.-]{1,64})`);
    return config.name;
  }
  let where: string;
  if (config.type === "postgres") {
    let target = "?";
    try {
      const u = new URL(config.url);
      target = `${u.hostname}:${u.port || 5432}${u.pathname}`;
    } catch {}
    where = `${target} ${config.table ?? "pamgate_audit"}`;
  } else if (config.type === "http") where = describeUrl(config.url);
  else where = `${config.path} ${config.format ?? "record"}`;
  return `${config.type}-${createHash("sha256").update(where).digest("hex").slice(0, 12)}`;
}

/** Rejects a sink configuration that could never work, at start-up rather than at the first shipment. */
function validateSink(config: SinkConfig): void {
  const where = `audit sink ${JSON.stringify(config.name ?? config.type)}`;
  switch (config.type) {
    case "postgres":
      if (!config.url) throw new Error(`${where}: url is required`);
      quoteTable(config.table ?? "pamgate_audit");
      return;
    case "http":
      try {
        const u = new URL(config.url);
        if (u.protocol !== "http:" && u.protocol !== "https:") throw new Error("not http(s)");
      } catch {
        throw new Error(`${where}: url ${JSON.stringify(config.url)} is not an http(s) URL`);
      }
      return;
    case "file":
      if (!config.path) throw new Error(`${where}: path is required ("-" for stdout)`);
      return;
    default:
      throw new Error(`unknown audit sink type ${JSON.stringify((config as { type: unknown }).type)}`);
  }
}

export class AuditTrail {
  private readonly shippers: Shipper[] = [];
  private shippersStarted = false;
  private starting: Promise<void> | null = null;
  private releasing: Promise<void> | null = null;
  private releaseAgain = false;
  private retryTimer: NodeJS.Timeout | null = null;
  private closed = false;
  readonly labels: Record<string, string>;
  private readonly bundleName: string;

  private constructor(
    readonly spool: Spool,
    private readonly config: AuditConfig,
    private readonly sinks: Sink[],
    private readonly log: Logger,
  ) {
    this.labels = { id: randomUUID(), version: VERSION, ...config.labels };
    this.bundleName = config.bundleName ?? "pamgate";
  }

  /**
   * Opens the spool and starts the shippers. Throws only for a bad configuration (a malformed sink); a spool that
   * cannot be used yet (unwritable directory) gives an audit trail whose records are refused until it can.
   */
  static async open(
    config: AuditConfig,
    options: { logger?: Logger; io?: SpoolIo; stdout?: NodeJS.WritableStream } = {},
  ): Promise<AuditTrail> {
    const log = options.logger ?? silentLogger;
    const names = new Set<string>();
    const sinkConfigs = config.sinks ?? [];
    for (const s of sinkConfigs) {
      validateSink(s);
      const name = sinkName(s);
      if (names.has(name)) throw new Error(`two audit sinks are named "${name}"; give one a distinct name`);
      names.add(name);
    }
    const spool = await Spool.open({
      dir: config.dir,
      maxBytes: config.maxBytes,
      segmentBytes: config.segmentBytes,
      batchBytes: config.batchBytes,
      retryMs: config.retryMs,
      logger: log,
      io: options.io,
    });
    // Sinks need the spool's id (PostgreSQL rows carry it); they are built once the spool is open.
    const trail = new AuditTrail(spool, config, [], log);
    trail.pendingSinks = sinkConfigs;
    trail.stdout = options.stdout;
    spool.onCommit(() => {
      if (!trail.shippersStarted) {
        trail
          .startShippers()
          .catch((err) => log.error({ err: errorText(err) }, "audit shippers did not start"));
      }
    });
    await trail.startShippers();
    if (!trail.shippersStarted && !trail.closed) trail.scheduleRetry();
    return trail;
  }

  private pendingSinks: SinkConfig[] = [];
  private stdout: NodeJS.WritableStream | undefined;

  private buildSink(config: SinkConfig, spoolId: string): Sink {
    const name = sinkName(config);
    switch (config.type) {
      case "postgres":
        return new PostgresSink(config, spoolId, name);
      case "http":
        return new HttpSink(config, name);
      case "file":
        return new FileSink(config, name, this.stdout);
      default:
        throw new Error(`unknown audit sink type "${(config as { type: unknown }).type}"`);
    }
  }

  private async startShippers(): Promise<void> {
    if (this.shippersStarted || this.closed) return;
    const spoolId = this.spool.id;
    if (!spoolId) return;
    this.starting ??= (async () => {
      for (const config of this.pendingSinks) {
        const sink = this.buildSink(config, spoolId);
        this.sinks.push(sink);
        const shipper = new Shipper(this.spool, sink, {
          logger: this.log,
          backoff: this.config.backoff,
          onAdvance: () => void this.release(),
        });
        await shipper.start();
        this.shippers.push(shipper);
      }
      this.shippersStarted = true;
    })();
    await this.starting;
  }

  private scheduleRetry(): void {
    this.retryTimer = setTimeout(async () => {
      this.retryTimer = null;
      if (this.closed) return;
      if (await this.spool.ensureOpen()) await this.startShippers().catch(() => {});
      if (!this.shippersStarted && !this.closed) this.scheduleRetry();
    }, this.config.retryMs ?? 1000);
    this.retryTimer.unref();
  }

  /** Deletes segments every sink has acknowledged (coalesced: one release at a time). */
  private release(): Promise<void> {
    if (this.releasing) {
      this.releaseAgain = true;
      return this.releasing;
    }
    this.releasing = (async () => {
      try {
        do {
          this.releaseAgain = false;
          if (this.closed) return;
          const shipped = Math.min(...this.shippers.map((s) => s.shippedSeq));
          if (this.shippers.length === this.pendingSinks.length && Number.isFinite(shipped)) {
            await this.spool.release(shipped);
          }
        } while (this.releaseAgain);
      } catch (err) {
        this.log.warn({ err: errorText(err) }, "audit spool: releasing shipped segments failed");
      } finally {
        this.releasing = null;
      }
    })();
    return this.releasing;
  }

  /** When a decision record counts as taken (see AuditDurability). */
  get durability(): AuditDurability {
    return this.config.durability ?? "fsync";
  }

  /**
   * Records one decision: builds its OPA-format event (masked by the deciding bundle's system.log.mask rule) and
   * resolves once it is taken at the trail's durability level. The proxy must await this before forwarding the
   * command; on AuditUnavailableError it must block the command (the error's reason says why). At level `write`
   * the receipt's `durable` settles later: the command's result must wait for it.
   */
  recordDecision(decision: Decision, context?: DecisionContext): Promise<AuditReceipt | WrittenReceipt> {
    let event: DecisionEvent;
    try {
      event = this.decisionEvent(decision, context);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.durability === "write"
      ? this.spool.recordWritten("decision", event.json)
      : this.spool.record("decision", event.json);
  }

  /** Builds the event for a decision (masking included) without recording it. */
  decisionEvent(decision: Decision, context?: DecisionContext): DecisionEvent {
    const event = buildDecisionEvent(decision, { labels: this.labels, bundleName: this.bundleName }, context);
    if (event.mask_error) {
      this.log.warn(
        { decision_id: event.decision_id, err: event.mask_error },
        "decision log masking failed; the event is written with its input erased",
      );
    }
    return event;
  }

  /** Records a prebuilt decision event (resolves once durable, like recordDecision). */
  recordEvent(event: DecisionEvent): Promise<AuditReceipt> {
    return this.spool.record("decision", event.json);
  }

  /**
   * Records anything else durably (approval events, session start/end, …): `body` is an object or its JSON text.
   * Kinds "decision", "recording" and "seal" have fixed meanings.
   */
  record(kind: string, body: Record<string, unknown> | string): Promise<AuditReceipt> {
    return this.spool.record(kind, typeof body === "string" ? body : JSON.stringify(body));
  }

  /** Starts an asciicast v2 recording of a terminal session. */
  openTerminalRecording(sessionId: string, options: TerminalRecordingOptions): TerminalRecording {
    return new TerminalRecording(this.recordFn, sessionId, { ...this.config.recording, ...options });
  }

  /** Starts a JSON-lines transcript of a statement- or request-based session. */
  openTranscript(sessionId: string, options: TranscriptOptions = {}): TranscriptRecording {
    return new TranscriptRecording(this.recordFn, sessionId, { ...this.config.recording, ...options });
  }

  private readonly recordFn = (kind: string, body: string) => this.spool.record(kind, body);

  status(): AuditStatus {
    return { spool: this.spool.status(), sinks: this.shippers.map((s) => s.status()) };
  }

  /** The name of every configured sink, including those not started yet (the spool is not open). */
  get sinkNames(): string[] {
    return this.pendingSinks.map((s) => sinkName(s));
  }

  /**
   * A configuration reload: ships to `sinks` from now on. A sink that stays (same name) keeps its shipper; a
   * removed sink's shipper stops, and the spool no longer waits for it before deleting shipped segments; an
   * added sink starts at its saved cursor, else at the oldest record still in the spool (as at start). Throws,
   * changing nothing, for a malformed sink. Returns the names of the sinks added and removed.
   */
  async setSinks(sinks: SinkConfig[]): Promise<{ added: string[]; removed: string[] }> {
    const names = new Set<string>();
    for (const s of sinks) {
      validateSink(s);
      const name = sinkName(s);
      if (names.has(name)) throw new Error(`two audit sinks are named "${name}"; give one a distinct name`);
      names.add(name);
    }
    const before = new Set(this.pendingSinks.map((s) => sinkName(s)));
    const added = [...names].filter((n) => !before.has(n));
    const removed = [...before].filter((n) => !names.has(n));
    await this.starting?.catch(() => {});
    this.pendingSinks = sinks;
    // Not started yet (the spool is not open): the new list is what will start.
    if (!this.shippersStarted || this.closed) return { added, removed };
    for (const shipper of this.shippers.filter((s) => !names.has(s.sink.name))) {
      await shipper.stop();
      this.shippers.splice(this.shippers.indexOf(shipper), 1);
      this.sinks.splice(this.sinks.indexOf(shipper.sink), 1);
    }
    const spoolId = this.spool.id;
    for (const config of sinks) {
      if (!spoolId || this.shippers.some((s) => s.sink.name === sinkName(config))) continue;
      const sink = this.buildSink(config, spoolId);
      const shipper = new Shipper(this.spool, sink, {
        logger: this.log,
        backoff: this.config.backoff,
        onAdvance: () => void this.release(),
      });
      await shipper.start();
      this.sinks.push(sink);
      this.shippers.push(shipper);
    }
    void this.release();
    return { added, removed };
  }

  /** Resolves true once every sink has acknowledged everything durable so far (false on timeout). */
  async waitForSinks(timeoutMs = 10_000): Promise<boolean> {
    const target = this.spool.lastSeq;
    const results = await Promise.all(this.shippers.map((s) => s.waitFor(target, timeoutMs)));
    return results.every(Boolean);
  }

  /** Stops the shippers (after waiting up to drainMs for them to catch up) and closes the spool. */
  async close(options: { drainMs?: number } = {}): Promise<void> {
    if (this.closed) return;
    await this.spool.idle();
    if (options.drainMs) await this.waitForSinks(options.drainMs);
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    await this.starting?.catch(() => {});
    await Promise.all(this.shippers.map((s) => s.stop()));
    await this.releasing;
    await this.spool.close();
  }
}

/** Whether an error means "the audit trail refused this": the command must be blocked. */
export function isAuditUnavailable(err: unknown): err is AuditUnavailableError {
  return err instanceof AuditUnavailableError;
}
