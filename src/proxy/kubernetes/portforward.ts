// Port-forward streams checked, each one's port allowed, before the cluster sees them.
//
// Over SPDY the kubelet forwards each stream to the port its SYN_STREAM names (spdy.ts), not to the ports the
// request was decided on (?ports=, which only the WebSocket protocols read). Checking copies of bytes that are
// relayed in parallel would not stop anything: header blocks are inflated, and ports decided, asynchronously, so
// a SYN_STREAM for a port nobody allowed could reach the kubelet before its check fails. So the client's bytes of
// such a tunnel are held here and written to the cluster only once every frame before them has been read and
// allowed — a port the caller (`allowPort`) takes its time over, a policy decision held for an approval, holds
// the stream and everything after it; a stream whose port is refused (or that names none) ends the tunnel, and its
// frame never leaves pamgate. Data frames are not waited on beyond being read: data reaches only streams the
// kubelet accepted, and those were all checked.
//
// Two framings carry such SPDY: the SPDY/3.1 upgrade itself (kubectl with KUBECTL_PORT_FORWARD_WEBSOCKETS=false,
// and before 1.31), and WebSocket binary messages when the client offers a `SPDY/3.1+portforward.k8s.io` protocol —
// kubectl's default since 1.31 (PortForwardWebsockets): the apiserver unwraps the messages into a SPDY connection
// to the kubelet. For the latter the client's WebSocket frames are split (ClientWebSocketFrames) into their
// headers and their unmasked payloads, the SPDY; the bytes relayed are the frames as sent.
//
// Bounded: while a header block is being inflated or a port decided the client socket is paused; otherwise what
// is held is the frame in progress (the reader's bounds: a control frame's size, a data frame's 16 MiB).
import type { Socket } from "node:net";
import { type AllowPort, type PortForwardRefusal, SpdyPortForward } from "./spdy.js";

export interface PortForwardGateOptions {
  /** Whether a stream may go to a port (asked once per port; the stream waits for the answer). */
  allowPort: AllowPort;
  /** The SPDY comes inside the client's WebSocket frames (the SPDY/3.1+ tunnel protocol). */
  websocket: boolean;
  /** The client: paused while a check is pending or the cluster is not draining. */
  from: Pick<Socket, "pause" | "resume">;
  /** The cluster: gets the client's bytes once checked, as they were sent. */
  to: Pick<Socket, "write" | "end" | "once">;
  /** A stream was refused: nothing from it on was written; the caller closes the tunnel. */
  refused(refusal: PortForwardRefusal): void;
  /** The client's bytes could not be read: nothing from there on was written; the caller closes the tunnel. */
  unparsable(err: Error): void;
}

/** Bytes as the client sent them; `length` of them, from SPDY offset `start`, are SPDY (0: none, a frame header). */
interface Held {
  raw: Buffer;
  start: number;
  length: number;
}

/** The client→cluster relay of a SPDY port-forward tunnel: each frame written only after it was checked. */
export class PortForwardGate {
  private readonly spdy: SpdyPortForward;
  private readonly frames: ClientWebSocketFrames | null;
  private readonly held: Held[] = [];
  /** SPDY bytes given to the reader. */
  private fed = 0;
  /** SPDY bytes read and allowed. */
  private checked = 0;
  /** A header block is being inflated, or a port decided: the client waits. */
  private checking = false;
  /** The cluster's socket is not draining: the client waits. */
  private blocked = false;
  private paused = false;
  private ending = false;
  private done = false;

  constructor(private readonly opts: PortForwardGateOptions) {
    this.frames = opts.websocket ? new ClientWebSocketFrames() : null;
    this.spdy = new SpdyPortForward(opts.allowPort, {
      checked: (offset) => {
        this.checked = offset;
        this.release();
      },
      refused: (r) => this.stop(() => opts.refused(r)),
      error: (err) => this.stop(() => opts.unparsable(err)),
    });
  }

  /** Bytes from the client. */
  write(chunk: Buffer): void {
    if (this.done || chunk.length === 0) return;
    let pieces: Array<{ raw: Buffer; payload: Buffer | null }>;
    try {
      pieces = this.frames ? this.frames.split(chunk) : [{ raw: chunk, payload: chunk }];
    } catch (err) {
      this.stop(() => this.opts.unparsable(err instanceof Error ? err : new Error(String(err))));
      return;
    }
    for (const { raw, payload } of pieces) {
      // Held before it is read: the reader may hand its frames on (and release them) at once.
      this.held.push({ raw, start: this.fed, length: payload ? payload.length : 0 });
      if (payload) {
        this.fed += payload.length;
        this.spdy.fromClient(payload);
      }
      if (this.done) return;
    }
    this.release();
    this.waitForChecks();
  }

  /** The client sent its last byte: the cluster's side ends once what was checked is written. */
  end(): void {
    this.ending = true;
    this.finishIfEnded();
  }

  /** The tunnel is over. */
  close(): void {
    this.done = true;
    this.held.length = 0;
    this.spdy.end();
  }

  private waitForChecks(): void {
    if (this.checking || this.done || this.spdy.idle) return;
    this.checking = true;
    this.update();
    void this.spdy.drained().then(() => {
      this.checking = false;
      this.waitForChecks();
      this.finishIfEnded();
      this.update();
    });
  }

