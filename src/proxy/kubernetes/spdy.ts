// A reader for SPDY/3.1, the stream protocol of kubectl's exec/attach fallback (KUBECTL_REMOTE_COMMAND_WEBSOCKETS=
// false, and every kubectl before 1.30), so that such a session is recorded like a WebSocket one (tunnel.ts), and of
// kubectl's port-forward, whose streams name the ports they go to (checked: portforward.ts). It is fed copies of the
// bytes of each direction, cut anywhere, and never writes to the connection.
//
// Frames (SPDY/3 §2.2): a control frame is `1 | version(15) | type(16)`, `flags(8) | length(24)`, then its body; a
// data frame is `0 | stream id(31)`, `flags(8) | length(24)`, then the payload. The 24-bit length bounds any frame
// to 16 MiB (a data frame is buffered whole, so that is the most one direction holds); control frames are held to
// their own, much smaller, sizes on their header, before their bodies are buffered.
//
// Header blocks (SYN_STREAM, SYN_REPLY, HEADERS) are zlib-compressed with ONE context per direction for the whole
// connection, primed with the spec's dictionary: every block of a direction must be inflated, in order, or the
// next one cannot be read. Node's streaming inflate is asynchronous, so frames are handed on through a queue that
// keeps their order — shared by both directions, because the cluster's data on a stream is only understood once
// the client's SYN_STREAM that opened it has been read. Nothing waits while no header block is being inflated:
// data frames then go through at once.
//
// Kubernetes' remotecommand protocol over SPDY (client-go's remotecommand, the kubelet's streaming server): the
// CLIENT opens every stream, with a `streamtype` header — error, stdin, stdout, stderr, resize. stdin and resize
// carry the client's data (resize: one JSON `{"Width":…,"Height":…}` per line), stdout and stderr the command's,
// error the final Status. SpdyRemoteCommand maps streams to those types and hands on each one's data.
//
// Kubernetes' port-forward protocol over SPDY (client-go's portforward, the kubelet's streaming server): per
// forwarded connection the CLIENT opens two streams, `streamtype: error` and `streamtype: data`, each with a `port`
// header (and a shared `requestid`), and the kubelet dials the port that header names — not the ports of the
// request's ?ports=, which only the WebSocket protocols read. SpdyPortForward asks, for every SYN_STREAM of the
// client, whether its port may be forwarded (the caller answers, in its own time: tunnel.ts asks the policy), and
// says how far the client's bytes have been checked, so that the tunnel can hold back what has not
// (portforward.ts).
//
// Anything that is not SPDY/3 as the Go implementation (moby/spdystream, on both ends of kubectl exec) writes it is
// a parse error, reported once through onError (never thrown from an event handler); the caller stops the tunnel.
import { constants, createInflate, type Inflate } from "node:zlib";

/** A protocol constant (SPDY/3 §2.6.10.1): the zlib dictionary of every header block. */
export const SPDY_DICTIONARY: Buffer = (() => {
  // The spec lists these as length-prefixed words, then a run of plain text.
  // biome-ignore format: a protocol constant, kept dense
  const words = [
    "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset", "accept-encoding",
    "accept-language", "accept-ranges", "age", "allow", "authorization", "cache-control", "connection",
    "content-base", "content-encoding", "content-language", "content-length", "content-location", "content-md5",
    "content-range", "content-type", "date", "etag", "expect", "expires", "from", "host", "if-match",
    "if-modified-since", "if-none-match", "if-range", "if-unmodified-since", "last-modified", "location",
    "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer", "retry-after",
    "server", "te", "trailer", "transfer-encoding", "upgrade", "user-agent", "vary", "via", "warning",
    "www-authenticate", "method", "get", "status", "200 OK", "version", "HTTP/1.1", "url", "public",
    "set-cookie", "keep-alive", "origin",
  ];
  const tail =
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505" +
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized" +
    "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable" +
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT" +
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain," +
    "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.";
  const parts: Buffer[] = [];
  for (const w of words) {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(w.length);
    parts.push(len, Buffer.from(w, "latin1"));
  }
  parts.push(Buffer.from(tail, "latin1"));
  return Buffer.concat(parts);
})();

