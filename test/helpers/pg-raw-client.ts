// A PostgreSQL client on a raw socket, for tests that send what no real client would: it logs in with a token,
// then writes any bytes and reads the backend frames that come back (test/integration/fuzz-gateway.test.ts).
import { connect, type Socket } from "node:net";
import { fe, startupMessage } from "./pg-frames.js";

export interface BackendFrame {
  type: string;
  body: Buffer;
}

export class RawPgClient {
  /** Bytes received and not yet parsed into frames. */
  private pending: Buffer = Buffer.alloc(0);
  /** Every backend frame received, in order. */
  readonly frames: BackendFrame[] = [];
  /** All bytes received (for leak checks). */
  receivedBytes = 0;
  private readonly chunks: Buffer[] = [];
  closed = false;
  private wake: (() => void) | null = null;

  private constructor(readonly socket: Socket) {
    socket.on("data", (c: Buffer) => {
      this.receivedBytes += c.length;
      this.chunks.push(c);
      this.pending = this.pending.length ? Buffer.concat([this.pending, c]) : c;
      while (this.pending.length >= 5) {
        const len = this.pending.readInt32BE(1);
        if (this.pending.length < len + 1) break;
        this.frames.push({
          type: String.fromCharCode(this.pending[0] as number),
          body: this.pending.subarray(5, len + 1),
        });
        this.pending = this.pending.subarray(len + 1);
      }
      this.wake?.();
    });
    socket.on("close", () => {
      this.closed = true;
      this.wake?.();
    });
    socket.on("error", () => {});
  }

  /** Everything received so far, as one buffer. */
  received(): Buffer {
    return Buffer.concat(this.chunks);
  }

  /** Connects, logs in with `token` as the password, and waits for ReadyForQuery; throws on a refusal. */
  static async login(
    port: number,
    token: string,
    opts: { database?: string; user?: string; localAddress?: string; timeoutMs?: number } = {},
  ): Promise<RawPgClient> {
    const socket = connect({ host: "127.0.0.1", port, localAddress: opts.localAddress });
    socket.setNoDelay(true);
    const c = new RawPgClient(socket);
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    socket.write(
      startupMessage([
        ["user", opts.user ?? "fuzz"],
        ["database", opts.database ?? "orders-db"],
      ]),
    );
    const timeout = opts.timeoutMs ?? 15_000;
    if (!(await c.until((f) => f.type === "R" || f.type === "E", timeout)) || c.last()?.type !== "R")
      throw new Error(`no password request: ${c.describe()}`);
    socket.write(fe.password(token));
    if (!(await c.until((f) => f.type === "Z" || f.type === "E", timeout)) || c.last()?.type !== "Z")
      throw new Error(`login failed: ${c.describe()}`);
    return c;
  }

  last(): BackendFrame | undefined {
    return this.frames[this.frames.length - 1];
  }

  write(b: Buffer): void {
    if (!this.closed) this.socket.write(b);
  }

  /**
   * Waits until a frame received from now on (or from frame index `from`) satisfies `pred` (true), or the
   * connection closes or `ms` pass (false). `lastMatch` is then the index of the frame that matched.
   */
  lastMatch = -1;
  async until(pred: (f: BackendFrame) => boolean, ms: number, from = this.frames.length): Promise<boolean> {
    const deadline = Date.now() + ms;
    let seen = from;
    for (;;) {
      for (; seen < this.frames.length; seen++) {
        if (pred(this.frames[seen] as BackendFrame)) {
          this.lastMatch = seen;
          return true;
        }
      }
      if (this.closed) return false;
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          this.wake = null;
          resolve();
        };
      });
    }
  }

  /** Waits until nothing has arrived for `quietMs` (at most `maxMs` in all). */
  async quiet(quietMs: number, maxMs: number): Promise<void> {
    const end = Date.now() + maxMs;
    let n = -1;
    while (!this.closed && Date.now() < end && n !== this.receivedBytes) {
      n = this.receivedBytes;
      await new Promise((r) => setTimeout(r, quietMs));
    }
  }

  /** Sends a simple Query and returns the frames up to its ReadyForQuery (null if none came in `ms`). */
  async query(sql: string, ms = 15_000): Promise<BackendFrame[] | null> {
    const from = this.frames.length;
    this.write(fe.query(sql));
    if (!(await this.until((f) => f.type === "Z", ms))) return null;
    return this.frames.slice(from);
  }

  /** The last frames, for messages. */
  describe(): string {
    return JSON.stringify(
      this.frames
        .slice(-4)
        .map((f) => `${f.type}:${f.body.toString("latin1").replace(/\0/g, "|").slice(0, 160)}`),
    );
  }

  close(): void {
    this.socket.destroy();
  }
}

/** The text of an ErrorResponse/NoticeResponse field (M: message, C: code, S: severity). */
export function errorField(f: BackendFrame, code: string): string | undefined {
  let i = 0;
  while (i < f.body.length && f.body[i] !== 0) {
    const key = String.fromCharCode(f.body[i] as number);
    const end = f.body.indexOf(0, i + 1);
    if (end < 0) return undefined;
    if (key === code) return f.body.toString("utf8", i + 1, end);
    i = end + 1;
  }
  return undefined;
}

/** The values of a DataRow frame as text (null for NULL). */
export function dataRowValues(f: BackendFrame): Array<string | null> {
  const n = f.body.readInt16BE(0);
  const out: Array<string | null> = [];
  let at = 2;
  for (let i = 0; i < n; i++) {
    const len = f.body.readInt32BE(at);
    at += 4;
    if (len < 0) out.push(null);
    else {
      out.push(f.body.toString("utf8", at, at + len));
      at += len;
    }
  }
  return out;
}
