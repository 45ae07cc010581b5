// PostgreSQL wire protocol (v3) framing and the handful of messages the proxy reads or writes itself.
//
// pg-protocol (node-postgres) parses the backend stream and serializes frontend messages; a proxy also needs
// the opposite directions — reading what clients send and writing what servers send — which is this module.
// Frames are passed through as raw buffers wherever the proxy does not need to look inside: that keeps the hot
// path free of per-message objects.

/** Protocol version 3.0 in a StartupMessage. */
export const PROTOCOL_V3 = 196608;
export const SSL_REQUEST = 80877103;
export const GSSENC_REQUEST = 80877104;
export const CANCEL_REQUEST = 80877102;

/** A frame as read: the type byte (0 for startup-phase packets, which have none) and the whole frame. */
export interface Frame {
  type: number;
  /** The complete frame including type byte and length (for passthrough). */
  raw: Buffer;
  /** Offset in `raw` where the payload (after the length) starts. */
  body: number;
}

export class ProtocolError extends Error {
  override name = "ProtocolError";
  constructor(
    message: string,
    readonly sqlstate = "08P01",
  ) {
    super(message);
  }
}

/**
 * Where a frame lies without a Buffer of its own: bytes [start, end) of `buf`. FrameReader.nextSpan fills one in
 * place, so the upstream hot path reads a large result without an object per row.
 */
export interface FrameSpan {
  type: number;
  buf: Buffer;
  start: number;
  end: number;
}

export function newSpan(): FrameSpan {
  return { type: 0, buf: Buffer.alloc(0), start: 0, end: 0 };
}

/**
 * Splits a byte stream into frames. In startup mode a frame is length-prefixed with no type byte; afterwards
 * every frame is a type byte plus a length. Frames larger than `maxFrame` are refused (a client cannot make the
 * proxy buffer an arbitrary amount), as are lengths below the minimum.
 *
 * Frames are views into the pushed chunks (no copy); only a frame split across chunks is copied together, alone.
 */
export class FrameReader {
  private chunks: Buffer[] = [];
  /** Where the unread bytes of chunks[0] start. */
  private offset = 0;
  private buffered = 0;
  private readonly span = newSpan();
  startup = true;