/** One decompressed header block, at most (Kubernetes' are a few hundred bytes). */
export const MAX_HEADER_BLOCK_BYTES = 256 * 1024;
/** Compressed, a block is not much larger than decompressed (stored deflate blocks, the zlib header). */
const MAX_COMPRESSED_HEADER_BLOCK = MAX_HEADER_BLOCK_BYTES + 1024;
/** Frames read but not yet handed on (waiting behind a header block being inflated), in bytes, at most. */
export const MAX_BACKLOG_BYTES = 64 * 1024 * 1024;
/** Streams one remotecommand connection may have open (kubectl opens at most five). */
export const MAX_STREAMS = 64;

const FLAG_FIN = 0x01;
const FLAG_UNIDIRECTIONAL = 0x02;

const SYN_STREAM = 1;
const SYN_REPLY = 2;
const RST_STREAM = 3;
const SETTINGS = 4;
const PING = 6;
const GOAWAY = 7;
const HEADERS = 8;
const WINDOW_UPDATE = 9;

/** Header name → its values (a value holding several NUL-separated values is split). Names are lowercase. */
export type SpdyHeaders = Map<string, string[]>;

export type SpdyFrame =
  | { type: "data"; streamId: number; fin: boolean; data: Buffer }
  | {
      type: "syn_stream";
      streamId: number;
      associatedTo: number;
      priority: number;
      fin: boolean;
      unidirectional: boolean;
      headers: SpdyHeaders;
    }
  | { type: "syn_reply"; streamId: number; fin: boolean; headers: SpdyHeaders }
  | { type: "rst_stream"; streamId: number; status: number }
  | { type: "settings"; settings: Array<{ flags: number; id: number; value: number }> }
  | { type: "ping"; id: number }
  | { type: "goaway"; lastGoodStreamId: number; status: number }
  | { type: "headers"; streamId: number; fin: boolean; headers: SpdyHeaders }
  | { type: "window_update"; streamId: number; delta: number };

export class SpdyParseError extends Error {
  override name = "SpdyParseError";
}

/**
 * Runs tasks one after another in the order they were given: at once while nothing is waiting, else after the
 * task in progress (a header block being inflated) is done. A task's failure goes to `onError`.
 */
export class FrameQueue {
  private readonly tasks: Array<{ run: () => void | Promise<void>; bytes: number }> = [];
  private busy = false;
  private backlog = 0;
  private waiters: Array<() => void> = [];

  constructor(private readonly onError: (err: unknown) => void) {}

  get idle(): boolean {
    return !this.busy && this.tasks.length === 0;
  }

  /** `bytes`: what the task holds on to while it waits, counted against MAX_BACKLOG_BYTES. */
  run(task: () => void | Promise<void>, bytes = 0): void {
    if (this.backlog + bytes > MAX_BACKLOG_BYTES)
      throw new SpdyParseError(`more than ${MAX_BACKLOG_BYTES} bytes of frames are waiting to be read`);
    this.backlog += bytes;
    this.tasks.push({ run: task, bytes });
    if (!this.busy) this.pump();
  }

  /** Resolves once every task given so far has run. */
  drained(): Promise<void> {
    if (this.idle) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private pump(): void {
    this.busy = true;
    for (let task = this.tasks.shift(); task; task = this.tasks.shift()) {
      this.backlog -= task.bytes;
      let pending: void | Promise<void>;
      try {
        pending = task.run();
      } catch (err) {
        this.onError(err);
        continue;
      }
      if (pending) {
        pending.then(
          () => this.pump(),
          (err: unknown) => {
            this.onError(err);
            this.pump();
          },
        );
        return;
      }
    }
    this.busy = false;
    for (const resolve of this.waiters.splice(0)) resolve();
  }
}

export interface SpdyReaderOptions {
  /**
   * `end`: the offset just after the frame in this direction's bytes (counted from the first written). A promise
   * returned holds back every later frame (of both directions, with a shared queue) until it settles.
   */
  onFrame(frame: SpdyFrame, end: number): void | Promise<void>;
  /** Called once, with the first problem; the reader then ignores everything. */
  onError(err: SpdyParseError): void;
  /** Shared with the other direction's reader, so that frames of both are handed on in the order they came. */
  queue?: FrameQueue;
}

/** One direction of a SPDY/3.1 connection: bytes in (cut anywhere), frames out, in order. */
export class SpdyReader {
  private readonly chunks: Buffer[] = [];
  private buffered = 0;
  /** The header of the frame whose body is still coming. */
  private head: { first: number; flags: number; length: number } | null = null;
  private readonly queue: FrameQueue;
  private inflater: Inflate | null = null;
  /** Output of the inflater since the last header block was taken. */
  private inflated: Buffer[] = [];
  private inflatedBytes = 0;
  /** Bytes taken from the input so far: the offset of the frame being read. */
  private consumed = 0;
  private failed = false;

