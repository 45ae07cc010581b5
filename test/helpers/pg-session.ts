// A ProxySession on fake sockets, fake pipeline and fake catalog: drives the upstream → client path with
// hand-built backend frames (unit tests, bench/pg-masking.ts) without a database.
import { EventEmitter } from "node:events";
import type { Socket } from "node:net";
import type { MaskRule } from "../../src/decision/contract.js";
import type {
  BatchOutcome,
  CommandPipeline,
  CommandRequest,
  Outcome,
  SessionContext,
} from "../../src/pipeline/pipeline.js";
import { initAnalyzer } from "../../src/proxy/postgres/analysis/index.js";
import type { Catalog } from "../../src/proxy/postgres/catalog.js";
import { Masker } from "../../src/proxy/postgres/masking.js";
import type { Resolver } from "../../src/proxy/postgres/resolve.js";
import { ProxySession } from "../../src/proxy/postgres/session.js";
import { message, toServer } from "../../src/proxy/postgres/wire.js";
import { silentLogger } from "../../src/util/log.js";

/** Just enough of a net.Socket for ProxySession: records writes, pause/resume and cork depth. */
export class FakeSocket extends EventEmitter {
  /** Everything written, in order (kept unless `discard`). */
  readonly writes: Buffer[] = [];
  bytesWritten = 0;
  writeCalls = 0;
  paused = false;
  corked = 0;
  destroyed = false;
  /** While true, write() reports a full buffer (returns false), as a slow client's socket does. */
  full = false;

  constructor(private readonly discard = false) {
    super();
  }

  write(buf: Buffer): boolean {
    this.writeCalls++;
    this.bytesWritten += buf.length;
    if (!this.discard) this.writes.push(Buffer.from(buf)); // a copy: the caller's buffer must stay untouched
    return !this.full;
  }

  end(buf?: Buffer): void {
    if (buf) this.write(buf);
  }

  cork(): void {
    this.corked++;
  }

  uncork(): void {
    this.corked--;
  }

  pause(): this {
    this.paused = true;
    return this;
  }

  resume(): this {
    this.paused = false;
    this.emit("resume");
    return this;
  }

  destroy(): this {
    this.destroyed = true;
    return this;
  }

  /** All bytes written so far as one buffer. */
  output(): Buffer {
    return Buffer.concat(this.writes);
  }
}

export interface FakeSessionOptions {
  /** The verdict's mask rules for every statement (none: allow). */
  masks?: MaskRule[];
  /** Result column origins by "tableOid/column" → "schema.table.column". */
  origins?: Record<string, string>;
  /** Columns of a table for COPY, by "schema.table" → ["schema.table.column", …]. */
  tables?: Record<string, string[]>;
  /** Don't keep the client's writes (benchmarks). */
  discardOutput?: boolean;
  hashKey?: Buffer;
  /** A real socket for the client side instead of a FakeSocket (benchmarks: includes Node's stream costs). */
  clientSocket?: Socket;
}

export async function fakeSession(opts: FakeSessionOptions = {}) {
  await initAnalyzer();
  const client = opts.clientSocket ?? new FakeSocket(opts.discardOutput);
  const upstream = new FakeSocket();
  const masks = opts.masks ?? [];
  // A pipeline whose every statement gets the same verdict; the mask is still checked by the session's hook.
  const pipeline = {
    decideBatch: async (_ctx: unknown, reqs: CommandRequest[]): Promise<BatchOutcome> => {
      const problems = await Promise.all(reqs.map((r) => (masks.length ? r.checkMask?.(masks) : null)));
      const problem = problems.find((p) => p);
      const action = problem ? "block" : masks.length > 0 ? "mask" : "allow";
      const outcomes = reqs.map(
        () =>
          ({
            action,
            reasons: problem ? [problem] : [],
            mask: action === "mask" ? masks : [],
            decision: { decision_id: "d1" },
            approvalId: null,
            fatal: false,
          }) as unknown as Outcome,
      );
      return { action, outcomes, reasons: problem ? [problem] : [], fatal: false, durable: null };
    },
  } as unknown as CommandPipeline;
  const catalog = {
    origins: async (cols: Array<{ tableOid: number; column: number }>) =>
      cols.map((c) => opts.origins?.[`${c.tableOid}/${c.column}`] ?? null),
    tableColumns: async (table: string) => opts.tables?.[table] ?? [],
    invalidate: () => {},
  } as unknown as Catalog;
  // No server catalog in this harness: statements are decided as the text analysis reports them (catalog
  // resolution is tested against a real PostgreSQL in test/integration/pg-objects.test.ts).
  const resolver = { resolve: (s: unknown) => s } as unknown as Resolver;
  const masker = new Masker(opts.hashKey ?? Buffer.from("test-key"));
  const session = new ProxySession(
    client as unknown as Socket,
    upstream as unknown as Socket,
    { ctx: { id: "s1" } as SessionContext, transcript: () => {}, terminal: () => null, end: () => {} },
    { pipeline, catalog, resolver, masker, log: silentLogger, maxFrame: 1 << 20 },
  );
  session.start();
  return {
    session,
    /** The FakeSocket client (undefined casts aside: only when no `clientSocket` was given). */
    client: client as FakeSocket,
    upstream,
    masker,
    /** Sends a simple Query from the client and waits until the proxy has forwarded it. */
    async query(sql: string): Promise<void> {
      const before = upstream.writes.length;
      client.emit("data", toServer.query(sql));
      for (let i = 0; i < 100 && upstream.writes.length === before; i++) await tick();
      if (upstream.writes.length === before) throw new Error("the query was not forwarded");
    },
    /** Delivers bytes from the server, then lets the proxy finish (it may await the catalog). */
    async fromServer(...chunks: Buffer[]): Promise<void> {
      for (const c of chunks) upstream.emit("data", c);
      await settle();
    },
  };
}

