// SFTP (version 3, draft-ietf-secsh-filexfer-02, as OpenSSH speaks it) as the gateway sees it on a relayed
// subsystem channel: framing of each direction, what each client request is (so policy can decide it before
// sftp-server sees it) and the state that needs: which handle is which path, which reply answers which request,
// how many bytes moved per path.
//
// This sits on the data path of bulk transfers, so READ/WRITE/DATA are parsed in place: no payload is copied or
// sliced, a packet costs a handle-key string, a Map lookup and the operation object handed to policy.
import { isUtf8 } from "node:buffer";

export type SftpDirection = "upload" | "download" | "none";

/** One client request, as policy sees it. */
export interface SftpOperation {
  /** The request id. */
  id: number;
  op:
    | "open"
    | "close"
    | "read"
    | "write"
    | "opendir"
    | "readdir"
    | "remove"
    | "mkdir"
    | "rmdir"
    | "rename"
    | "setstat"
    | "stat"
    | "realpath"
    | "readlink"
    | "symlink"
    | "link"
    | "extended";
  /**
   * The path as the client sent it (not normalized; relative paths are relative to the server's start
   * directory). For handle ops: the path the handle was opened on, "" when the handle is not known (refuse).
   */
  path: string;
  /**
   * rename/link/symlink: the name that gets created (rename's new name, the new hard link, the symlink itself);
   * `path` is then the existing name (for symlink: what the link points to). Both must be allowed.
   */
  target?: string;
  /** open: which of read/write/append/create/truncate/exclusive. */
  flags?: string[];
  direction: SftpDirection;
  /** Changes the target's files: true exactly when direction is "upload". */
  mutating: boolean;
  /** The SSH_FXP_EXTENDED request name (also set on rename/link/setstat that came as an extension). */
  extension?: string;
  /** WRITE: payload length; READ: requested length. */
  bytes?: number;
}

/** Malformed framing, a field running past its packet, a packet over the limit, or a tracking limit hit. */
export class SftpProtocolError extends Error {
  override name = "SftpProtocolError";
}

export const SftpPacketType = {
  INIT: 1,
  VERSION: 2,
  OPEN: 3,
  CLOSE: 4,
  READ: 5,
  WRITE: 6,
  LSTAT: 7,
  FSTAT: 8,
  SETSTAT: 9,
  FSETSTAT: 10,
  OPENDIR: 11,
  READDIR: 12,
  REMOVE: 13,
  MKDIR: 14,
  RMDIR: 15,
  REALPATH: 16,
  STAT: 17,
  RENAME: 18,
  READLINK: 19,
  SYMLINK: 20,
  STATUS: 101,
  HANDLE: 102,
  DATA: 103,
  NAME: 104,
  ATTRS: 105,
  EXTENDED: 200,
  EXTENDED_REPLY: 201,
} as const;

export const SftpStatusCode = {
  OK: 0,
  EOF: 1,
  NO_SUCH_FILE: 2,
  PERMISSION_DENIED: 3,
  FAILURE: 4,
  BAD_MESSAGE: 5,
  OP_UNSUPPORTED: 8,
} as const;

const T = SftpPacketType;

/** OpenSSH's SFTP_MAX_MSG_LENGTH: sftp-server and sftp refuse longer packets. */
const OPENSSH_MAX_MESSAGE = 256 * 1024;
/** The draft caps handles at 256 bytes (OpenSSH's are 4); longer ones are never bound. */
const MAX_HANDLE = 256;

const FXF_READ = 0x01;
const FXF_WRITE = 0x02;
const FXF_APPEND = 0x04;
const FXF_CREAT = 0x08;
const FXF_TRUNC = 0x10;
const FXF_EXCL = 0x20;
// CREAT or TRUNC change the file even without WRITE (sftp-server passes O_CREAT/O_TRUNC to open(2) as given).
const FXF_CHANGES = FXF_WRITE | FXF_APPEND | FXF_CREAT | FXF_TRUNC;

const ATTR_SIZE = 0x01;
const ATTR_UIDGID = 0x02;
const ATTR_PERMISSIONS = 0x04;
const ATTR_ACMODTIME = 0x08;
const ATTR_EXTENDED = 0x80000000;