  constructor(private readonly opts: SpdyReaderOptions) {
    this.queue = opts.queue ?? new FrameQueue((err) => this.fail(err));
  }

  write(chunk: Buffer): void {
    if (this.failed || chunk.length === 0) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    try {
      this.readFrames();
    } catch (err) {
      this.fail(err);
    }
  }

  /** Resolves once every frame read so far has been handed on. */
  drained(): Promise<void> {
    return this.queue.drained();
  }

  /** No frame read is waiting to be handed on (no header block is being inflated). */
  get idle(): boolean {
    return this.queue.idle;
  }

  /** No more bytes: once the queue has handed on what was read, the compression context is let go. */
  end(): void {
    void this.queue.drained().then(() => this.inflater?.destroy());
  }

  fail(err: unknown): void {
    if (this.failed) return;
    this.failed = true;
    this.chunks.length = 0;
    this.buffered = 0;
    this.head = null;
    this.inflater?.destroy();
    this.opts.onError(
      err instanceof SpdyParseError
        ? err
        : new SpdyParseError(err instanceof Error ? err.message : String(err)),
    );
  }

  private readFrames(): void {
    while (!this.failed) {
      if (!this.head) {
        if (this.buffered < 8) return;
        const h = this.take(8);
        const first = h.readUInt32BE(0);
        const length = h.readUInt32BE(4) & 0xffffff;
        // Sizes are checked on the header, before waiting for a body that may never be wanted.
        if (first & 0x80000000) checkControlHeader(first, length);
        else if ((first & 0x7fffffff) === 0) throw new SpdyParseError("a data frame on stream 0");
        this.head = { first, flags: h[4] as number, length };
      }
      const { first, flags, length } = this.head;
      if (this.buffered < length) return;
      this.head = null;
      const body = this.take(length);
      const end = this.consumed;
      if (first & 0x80000000) this.control(first & 0xffff, flags, body, end);
      else
        this.dispatch(
          {
            type: "data",
            streamId: first & 0x7fffffff,
            fin: (flags & FLAG_FIN) !== 0,
            data: body,
          },
          end,
        );
    }
  }

  private control(type: number, flags: number, b: Buffer, end: number): void {
    const fin = (flags & FLAG_FIN) !== 0;
    if (type === SYN_STREAM) {
      const streamId = streamIdAt(b, 0);
      const associatedTo = b.readUInt32BE(4) & 0x7fffffff;
      const priority = (b[8] as number) >> 5;
      const unidirectional = (flags & FLAG_UNIDIRECTIONAL) !== 0;
      this.withHeaders(b.subarray(10), end, (headers) => ({
        type: "syn_stream",
        streamId,
        associatedTo,
        priority,
        fin,
        unidirectional,
        headers,
      }));
    } else if (type === SYN_REPLY || type === HEADERS) {
      const streamId = streamIdAt(b, 0);
      const kind = type === SYN_REPLY ? "syn_reply" : "headers";
      this.withHeaders(b.subarray(4), end, (headers) => ({ type: kind, streamId, fin, headers }));
    } else this.dispatch(fixedControlFrame(type, b), end);
  }

  private dispatch(frame: SpdyFrame, end: number): void {
    this.queue.run(() => this.emit(frame, end), frame.type === "data" ? frame.data.length : 0);
  }

  /** A frame with a header block: inflated in its turn (the context is the direction's), then handed on. */
  private withHeaders(block: Buffer, end: number, frame: (headers: SpdyHeaders) => SpdyFrame): void {
    if (block.length === 0) throw new SpdyParseError("a frame without its header block");
    this.queue.run(async () => {
      if (this.failed) return;
      try {
        const headers = parseHeaderBlock(await this.inflate(block));
        await this.emit(frame(headers), end);
      } catch (err) {
        this.fail(err);
      }
    }, block.length);
  }