  constructor(private readonly maxFrame: number) {}

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
  }

  /** Returns the next complete frame, or null when more bytes are needed. Throws ProtocolError on bad framing. */
  next(): Frame | null {
    const s = this.span;
    if (!this.nextSpan(s)) return null;
    return { type: s.type, raw: s.buf.subarray(s.start, s.end), body: this.startup ? 4 : 5 };
  }

  /**
   * Finds the next complete frame and describes it in `span` (returns false when more bytes are needed). The
   * span's bytes stay valid and unchanged: chunks are never written to.
   */
  nextSpan(span: FrameSpan): boolean {
    // The common case, a whole frame within the first chunk, takes no detour (a large result is mostly these).
    const head = this.chunks[0];
    const at = this.offset;
    if (head !== undefined && !this.startup && head.length - at >= 5) {
      const length = head.readInt32BE(at + 1);
      if (length >= 4 && length <= this.maxFrame && length < head.length - at) {
        span.type = head[at] as number;
        span.buf = head;
        span.start = at;
        span.end = at + length + 1;
        this.consume(length + 1);
        return true;
      }
    }
    return this.nextSpanSplit(span);
  }

  /** nextSpan for everything else: startup frames, frames split across chunks, bad lengths. */
  private nextSpanSplit(span: FrameSpan): boolean {
    const header = this.startup ? 4 : 5;
    if (this.buffered < header) return false;
    this.contiguous(header);
    const head = this.chunks[0] as Buffer;
    const at = this.offset;
    const type = this.startup ? 0 : (head[at] as number);
    const length = head.readInt32BE(this.startup ? at : at + 1);
    if (length < 4 || (this.startup && length < 8)) {
      throw new ProtocolError(
        `invalid message length ${length}${type ? ` for message type '${String.fromCharCode(type)}'` : ""}`,
      );
    }
    if (length > this.maxFrame) {
      throw new ProtocolError(
        `message of ${length} bytes exceeds the gateway's limit of ${this.maxFrame} bytes`,
        "54000",
      );
    }
    const total = length + (this.startup ? 0 : 1);
    if (this.buffered < total) return false;
    this.contiguous(total);
    span.type = type;
    span.buf = this.chunks[0] as Buffer;
    span.start = this.offset;
    span.end = this.offset + total;
    this.consume(total);
    return true;
  }

  get bufferedBytes(): number {
    return this.buffered;
  }

  /** Hands over whatever is buffered (bytes read past the last frame) and empties the reader. */
  drain(): Buffer {
    const first = this.chunks[0];
    if (first) this.chunks[0] = first.subarray(this.offset);
    const out = Buffer.concat(this.chunks);
    this.chunks = [];
    this.offset = 0;
    this.buffered = 0;
    return out;
  }

  /** Makes the next `n` buffered bytes contiguous in chunks[0], copying only those bytes when they are split. */
  private contiguous(n: number): void {
    const first = this.chunks[0] as Buffer;
    if (first.length - this.offset >= n) return;
    const joined = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const c = this.chunks[0] as Buffer;
      const take = Math.min(c.length - this.offset, n - filled);
      c.copy(joined, filled, this.offset, this.offset + take);
      filled += take;
      if (this.offset + take === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(this.offset + take); // the rest of the chunk, after the joined bytes
      this.offset = 0;
    }
    this.chunks.unshift(joined);
  }

  private consume(n: number): void {
    this.buffered -= n;
    this.offset += n;
    if (this.offset === (this.chunks[0] as Buffer).length) {
      this.chunks.shift();
      this.offset = 0;
    }
  }
}

/** Reads null-terminated strings and integers from a frame body. */
export class BodyReader {
  constructor(
    private readonly buf: Buffer,
    public offset: number,
  ) {}

  cstring(): string {
    const end = this.buf.indexOf(0, this.offset);
    if (end < 0) throw new ProtocolError("malformed message: unterminated string");
    const s = this.buf.toString("utf8", this.offset, end);
    this.offset = end + 1;
    return s;
  }

  int16(): number {
    if (this.offset + 2 > this.buf.length) throw new ProtocolError("malformed message: truncated");
    const v = this.buf.readInt16BE(this.offset);
    this.offset += 2;
    return v;
  }

  int32(): number {
    if (this.offset + 4 > this.buf.length) throw new ProtocolError("malformed message: truncated");
    const v = this.buf.readInt32BE(this.offset);
    this.offset += 4;
    return v;
  }
}

// --- startup-phase packets -------------------------------------------------------------------------------------

export type StartupPacket =
  | { kind: "ssl" }
  | { kind: "gssenc" }
  | { kind: "cancel"; pid: number; secret: number }
  | { kind: "startup"; params: Record<string, string> };

export function decodeStartup(frame: Frame): StartupPacket {
  const r = new BodyReader(frame.raw, 4);
  const code = r.int32();
  if (code === SSL_REQUEST) return { kind: "ssl" };
  if (code === GSSENC_REQUEST) return { kind: "gssenc" };
  if (code === CANCEL_REQUEST) return { kind: "cancel", pid: r.int32(), secret: r.int32() };
  if (code !== PROTOCOL_V3) {
    throw new ProtocolError(
      `unsupported frontend protocol ${code >> 16}.${code & 0xffff}: the gateway speaks 3.0`,
      "0A000",
    );
  }
  // No prototype: a parameter named "__proto__" is a parameter like any other (on a plain object the assignment
  // would be ignored and the parameter silently dropped; found by test/unit/fuzz-pg-wire.test.ts).
  const params: Record<string, string> = Object.create(null);
  while (r.offset < frame.raw.length - 1) {
    const key = r.cstring();
    if (key === "") break;
    params[key] = r.cstring();
  }
  return { kind: "startup", params };
}