/** Builds one framed packet: number → uint32, bigint → uint64, string (UTF-8) or Buffer → SSH string. */
export function encodeSftpPacket(type: number, ...fields: Array<number | bigint | string | Buffer>): Buffer {
  let size = 5;
  for (const f of fields) {
    size += typeof f === "number" ? 4 : typeof f === "bigint" ? 8 : 4 + Buffer.byteLength(f);
  }
  const out = Buffer.allocUnsafe(size);
  out.writeUInt32BE(size - 4, 0);
  out.writeUInt8(type, 4);
  let pos = 5;
  for (const f of fields) {
    if (typeof f === "number") pos = out.writeUInt32BE(f, pos);
    else if (typeof f === "bigint") pos = out.writeBigUInt64BE(f, pos);
    else {
      const n = typeof f === "string" ? out.write(f, pos + 4, "utf8") : f.copy(out, pos + 4);
      out.writeUInt32BE(n, pos);
      pos += 4 + n;
    }
  }
  return out;
}

/**
 * Reassembles packets from one direction of the byte stream. Packets within a chunk come back as subarrays of
 * it (so the caller must not write to pushed chunks); only a packet spanning chunks is copied, once, into a
 * buffer of its exact size. After a throw the stream is unusable (the channel should be closed).
 */
export class SftpFramer {
  /** The largest accepted value of the length field (bytes after it). */
  private readonly max: number;
  /** Up to 4 bytes of a length field split across chunks. */
  private readonly head = Buffer.alloc(4);
  private headFill = 0;
  /** The packet being assembled across chunks, and how much of it is filled. */
  private partial: Buffer | null = null;
  private partialFill = 0;

  /**
   * @param maxPacketBytes the largest packet body accepted, counted as the length field counts (as OpenSSH's
   * SFTP_MAX_MSG_LENGTH does); default 256 KiB + 1 KiB — room for a 256 KiB payload plus its header and handle.
   */
  constructor(maxPacketBytes = OPENSSH_MAX_MESSAGE + 1024) {
    this.max = maxPacketBytes;
  }

  get pending(): number {
    return this.headFill + this.partialFill;
  }

  push(chunk: Buffer): Buffer[] {
    const out: Buffer[] = [];
    const n = chunk.length;
    let pos = 0;
    if (this.headFill > 0) {
      const take = Math.min(4 - this.headFill, n);
      chunk.copy(this.head, this.headFill, 0, take);
      this.headFill += take;
      pos = take;
      if (this.headFill < 4) return out;
      this.headFill = 0;
      this.partial = Buffer.allocUnsafe(4 + this.checkLength(this.head.readUInt32BE(0)));
      this.head.copy(this.partial, 0);
      this.partialFill = 4;
    }
    const partial = this.partial;
    if (partial !== null) {
      const take = Math.min(partial.length - this.partialFill, n - pos);
      chunk.copy(partial, this.partialFill, pos, pos + take);
      this.partialFill += take;
      pos += take;
      if (this.partialFill < partial.length) return out;
      out.push(partial);
      this.partial = null;
      this.partialFill = 0;
    }
    while (n - pos >= 4) {
      const total = 4 + this.checkLength(chunk.readUInt32BE(pos));
      if (n - pos < total) {
        // Allocated at its final size so the rest is one copy per chunk, never a re-concatenation.
        const p = Buffer.allocUnsafe(total);
        chunk.copy(p, 0, pos, n);
        this.partial = p;
        this.partialFill = n - pos;
        return out;
      }
      out.push(chunk.subarray(pos, pos + total));
      pos += total;
    }
    if (pos < n) {
      chunk.copy(this.head, 0, pos, n);
      this.headFill = n - pos;
    }
    return out;
  }

  private checkLength(length: number): number {
    if (length < 1) throw new SftpProtocolError("SFTP packet length 0 leaves no room for the packet type");
    if (length > this.max) {
      throw new SftpProtocolError(`SFTP packet of ${length} bytes exceeds the limit of ${this.max} bytes`);
    }
    return length;
  }
}