  private emit(frame: SpdyFrame, end: number): void | Promise<void> {
    if (this.failed) return;
    try {
      const pending = this.opts.onFrame(frame, end);
      if (pending instanceof Promise) return pending.catch((err: unknown) => this.fail(err));
    } catch (err) {
      this.fail(err);
    }
  }

  private inflate(block: Buffer): Promise<Buffer> {
    if (!this.inflater) {
      const inflater = createInflate({ dictionary: SPDY_DICTIONARY, finishFlush: constants.Z_SYNC_FLUSH });
      // One listener for the connection's life: the output of a block is whatever came before its flush is done.
      inflater.on("data", (c: Buffer) => {
        this.inflatedBytes += c.length;
        if (this.inflatedBytes <= MAX_HEADER_BLOCK_BYTES) this.inflated.push(c);
      });
      this.inflater = inflater;
    }
    const inflater = this.inflater;
    return new Promise((resolve, reject) => {
      let settled = false;
      const settle = (err: Error | null) => {
        if (settled) return;
        settled = true;
        inflater.off("error", onError);
        inflater.off("close", onClose);
        const size = this.inflatedBytes;
        const out = Buffer.concat(this.inflated);
        this.inflated = [];
        this.inflatedBytes = 0;
        if (err) reject(err);
        else if (size > MAX_HEADER_BLOCK_BYTES)
          reject(new SpdyParseError(`a header block inflates to more than ${MAX_HEADER_BLOCK_BYTES} bytes`));
        else resolve(out);
      };
      const onError = (err: Error) =>
        settle(new SpdyParseError(`a header block could not be inflated: ${err.message}`));
      const onClose = () => settle(new SpdyParseError("the header decompressor was closed"));
      inflater.on("error", onError);
      inflater.on("close", onClose);
      inflater.write(block);
      inflater.flush(constants.Z_SYNC_FLUSH, () => settle(null));
    });
  }