  /** Writes the held bytes up to the first SPDY byte not yet checked. */
  private release(): void {
    while (!this.done) {
      const h = this.held[0];
      if (!h) return;
      // A piece that carries no SPDY goes once everything before it went.
      const ok = h.length === 0 ? 0 : Math.min(h.length, this.checked - h.start);
      if (h.length > 0 && ok <= 0) return;
      if (ok < h.length) {
        // A frame that is checked ends inside this piece (a data frame may share a chunk with a SYN_STREAM).
        this.send(h.raw.subarray(0, ok));
        h.raw = h.raw.subarray(ok);
        h.start += ok;
        h.length -= ok;
        return;
      }
      this.held.shift();
      this.send(h.raw);
    }
  }

  private send(b: Buffer): void {
    if (b.length === 0 || this.opts.to.write(b) || this.blocked) return;
    this.blocked = true;
    this.update();
    this.opts.to.once("drain", () => {
      this.blocked = false;
      this.update();
    });
  }

  private finishIfEnded(): void {
    if (!this.ending || this.done || this.checking) return;
    // What is still held is a frame the client never finished: it is not sent.
    this.done = true;
    this.held.length = 0;
    this.opts.to.end();
    this.spdy.end();
  }

  private update(): void {
    const wait = !this.done && (this.checking || this.blocked);
    if (wait === this.paused) return;
    this.paused = wait;
    if (wait) this.opts.from.pause();
    else this.opts.from.resume();
  }

  private stop(report: () => void): void {
    if (this.done) return;
    this.close();
    report();
  }
}

const OP_CONTINUATION = 0x0;
const OP_TEXT = 0x1;
const OP_BINARY = 0x2;
const OP_CLOSE = 0x8;
const OP_PING = 0x9;
const OP_PONG = 0xa;

/**
 * A client's WebSocket frames (RFC 6455 §5.2), read as they come, split into the bytes that carry the tunnelled
 * SPDY — the payloads of binary messages, with their unmasked copy — and the bytes that do not (frame headers,
 * control frames). Anything the tunnel would not carry is an error (thrown): a text message (the apiserver's
 * TunnelingConnection fails on one), an unmasked frame (a server must fail it), reserved bits (pamgate offers no
 * extension upstream), an unknown opcode.
 */
export class ClientWebSocketFrames {
  /** The header of the next frame, as far as it has come. */
  private header = Buffer.alloc(0);
  /** Payload bytes of the current frame still to come. */
  private remaining = 0;
  private readonly mask = Buffer.alloc(4);
  private maskAt = 0;
  /** The current frame's payload is SPDY. */
  private carries = false;
  /** A fragmented binary message is in progress. */
  private inMessage = false;

  split(chunk: Buffer): Array<{ raw: Buffer; payload: Buffer | null }> {
    const out: Array<{ raw: Buffer; payload: Buffer | null }> = [];
    let off = 0;
    while (off < chunk.length) {
      if (this.remaining > 0) {
        const n = Math.min(this.remaining, chunk.length - off);
        const raw = chunk.subarray(off, off + n);
        out.push({ raw, payload: this.carries ? this.unmask(raw) : null });
        this.remaining -= n;
        off += n;
        continue;
      }
      const n = Math.min(this.headerLength() - this.header.length, chunk.length - off);
      const raw = chunk.subarray(off, off + n);
      out.push({ raw, payload: null });
      this.header = Buffer.concat([this.header, raw]);
      off += n;
      if (this.header.length === 2 && !((this.header[1] as number) & 0x80))
        throw new Error("an unmasked WebSocket frame from the client");
      if (this.header.length === this.headerLength()) this.frame();
    }
    return out;
  }

  /** 2 bytes, the extended length, the mask (client frames are masked; checked once the 2 bytes are in). */
  private headerLength(): number {
    if (this.header.length < 2) return 2;
    const len7 = (this.header[1] as number) & 0x7f;
    return 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + 4;
  }

  private frame(): void {
    const h = this.header;
    this.header = Buffer.alloc(0);
    const b0 = h[0] as number;
    const fin = (b0 & 0x80) !== 0;
    const opcode = b0 & 0x0f;
    if (b0 & 0x70) throw new Error("a WebSocket frame with reserved bits set (no extension was negotiated)");
    const len7 = (h[1] as number) & 0x7f;
    let length = len7;
    if (len7 === 126) length = h.readUInt16BE(2);
    else if (len7 === 127) {
      const big = h.readBigUInt64BE(2);
      if (big > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error("a WebSocket frame of impossible length");
      length = Number(big);
    }
    h.copy(this.mask, 0, h.length - 4);
    this.maskAt = 0;
    this.remaining = length;
    if (opcode === OP_BINARY || opcode === OP_CONTINUATION) {
      if ((opcode === OP_BINARY) === this.inMessage)
        throw new Error(
          opcode === OP_BINARY
            ? "a WebSocket message begun inside another"
            : "a WebSocket continuation frame outside a message",
        );
      this.inMessage = !fin;
      this.carries = true;
    } else if (opcode === OP_CLOSE || opcode === OP_PING || opcode === OP_PONG) this.carries = false;
    else if (opcode === OP_TEXT) throw new Error("a WebSocket text message in a SPDY tunnel");
    else throw new Error(`a WebSocket frame of unknown opcode ${opcode}`);
  }

  private unmask(raw: Buffer): Buffer {
    const out = Buffer.allocUnsafe(raw.length);
    for (let i = 0; i < raw.length; i++) {
      out[i] = (raw[i] as number) ^ (this.mask[this.maskAt] as number);
      this.maskAt = (this.maskAt + 1) & 3;
    }
    return out;
  }
}
