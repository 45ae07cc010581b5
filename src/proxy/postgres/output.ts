// The upstream → client byte stream, written with as few socket writes as possible.
//
// A large result is hundreds of thousands of frames; a write (and a Buffer) per frame costs more than the frames'
// bytes. So frames that pass unchanged are queued as a stretch of the upstream chunk they arrived in, extended
// while the next frame follows on in the same chunk, and go out as one subarray. Rewritten frames (masked rows)
// are written into a slab, one after another, so a run of them is one contiguous stretch as well.
//
// Nothing queued is ever written to again: upstream chunks are only read, and the slab hands out each byte once
// (a full slab is replaced, never reused), so the socket may hold on to what it was given for as long as it needs.

/** Slab size: large enough that a chunk of masked rows rarely spans two. */
const SLAB = 256 * 1024;

export class ClientOutput {
  /** The queued stretch: bytes [start, end) of buf (null: nothing queued). */
  private buf: Buffer | null = null;
  private start = 0;
  private end = 0;
  private slab: Buffer | null = null;
  private used = 0;

  /** @param write sends one buffer to the client (and deals with its backpressure). */
  constructor(private readonly write: (buf: Buffer) => void) {}

  /** Queues bytes [start, end) of `buf`, which must not change afterwards. */
  add(buf: Buffer, start: number, end: number): void {
    if (buf === this.buf && start === this.end) {
      this.end = end;
      return;
    }
    this.flush();
    this.buf = buf;
    this.start = start;
    this.end = end;
  }

  /** Queues a whole buffer (a frame the session built itself). */
  addBuffer(buf: Buffer): void {
    this.add(buf, 0, buf.length);
  }

  /**
   * A slab with at least `n` free bytes from `slabOffset` on, to write a rewritten frame into; `commit` then
   * queues what was written.
   */
  reserve(n: number): Buffer {
    if (!this.slab || this.slab.length - this.used < n) {
      this.slab = Buffer.allocUnsafe(Math.max(SLAB, n));
      this.used = 0;
    }
    return this.slab;
  }

  get slabOffset(): number {
    return this.used;
  }

  /** Queues the `n` bytes just written at `slabOffset` of the reserved slab. */
  commit(n: number): void {
    const slab = this.slab as Buffer;
    this.add(slab, this.used, this.used + n);
    this.used += n;
  }

  /** Writes what is queued. */
  flush(): void {
    const buf = this.buf;
    if (!buf) return;
    this.buf = null;
    if (this.end > this.start) this.write(buf.subarray(this.start, this.end));
  }

  /** Drops what is queued (the client is gone). */
  discard(): void {
    this.buf = null;
  }

  /**
   * Lets go of the slab (at the end of a response): an idle session holds no output memory. What is queued or
   * in the socket keeps its own reference.
   */
  release(): void {
    this.slab = null;
    this.used = 0;
  }
}