  /** The first n buffered bytes, consumed (a view into the chunk when they lie in one). */
  private take(n: number): Buffer {
    this.buffered -= n;
    this.consumed += n;
    const first = this.chunks[0];
    if (n === 0 || !first) return Buffer.alloc(0);
    if (first.length > n) {
      this.chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    if (first.length === n) {
      this.chunks.shift();
      return first;
    }
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    let used = 0;
    while (off < n) {
      const c = this.chunks[used] as Buffer;
      const k = Math.min(c.length, n - off);
      c.copy(out, off, 0, k);
      off += k;
      if (k === c.length) used++;
      else this.chunks[used] = c.subarray(k);
    }
    this.chunks.splice(0, used);
    return out;
  }
}

/** Each control frame type's name and length bounds (SPDY/3 §2.6), checked on its header. */
const CONTROL_LENGTHS: ReadonlyMap<number, [name: string, least: number, most: number]> = new Map([
  [SYN_STREAM, ["SYN_STREAM", 10, 10 + MAX_COMPRESSED_HEADER_BLOCK]],
  [SYN_REPLY, ["SYN_REPLY", 4, 4 + MAX_COMPRESSED_HEADER_BLOCK]],
  [RST_STREAM, ["RST_STREAM", 8, 8]],
  // Eight setting ids are defined; room for more, but not megabytes.
  [SETTINGS, ["SETTINGS", 4, 4 + 8 * 1024]],
  [PING, ["PING", 4, 4]],
  [GOAWAY, ["GOAWAY", 8, 8]],
  [HEADERS, ["HEADERS", 4, 4 + MAX_COMPRESSED_HEADER_BLOCK]],
  [WINDOW_UPDATE, ["WINDOW_UPDATE", 8, 8]],
]);

/** Version, type and length of a control frame, checked before its body is read. */
function checkControlHeader(first: number, length: number): void {
  const version = (first >>> 16) & 0x7fff;
  const type = first & 0xffff;
  if (version !== 3) throw new SpdyParseError(`a control frame of SPDY version ${version}, not 3`);
  const bounds = CONTROL_LENGTHS.get(type);
  // The spec says to ignore unknown types; the Go framer on both ends of kubectl exec fails the connection
  // instead, so a frame like this never belongs to a session that works.
  if (!bounds) throw new SpdyParseError(`an unknown control frame type ${type}`);
  const [name, least, most] = bounds;
  if (length < least || length > most)
    throw new SpdyParseError(
      least === most
        ? `a ${name} frame of ${length} bytes, not ${least}`
        : `a ${name} frame of ${length} bytes (from ${least} to ${most} expected)`,
    );
}

/** A control frame without a header block (its length already checked). */
function fixedControlFrame(type: number, b: Buffer): SpdyFrame {
  switch (type) {
    case RST_STREAM:
      return { type: "rst_stream", streamId: streamIdAt(b, 0), status: b.readUInt32BE(4) };
    case SETTINGS: {
      const count = b.readUInt32BE(0);
      if (b.length !== 4 + 8 * count)
        throw new SpdyParseError(`a SETTINGS frame of ${count} entries in ${b.length} bytes`);
      const settings = [];
      for (let off = 4; off < b.length; off += 8)
        settings.push({
          flags: b[off] as number,
          id: b.readUInt32BE(off) & 0xffffff,
          value: b.readUInt32BE(off + 4),
        });
      return { type: "settings", settings };
    }
    case PING:
      return { type: "ping", id: b.readUInt32BE(0) };
    case GOAWAY:
      return { type: "goaway", lastGoodStreamId: b.readUInt32BE(0) & 0x7fffffff, status: b.readUInt32BE(4) };
    case WINDOW_UPDATE:
      return {
        type: "window_update",
        streamId: b.readUInt32BE(0) & 0x7fffffff,
        delta: b.readUInt32BE(4) & 0x7fffffff,
      };
    default:
      throw new SpdyParseError(`an unknown control frame type ${type}`);
  }
}

function streamIdAt(b: Buffer, off: number): number {
  const id = b.readUInt32BE(off) & 0x7fffffff;
  if (id === 0) throw new SpdyParseError("a control frame for stream 0");
  return id;
}

/** A decompressed header block: count(32), then per pair length(32) + name, length(32) + value. */
export function parseHeaderBlock(b: Buffer): SpdyHeaders {
  if (b.length < 4) throw new SpdyParseError("a header block shorter than its count");
  const count = b.readUInt32BE(0);
  if (count > (b.length - 4) / 8)
    throw new SpdyParseError(`a header block of ${count} pairs in ${b.length} bytes`);
  let off = 4;
  const field = (): string => {
    if (off + 4 > b.length) throw new SpdyParseError("a header block cut short");
    const len = b.readUInt32BE(off);
    off += 4;
    if (len > b.length - off) throw new SpdyParseError("a header block cut short");
    off += len;
    return b.toString("utf8", off - len, off);
  };
  const headers: SpdyHeaders = new Map();
  for (let i = 0; i < count; i++) {
    const name = field().toLowerCase();
    const value = field();
    if (name === "") throw new SpdyParseError("a header without a name");
    const values = headers.get(name) ?? [];
    values.push(...value.split("\0"));
    headers.set(name, values);
  }
  if (off !== b.length)
    throw new SpdyParseError(`${b.length - off} bytes after the header block's last pair`);
  return headers;
}

/** The streams of Kubernetes' remotecommand protocol (exec, attach), named by the client's `streamtype` header. */
export type RemoteCommandStream = "error" | "stdin" | "stdout" | "stderr" | "resize";
const STREAM_TYPES: ReadonlySet<string> = new Set(["error", "stdin", "stdout", "stderr", "resize"]);
/** A resize line longer than this is not a terminal size; it is dropped. */
const MAX_RESIZE_LINE = 4096;

export interface RemoteCommandEvents {
  /**
   * Data of a stream: from the client stdin and resize (a resize is one JSON document), from the cluster stdout,
   * stderr and error. Data a side should not send on a stream (the client on stdout, …) is not handed on.
   */
  data(stream: RemoteCommandStream, data: Buffer): void;
  /** The connection could not be read (once); nothing is handed on after it. */
  error(err: SpdyParseError): void;
}

/** Both directions of a remotecommand (exec/attach) SPDY connection, read into its streams' data. */
export class SpdyRemoteCommand {
  /** Stream id → what it carries, from the client's SYN_STREAMs. */
  readonly streams = new Map<number, RemoteCommandStream | "other">();
  private readonly queue: FrameQueue;
  private readonly client: SpdyReader;
  private readonly cluster: SpdyReader;
  private lastClientStream = 0;
  private resizeLine = "";
  private failed = false;