/** Bytes moved for one path. */
interface Counter {
  read: number;
  written: number;
}

/** A handle the server gave out, and what it was opened on. */
class Handle {
  counter: Counter | null = null;
  constructor(
    readonly key: string,
    readonly path: string,
    readonly pflags: number,
    readonly dir: boolean,
  ) {}
}

/** What a reply to a tracked request needs to know (one shape for all, so the hot path stays monomorphic). */
class Pending {
  constructor(
    readonly type: number,
    readonly path: string,
    readonly pflags: number,
    /** READ: the handle read (its counter is made on the first DATA); CLOSE: the handle closed. */
    readonly handle: Handle | null,
    /** WRITE: where its bytes were counted, to take them back when refused or failed. */
    readonly counter: Counter | null,
    readonly bytes: number,
  ) {}
}

/** Reads fields of one packet in place; error messages name the packet type and the field. */
class Cursor {
  buf: Buffer = Buffer.alloc(0);
  pos = 0;
  what = "";
  /** Bounds of the last string read. */
  start = 0;
  end = 0;

  u32(field: string): number {
    if (this.buf.length - this.pos < 4) this.overrun(field, 4);
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  skip(bytes: number, field: string): void {
    if (this.buf.length - this.pos < bytes) this.overrun(field, bytes);
    this.pos += bytes;
  }

  string(field: string): number {
    const length = this.u32(`${field} length`);
    if (this.buf.length - this.pos < length) this.overrun(field, length);
    this.start = this.pos;
    this.pos += length;
    this.end = this.pos;
    return length;
  }

  /** A string that must be UTF-8 without NUL (OpenSSH reads them as C strings: a NUL would cut what it sees). */
  text(field: string): string {
    this.string(field);
    const bytes = this.buf.subarray(this.start, this.end);
    if (bytes.includes(0)) throw new SftpProtocolError(`${this.what}: ${field} contains a NUL byte`);
    if (!isUtf8(bytes)) throw new SftpProtocolError(`${this.what}: ${field} is not valid UTF-8`);
    return bytes.toString("utf8");
  }

  /** Skips an ATTRS structure; every present field must fit (as sftp-server's decode_attrib demands). */
  attrs(): void {
    const flags = this.u32("attrs flags");
    if (flags & ATTR_SIZE) this.skip(8, "attrs size");
    if (flags & ATTR_UIDGID) this.skip(8, "attrs uid/gid");
    if (flags & ATTR_PERMISSIONS) this.skip(4, "attrs permissions");
    if (flags & ATTR_ACMODTIME) this.skip(8, "attrs atime/mtime");
    if (flags & ATTR_EXTENDED) {
      const count = this.u32("attrs extended count");
      for (let i = 0; i < count; i++) {
        this.string("attrs extended type");
        this.string("attrs extended data");
      }
    }
  }

  private overrun(field: string, need: number): never {
    throw new SftpProtocolError(
      `${this.what}: ${field} (${need} bytes) runs past the end of the packet (${this.buf.length - this.pos} left)`,
    );
  }
}

const NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(SftpPacketType).map(([k, v]) => [v, k]),
);

function flagNames(pflags: number): string[] {
  const out: string[] = [];
  if (pflags & FXF_READ) out.push("read");
  if (pflags & FXF_WRITE) out.push("write");
  if (pflags & FXF_APPEND) out.push("append");
  if (pflags & FXF_CREAT) out.push("create");
  if (pflags & FXF_TRUNC) out.push("truncate");
  if (pflags & FXF_EXCL) out.push("exclusive");
  return out;
}

function operation(
  id: number,
  op: SftpOperation["op"],
  path: string,
  direction: SftpDirection,
): SftpOperation {
  return { id, op, path, direction, mutating: direction === "upload" };
}

export interface SftpSessionLimits {
  /** Requests awaiting a reply that need one tracked (OPEN, OPENDIR, READ, WRITE, CLOSE); default 4096. */
  maxOutstanding?: number;
  /** Open handles plus OPEN/OPENDIR awaiting theirs; default 1024. */
  maxHandles?: number;
  /** Distinct paths counted in bytesByPath; bytes of further paths are counted under "". Default 10000. */
  maxPaths?: number;
}