// --- frontend messages the proxy interprets ----------------------------------------------------------------------

/** Type bytes of the frontend (client → server) messages the proxy reads from its clients. */
export const FrontendType = {
  query: 0x51, // Q
  parse: 0x50, // P
  bind: 0x42, // B
  describe: 0x44, // D
  execute: 0x45, // E
  close: 0x43, // C
  sync: 0x53, // S
  flush: 0x48, // H
  terminate: 0x58, // X
  password: 0x70, // p
  copyData: 0x64, // d
  copyDone: 0x63, // c
  copyFail: 0x66, // f
  functionCall: 0x46, // F
} as const;

export function decodeQuery(frame: Frame): string {
  return new BodyReader(frame.raw, frame.body).cstring();
}

export function decodeParse(frame: Frame): { name: string; query: string } {
  const r = new BodyReader(frame.raw, frame.body);
  return { name: r.cstring(), query: r.cstring() };
}

export function decodeBind(frame: Frame): { portal: string; statement: string } {
  const r = new BodyReader(frame.raw, frame.body);
  return { portal: r.cstring(), statement: r.cstring() };
}

export function decodeExecute(frame: Frame): { portal: string } {
  return { portal: new BodyReader(frame.raw, frame.body).cstring() };
}

/** Describe and Close: 'S' (statement) or 'P' (portal) and a name. */
export function decodeTarget(frame: Frame): { target: "S" | "P"; name: string } {
  const r = new BodyReader(frame.raw, frame.body);
  const t = frame.raw[frame.body];
  r.offset++;
  if (t !== 0x53 && t !== 0x50)
    throw new ProtocolError("malformed Describe/Close: target must be 'S' or 'P'");
  return { target: t === 0x53 ? "S" : "P", name: r.cstring() };
}

export function decodePassword(frame: Frame): string {
  return new BodyReader(frame.raw, frame.body).cstring();
}

// --- backend messages the proxy writes ----------------------------------------------------------------------------

/** A message of `type` around `body` (type byte, Int32 length, body). */
export function message(type: number, body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(body.length + 5);
  out[0] = type;
  out.writeInt32BE(body.length + 4, 1);
  body.copy(out, 5);
  return out;
}

function cstr(s: string): Buffer {
  return Buffer.from(`${s}\0`, "utf8");
}

export interface ErrorFields {
  severity?: "ERROR" | "FATAL" | "PANIC" | "WARNING" | "NOTICE";
  code: string;
  message: string;
  detail?: string;
  hint?: string;
}