  constructor(private readonly events: RemoteCommandEvents) {
    this.queue = new FrameQueue((err) => this.fail(err));
    const onError = (err: SpdyParseError) => this.fail(err);
    this.client = new SpdyReader({ queue: this.queue, onError, onFrame: (f) => this.frame(true, f) });
    this.cluster = new SpdyReader({ queue: this.queue, onError, onFrame: (f) => this.frame(false, f) });
  }

  /** Nothing read is still waiting to be handed on. */
  get idle(): boolean {
    return this.queue.idle;
  }

  fromClient(b: Buffer): void {
    this.client.write(b);
  }

  fromCluster(b: Buffer): void {
    this.cluster.write(b);
  }

  /** The connection is over: resolves once everything read has been handed on. */
  async end(): Promise<void> {
    this.client.end();
    this.cluster.end();
    await this.queue.drained();
    this.flushResize();
  }

  private fail(err: unknown): void {
    if (this.failed) return;
    this.failed = true;
    // Both readers stop; the error is reported once, whichever found it.
    this.client.fail(err);
    this.cluster.fail(err);
    this.events.error(err instanceof SpdyParseError ? err : new SpdyParseError(String(err)));
  }

  private frame(fromClient: boolean, f: SpdyFrame): void {
    if (this.failed) return;
    switch (f.type) {
      case "syn_stream": {
        // The peer (spdystream) refuses a SYN_STREAM whose id is not above the last one; a stream seen twice
        // would leave this map and the peer's disagreeing about what a stream carries.
        if (this.streams.has(f.streamId)) throw new SpdyParseError(`stream ${f.streamId} opened twice`);
        if (fromClient && f.streamId <= this.lastClientStream)
          throw new SpdyParseError(`stream ${f.streamId} opened after stream ${this.lastClientStream}`);
        if (this.streams.size >= MAX_STREAMS) throw new SpdyParseError(`more than ${MAX_STREAMS} streams`);
        if (fromClient) this.lastClientStream = f.streamId;
        const type = f.headers.get("streamtype")?.[0] ?? "";
        // Only the client opens remotecommand streams; one the cluster opened carries nothing of the terminal.
        this.streams.set(
          f.streamId,
          fromClient && STREAM_TYPES.has(type) ? (type as RemoteCommandStream) : "other",
        );
        return;
      }
      case "rst_stream":
        // The mapping stays: the other side's data already in flight on the stream may still come.
        if (this.streams.get(f.streamId) === "resize") this.flushResize();
        return;
      case "data": {
        // Data on a stream never opened is dropped by the receiving peer too (spdystream: "gone away").
        const type = this.streams.get(f.streamId);
        if (type === undefined || type === "other") return;
        const clientSends = type === "stdin" || type === "resize";
        if (clientSends !== fromClient) return;
        if (type === "resize") this.resize(f.data, f.fin);
        else if (f.data.length > 0) this.events.data(type, f.data);
        return;
      }
    }
  }

  /** kubectl writes one JSON document per line (Go's json.Encoder); a frame may hold part of one, or several. */
  private resize(data: Buffer, fin: boolean): void {
    const lines = (this.resizeLine + data.toString("utf8")).split("\n");
    this.resizeLine = lines.pop() ?? "";
    for (const line of lines) if (line.trim()) this.events.data("resize", Buffer.from(line));
    if (this.resizeLine.length > MAX_RESIZE_LINE) this.resizeLine = "";
    if (fin) this.flushResize();
  }