/**
 * Per-channel state: handle → path, outstanding request ids, bytes per path.
 *
 * A handle is forgotten when the server answers its CLOSE with STATUS OK (a refused CLOSE keeps it open, and a
 * failed one leaves it to the server, which may still hold it). Written bytes are counted when the WRITE is
 * parsed and taken back if it is refused or fails; read bytes when the DATA arrives. The caller must call
 * refused() for every request it answers itself, or its tracking stays until the outstanding limit is hit.
 */
export class SftpSession {
  private readonly handles = new Map<string, Handle>();
  private readonly outstanding = new Map<number, Pending>();
  private readonly counters = new Map<string, Counter>();
  private opening = 0;
  private readonly c = new Cursor();
  private readonly maxOutstanding: number;
  private readonly maxHandles: number;
  private readonly maxPaths: number;

  constructor(limits: SftpSessionLimits = {}) {
    this.maxOutstanding = limits.maxOutstanding ?? 4096;
    this.maxHandles = limits.maxHandles ?? 1024;
    this.maxPaths = limits.maxPaths ?? 10000;
  }

  clientPacket(packet: Buffer): SftpOperation | null {
    const c = this.begin(packet);
    const type = packet.readUInt8(4);
    c.what = NAMES[type] ?? `packet type ${type}`;
    if (type === T.INIT) {
      c.u32("version");
      return null;
    }
    const id = c.u32("request id");
    switch (type) {
      case T.OPEN: {
        const path = c.text("filename");
        const pflags = c.u32("pflags");
        c.attrs();
        this.expectHandle(id, T.OPEN, path, pflags);
        const changes = (pflags & FXF_CHANGES) !== 0;
        return {
          id,
          op: "open",
          path,
          flags: flagNames(pflags),
          direction: changes ? "upload" : "download",
          mutating: changes,
        };
      }
      case T.OPENDIR: {
        const path = c.text("path");
        this.expectHandle(id, T.OPENDIR, path, 0);
        // Listing is reading: the same direction as readdir on the handle it yields.
        return operation(id, "opendir", path, "download");
      }
      case T.CLOSE: {
        const h = this.handle("handle");
        if (h !== undefined) this.track(id, new Pending(T.CLOSE, h.path, 0, h, null, 0));
        return operation(id, "close", h?.path ?? "", "none");
      }
      case T.READ: {
        const h = this.handle("handle");
        c.skip(8, "offset");
        const length = c.u32("length");
        this.track(id, new Pending(T.READ, "", 0, h ?? null, null, 0));
        return { id, op: "read", path: h?.path ?? "", direction: "download", mutating: false, bytes: length };
      }
      case T.WRITE: {
        const h = this.handle("handle");
        c.skip(8, "offset");
        const length = c.string("data");
        const counter = this.counterOf(h);
        this.track(id, new Pending(T.WRITE, "", 0, null, counter, length));
        counter.written += length;
        return { id, op: "write", path: h?.path ?? "", direction: "upload", mutating: true, bytes: length };
      }
      case T.READDIR:
        return operation(id, "readdir", this.handle("handle")?.path ?? "", "download");
      case T.LSTAT:
      case T.STAT:
        return operation(id, "stat", c.text("path"), "none");
      case T.FSTAT:
        return operation(id, "stat", this.handle("handle")?.path ?? "", "none");
      case T.SETSTAT: {
        const path = c.text("path");
        c.attrs();
        return operation(id, "setstat", path, "upload");
      }
      case T.FSETSTAT: {
        const path = this.handle("handle")?.path ?? "";
        c.attrs();
        return operation(id, "setstat", path, "upload");
      }
      case T.REMOVE:
        return operation(id, "remove", c.text("filename"), "upload");
      case T.MKDIR: {
        const path = c.text("path");
        c.attrs();
        return operation(id, "mkdir", path, "upload");
      }
      case T.RMDIR:
        return operation(id, "rmdir", c.text("path"), "upload");
      case T.REALPATH:
        return operation(id, "realpath", c.text("path"), "none");
      case T.READLINK:
        return operation(id, "readlink", c.text("path"), "none");
      case T.RENAME: {
        const op = operation(id, "rename", c.text("oldpath"), "upload");
        op.target = c.text("newpath");
        return op;
      }
      case T.SYMLINK: {
        // OpenSSH sends these in the opposite order to the draft (its PROTOCOL file says so): first what the
        // link points to, then the link to create — symlink(first, second). The upstream is OpenSSH.
        const op = operation(id, "symlink", c.text("targetpath"), "upload");
        op.target = c.text("linkpath");
        return op;
      }
      case T.EXTENDED:
        return this.extended(id);
      default: {
        // sftp-server answers OP_UNSUPPORTED; reported like an unknown extension so policy refuses it.
        const op = operation(id, "extended", "", "upload");
        op.extension = `unknown-type-${type}`;
        return op;
      }
    }
  }