export function tick(): Promise<void> {
  return new Promise((r) => setImmediate(r));
}

async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) await tick();
}

// --- backend frames --------------------------------------------------------------------------------------------

export interface Column {
  name: string;
  tableOid: number;
  column: number;
  typeOid: number;
}

export function rowDescription(cols: Column[]): Buffer {
  const parts = [Buffer.from([cols.length >> 8, cols.length & 0xff])];
  for (const c of cols) {
    const f = Buffer.alloc(18);
    f.writeUInt32BE(c.tableOid, 0);
    f.writeInt16BE(c.column, 4);
    f.writeUInt32BE(c.typeOid, 6);
    f.writeInt16BE(-1, 10);
    f.writeInt32BE(-1, 12);
    f.writeInt16BE(0, 16);
    parts.push(Buffer.from(`${c.name}\0`), f);
  }
  return message(0x54, Buffer.concat(parts));
}

export function dataRow(values: Array<string | Buffer | null>): Buffer {
  const parts: Buffer[] = [Buffer.from([values.length >> 8, values.length & 0xff])];
  for (const v of values) {
    const len = Buffer.alloc(4);
    if (v === null) {
      len.writeInt32BE(-1);
      parts.push(len);
      continue;
    }
    const bytes = typeof v === "string" ? Buffer.from(v) : v;
    len.writeInt32BE(bytes.length);
    parts.push(len, bytes);
  }
  return message(0x44, Buffer.concat(parts));
}

export const commandComplete = (tag: string) => message(0x43, Buffer.from(`${tag}\0`));
export const readyForQuery = (status = "I") => message(0x5a, Buffer.from(status));
export const notice = (text: string) => message(0x4e, Buffer.from(`SNOTICE\0VNOTICE\0C00000\0M${text}\0\0`));

/**
 * Splits a byte stream back into frames, decoding the values of DataRows. `frontend`: the stream is a client's
 * (its 'D' is Describe, not DataRow).
 */
export function parseFrames(
  buf: Buffer,
  frontend = false,
): Array<{ type: string; raw: Buffer; values?: Array<string | null> }> {
  const out: Array<{ type: string; raw: Buffer; values?: Array<string | null> }> = [];
  let pos = 0;
  while (pos < buf.length) {
    const len = buf.readInt32BE(pos + 1);
    const raw = buf.subarray(pos, pos + 1 + len);
    const type = String.fromCharCode(raw[0] as number);
    if (type === "D" && !frontend) {
      const values: Array<string | null> = [];
      const n = raw.readInt16BE(5);
      let p = 7;
      for (let i = 0; i < n; i++) {
        const l = raw.readInt32BE(p);
        p += 4;
        values.push(l < 0 ? null : raw.toString("utf8", p, p + l));
        if (l > 0) p += l;
      }
      if (p !== raw.length) throw new Error(`DataRow length ${raw.length} does not match its values (${p})`);
      out.push({ type, raw, values });
    } else {
      out.push({ type, raw });
    }
    pos += 1 + len;
  }
  if (pos !== buf.length) throw new Error("trailing partial frame");
  return out;
}