  private flushResize(): void {
    const rest = this.resizeLine;
    this.resizeLine = "";
    if (rest.trim() && !this.failed) this.events.data("resize", Buffer.from(rest));
  }
}

/** Why a port-forward stream was refused. `port`: as sent — a number if it is one, null if there is none. */
export interface PortForwardRefusal {
  streamId: number;
  port: number | string | null;
  message: string;
  /** What the answer that refused it carried (AllowPort), for the caller's record. */
  detail?: Record<string, unknown>;
}

/** Whether a stream may go to a port: yes, or why not (`detail`: anything the refusal should carry on). */
export type PortAnswer = true | { message: string; detail?: Record<string, unknown> };

/**
 * Asked once per distinct port a stream names (a port allowed is not asked again on the same connection); it may
 * take its time — the stream's SYN_STREAM, and every frame after it, wait for the answer. A rejection refuses.
 */
export type AllowPort = (port: number) => PortAnswer | Promise<PortAnswer>;

export interface PortForwardEvents {
  /** Every client byte before `offset` (counted from the first given) is part of a frame read and allowed. */
  checked(offset: number): void;
  /** A stream names a port that was not allowed, or none, or not a port (once); nothing is read after it. */
  refused(refusal: PortForwardRefusal): void;
  /** The client's bytes are not SPDY/3 (once); nothing is read after it. */
  error(err: SpdyParseError): void;
}

/**
 * The client's side of a port-forward SPDY connection, each SYN_STREAM's `port` put to `allowPort`. Only
 * SYN_STREAM matters: the kubelet (spdystream) reads a stream's port from the headers it was opened with; HEADERS
 * frames do not change them, and data goes only to streams it accepted. The cluster's side is not read: the
 * kubelet opens no streams. Frames are checked in order: while a port is being decided nothing later is checked.
 */
export class SpdyPortForward {
  private readonly reader: SpdyReader;
  /** Ports allowed on this connection: not asked again. */
  private readonly allowed = new Set<number>();
  private stopped = false;

  constructor(
    private readonly allowPort: AllowPort,
    private readonly events: PortForwardEvents,
  ) {
    this.reader = new SpdyReader({
      onFrame: (f, end) => this.frame(f, end),
      onError: (err) => {
        if (this.stopped) return;
        this.stopped = true;
        this.events.error(err);
      },
    });
  }

  /** No frame read is waiting to be checked (its header block inflated, its port decided). */
  get idle(): boolean {
    return this.reader.idle;
  }

  fromClient(b: Buffer): void {
    this.reader.write(b);
  }

  /** Resolves once every frame read so far has been checked. */
  drained(): Promise<void> {
    return this.reader.drained();
  }

  end(): void {
    this.reader.end();
  }

  private frame(f: SpdyFrame, end: number): void | Promise<void> {
    if (this.stopped) return;
    if (f.type !== "syn_stream") {
      this.events.checked(end);
      return;
    }
    const streamId = f.streamId;
    const port = streamPort(f.headers.get("port"));
    if (typeof port !== "number") {
      this.refuse(streamId, port.port, { message: port.message });
      return;
    }
    const settle = (a: PortAnswer) => {
      if (this.stopped) return;
      if (a !== true) return this.refuse(streamId, port, a);
      this.allowed.add(port);
      this.events.checked(end);
    };
    if (this.allowed.has(port)) return settle(true);
    let answer: PortAnswer | Promise<PortAnswer>;
    try {
      answer = this.allowPort(port);
    } catch (err) {
      answer = Promise.reject(err);
    }
    if (!(answer instanceof Promise)) return settle(answer);
    return answer.then(settle, (err: unknown) =>
      settle({
        message: `port ${port} could not be decided: ${err instanceof Error ? err.message : String(err)}`,
      }),
    );
  }

  private refuse(streamId: number, port: number | string | null, why: Exclude<PortAnswer, true>): void {
    this.stopped = true;
    // The reader stops too (its buffers and compression context go); its error is not reported.
    this.reader.fail(new SpdyParseError("refused"));
    this.events.refused({ streamId, port, ...why });
  }
}

/**
 * A stream's `port` header as the kubelet reads it — or why it is not one. The kubelet requires one, reads the
 * first value with strconv.ParseUint(…, 10, 16) and refuses 0; this is stricter where Go would be lenient (several
 * values, leading zeros beyond five digits): refusing such a stream closes a tunnel no real client opens.
 */
export function streamPort(
  values: string[] | undefined,
): number | { port: number | string | null; message: string } {
  if (!values || values.length === 0) return { port: null, message: "a stream names no port" };
  if (values.length > 1)
    return { port: values.join(","), message: `a stream names several ports (${values.join(", ")})` };
  const v = values[0] as string;
  const n = Number(v);
  if (!/^[0-9]{1,5}$/.test(v) || n < 1 || n > 65535)
    return { port: v, message: `a stream names ${JSON.stringify(v)}, not a port` };
  return n;
}