  private extended(id: number): SftpOperation {
    const c = this.c;
    const extension = c.text("extension name");
    c.what = `EXTENDED ${extension}`;
    let op: SftpOperation;
    switch (extension) {
      case "posix-rename@openssh.com":
        op = operation(id, "rename", c.text("oldpath"), "upload");
        op.target = c.text("newpath");
        break;
      case "hardlink@openssh.com":
        op = operation(id, "link", c.text("oldpath"), "upload");
        op.target = c.text("newpath");
        break;
      case "lsetstat@openssh.com":
        op = operation(id, "setstat", c.text("path"), "upload");
        c.attrs();
        break;
      case "fsync@openssh.com":
      case "fstatvfs@openssh.com":
        op = operation(id, "extended", this.handle("handle")?.path ?? "", "none");
        break;
      case "statvfs@openssh.com":
      case "expand-path@openssh.com":
        op = operation(id, "extended", c.text("path"), "none");
        break;
      case "limits@openssh.com":
        op = operation(id, "extended", "", "none");
        break;
      case "home-directory":
        c.text("username");
        op = operation(id, "extended", "", "none");
        break;
      case "users-groups-by-id@openssh.com":
        c.string("uids");
        c.string("gids");
        op = operation(id, "extended", "", "none");
        break;
      case "copy-data": {
        // Server-side copy from one handle to another: it writes the destination. Either handle unknown → "".
        const from = this.handle("read-from handle");
        c.skip(16, "read-from offset and length");
        const to = this.handle("write-to handle");
        c.skip(8, "write-to offset");
        op = operation(id, "extended", from === undefined ? "" : (to?.path ?? ""), "upload");
        break;
      }
      default:
        // Unknown to the gateway, so it cannot say what it touches: fail closed.
        op = operation(id, "extended", "", "upload");
    }
    op.extension = extension;
    return op;
  }

  serverPacket(packet: Buffer): void {
    const c = this.begin(packet);
    const type = packet.readUInt8(4);
    c.what = NAMES[type] ?? `packet type ${type}`;
    if (type === T.VERSION) {
      // Every field is read as version 3 lays it out; a server speaking another version would be misread.
      const version = c.u32("version");
      if (version !== 3) throw new SftpProtocolError(`the server speaks SFTP version ${version}, not 3`);
      return;
    }
    // Not a reply type: nothing to learn (the client will complain).
    if ((type < T.STATUS || type > T.ATTRS) && type !== T.EXTENDED_REPLY) return;
    const id = c.u32("request id");
    const p = this.outstanding.get(id);
    switch (type) {
      case T.DATA: {
        const length = c.string("data");
        if (p === undefined) return;
        this.settle(id, p);
        if (p.type !== T.READ) return;
        this.counterOf(p.handle).read += length;
        return;
      }
      case T.STATUS: {
        const code = c.u32("status code");
        if (p === undefined) return;
        this.settle(id, p);
        if (p.type === T.CLOSE && code === SftpStatusCode.OK) {
          const h = p.handle as Handle;
          // Only if still this binding: a reply out of order may already have bound the key anew.
          if (this.handles.get(h.key) === h) this.handles.delete(h.key);
        } else if (p.type === T.WRITE && code !== SftpStatusCode.OK && p.counter !== null) {
          p.counter.written -= p.bytes;
        }
        return;
      }
      case T.HANDLE: {
        const length = c.string("handle");
        if (p === undefined) return;
        this.settle(id, p);
        if (p.type !== T.OPEN && p.type !== T.OPENDIR) return;
        if (length > MAX_HANDLE) {
          throw new SftpProtocolError(
            `HANDLE: a handle of ${length} bytes is over the ${MAX_HANDLE}-byte limit`,
          );
        }
        const key = packet.toString("latin1", c.start, c.end);
        this.handles.set(key, new Handle(key, p.path, p.pflags, p.type === T.OPENDIR));
        return;
      }
      default:
        // NAME, ATTRS, EXTENDED_REPLY: only close out the request.
        if (p !== undefined) this.settle(id, p);
    }
  }