function fields(f: ErrorFields): Buffer {
  const severity = f.severity ?? "ERROR";
  const parts = [
    Buffer.from("S"),
    cstr(severity),
    Buffer.from("V"),
    cstr(severity),
    Buffer.from("C"),
    cstr(f.code),
    Buffer.from("M"),
    cstr(f.message),
  ];
  if (f.detail) parts.push(Buffer.from("D"), cstr(f.detail));
  if (f.hint) parts.push(Buffer.from("H"), cstr(f.hint));
  parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

/** Builds the backend (server → client) messages pamgate itself sends to its clients. */
export const toClient = {
  errorResponse: (f: ErrorFields) => message(0x45, fields(f)),
  noticeResponse: (f: ErrorFields) => message(0x4e, fields({ severity: "NOTICE", ...f })),
  readyForQuery: (status: TxStatus) => message(0x5a, Buffer.from([status.charCodeAt(0)])),
  authCleartext: () => message(0x52, Buffer.from([0, 0, 0, 3])),
  authOk: () => message(0x52, Buffer.from([0, 0, 0, 0])),
  parameterStatus: (name: string, value: string) => message(0x53, Buffer.concat([cstr(name), cstr(value)])),
  backendKeyData: (pid: number, secret: number) => {
    const b = Buffer.allocUnsafe(8);
    b.writeInt32BE(pid, 0);
    b.writeInt32BE(secret, 4);
    return message(0x4b, b);
  },
  emptyQuery: () => message(0x49, Buffer.alloc(0)),
  /** The single byte answering SSLRequest / GSSENCRequest: 'S' to go ahead with TLS, 'N' to refuse. */
  sslAnswer: (yes: boolean) => Buffer.from(yes ? "S" : "N"),
};

// --- frontend messages the proxy writes toward the upstream server ---------------------------------------------------

/** Builds the frontend (client → server) messages pamgate itself sends to the upstream database. */
export const toServer = {
  parse: (name: string, query: string) =>
    message(FrontendType.parse, Buffer.concat([cstr(name), cstr(query), Buffer.from([0, 0])])),
  describePortal: (name: string) =>
    message(FrontendType.describe, Buffer.concat([Buffer.from("P"), cstr(name)])),
  query: (sql: string) => message(FrontendType.query, cstr(sql)),
  cancel: (pid: number, secret: number) => {
    const b = Buffer.allocUnsafe(16);
    b.writeInt32BE(16, 0);
    b.writeInt32BE(CANCEL_REQUEST, 4);
    b.writeInt32BE(pid, 8);
    b.writeInt32BE(secret, 12);
    return b;
  },
};

/** Transaction status from ReadyForQuery: idle, in a transaction block, in a failed transaction block. */
export type TxStatus = "I" | "T" | "E";

// --- backend messages the proxy reads -------------------------------------------------------------------------------

/** Type bytes of the backend (server → client) messages the proxy reads from the upstream database. */
export const BackendType = {
  parseComplete: 0x31, // 1
  bindComplete: 0x32, // 2
  closeComplete: 0x33, // 3
  commandComplete: 0x43, // C
  dataRow: 0x44, // D
  errorResponse: 0x45, // E
  copyIn: 0x47, // G
  copyOut: 0x48, // H
  copyBoth: 0x57, // W
  copyData: 0x64, // d
  copyDone: 0x63, // c
  emptyQuery: 0x49, // I
  backendKeyData: 0x4b, // K
  noData: 0x6e, // n
  notice: 0x4e, // N
  notification: 0x41, // A
  parameterStatus: 0x53, // S
  parameterDescription: 0x74, // t
  rowDescription: 0x54, // T
  readyForQuery: 0x5a, // Z
  portalSuspended: 0x73, // s
  authentication: 0x52, // R
} as const;

/** The fields of an ErrorResponse/NoticeResponse frame, keyed by their one-letter codes. */
export function decodeErrorFields(frame: Frame): Record<string, string> {
  const out: Record<string, string> = {};
  let i = frame.body;
  const raw = frame.raw;
  while (i < raw.length && raw[i] !== 0) {
    const key = String.fromCharCode(raw[i] as number);
    const end = raw.indexOf(0, i + 1);
    if (end < 0) break;
    out[key] = raw.toString("utf8", i + 1, end);
    i = end + 1;
  }
  return out;
}

export interface FieldDescription {
  name: string;
  tableOid: number;
  column: number;
  typeOid: number;
  format: number;
}

export function decodeRowDescription(frame: Frame): FieldDescription[] {
  const r = new BodyReader(frame.raw, frame.body);
  const n = r.int16();
  const out: FieldDescription[] = [];
  for (let i = 0; i < n; i++) {
    const name = r.cstring();
    const tableOid = r.int32() >>> 0;
    const column = r.int16();
    const typeOid = r.int32() >>> 0;
    r.int16(); // type size
    r.int32(); // type modifier
    const format = r.int16();
    out.push({ name, tableOid, column, typeOid, format });
  }
  return out;
}