  refusal(id: number, message: string, code: number = SftpStatusCode.PERMISSION_DENIED): Buffer {
    return encodeSftpPacket(T.STATUS, id, code, message, "");
  }

  bytesByPath(): Map<string, { read: number; written: number }> {
    const out = new Map<string, { read: number; written: number }>();
    for (const [path, c] of this.counters) {
      // A counter can be back at zero after refused or failed writes: nothing moved.
      if (c.read !== 0 || c.written !== 0) out.set(path, { read: c.read, written: c.written });
    }
    return out;
  }

  refused(id: number): void {
    const p = this.outstanding.get(id);
    if (p === undefined) return;
    this.settle(id, p);
    if (p.type === T.WRITE && p.counter !== null) p.counter.written -= p.bytes;
  }

  /** Checks the packet's own length and aims the cursor past the type byte. */
  private begin(packet: Buffer): Cursor {
    if (packet.length < 5 || packet.readUInt32BE(0) !== packet.length - 4) {
      throw new SftpProtocolError(
        `SFTP packet of ${packet.length} bytes does not match its length field${packet.length >= 4 ? ` (${packet.readUInt32BE(0)})` : ""}`,
      );
    }
    const c = this.c;
    c.buf = packet;
    c.pos = 5;
    return c;
  }

  /** Reads a handle field and finds what it was opened on; undefined when unknown (never given out, or closed). */
  private handle(field: string): Handle | undefined {
    const c = this.c;
    const length = c.string(field);
    if (length > MAX_HANDLE) return undefined;
    return this.handles.get(c.buf.toString("latin1", c.start, c.end));
  }

  private expectHandle(id: number, type: number, path: string, pflags: number): void {
    if (this.handles.size + this.opening >= this.maxHandles) {
      throw new SftpProtocolError(`too many open handles (limit ${this.maxHandles})`);
    }
    this.track(id, new Pending(type, path, pflags, null, null, 0));
    this.opening++;
  }

  private track(id: number, p: Pending): void {
    // A reused id would make the replies ambiguous (which OPEN's handle is this?), so it is not allowed.
    if (this.outstanding.has(id)) throw new SftpProtocolError(`request id ${id} is already awaiting a reply`);
    if (this.outstanding.size >= this.maxOutstanding) {
      throw new SftpProtocolError(`too many requests awaiting replies (limit ${this.maxOutstanding})`);
    }
    this.outstanding.set(id, p);
  }

  private settle(id: number, p: Pending): void {
    this.outstanding.delete(id);
    if (p.type === T.OPEN || p.type === T.OPENDIR) this.opening--;
  }

  /** The handle's counter, made on first use; bytes through an unknown handle count under "". */
  private counterOf(h: Handle | null | undefined): Counter {
    if (h == null) return this.counterFor("");
    if (h.counter === null) h.counter = this.counterFor(h.path);
    return h.counter;
  }

  private counterFor(path: string): Counter {
    let counter = this.counters.get(path);
    if (counter === undefined) {
      if (path !== "" && this.counters.size >= this.maxPaths) return this.counterFor("");
      counter = { read: 0, written: 0 };
      this.counters.set(path, counter);
    }
    return counter;
  }
}
