// SPDY/3.1 frames built for tests (the reader under test is src/proxy/kubernetes/spdy.ts): control and data
// frames, and header blocks compressed with Node's zlib and the SPDY dictionary — one context per direction and
// connection, as SPDY requires, so several blocks in a row only read right if the reader carries the context too.
import { constants, createDeflate, type Deflate } from "node:zlib";
import { SPDY_DICTIONARY } from "../../src/proxy/kubernetes/spdy.js";

export const FIN = 0x01;

/** One direction's header compressor: a single zlib context for the connection, as SPDY requires. */
export class Compressor {
  private readonly z: Deflate = createDeflate({ dictionary: SPDY_DICTIONARY, level: 9 });
  private out: Buffer[] = [];
  constructor() {
    this.z.on("data", (c: Buffer) => this.out.push(c));
  }
  block(raw: Buffer): Promise<Buffer> {
    return new Promise((resolve) => {
      this.z.write(raw);
      this.z.flush(constants.Z_SYNC_FLUSH, () => {
        resolve(Buffer.concat(this.out));
        this.out = [];
      });
    });
  }
  close(): void {
    this.z.destroy();
  }
}

/** A decompressed header block: count, then length-prefixed name and value per pair. */
export function headerBlock(pairs: Array<[string, string]>): Buffer {
  const parts = [u32(pairs.length)];
  for (const [name, value] of pairs) {
    for (const s of [name, value]) {
      const b = Buffer.from(s);
      parts.push(u32(b.length), b);
    }
  }
  return Buffer.concat(parts);
}

export function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

export function control(type: number, flags: number, body: Buffer, version = 3): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16BE(0x8000 | version, 0);
  h.writeUInt16BE(type, 2);
  h.writeUInt32BE(((flags << 24) | body.length) >>> 0, 4);
  return Buffer.concat([h, body]);
}

export function data(streamId: number, payload: string | Buffer, flags = 0): Buffer {
  const body = Buffer.from(payload);
  const h = Buffer.alloc(8);
  h.writeUInt32BE(streamId, 0);
  h.writeUInt32BE(((flags << 24) | body.length) >>> 0, 4);
  return Buffer.concat([h, body]);
}

export async function synStream(
  z: Compressor,
  id: number,
  pairs: Array<[string, string]>,
  flags = 0,
  associatedTo = 0,
): Promise<Buffer> {
  const fixed = Buffer.alloc(10);
  fixed.writeUInt32BE(id, 0);
  fixed.writeUInt32BE(associatedTo, 4);
  fixed[8] = 2 << 5; // priority 2
  return control(1, flags, Buffer.concat([fixed, await z.block(headerBlock(pairs))]));
}

export async function synReply(
  z: Compressor,
  id: number,
  pairs: Array<[string, string]>,
  flags = 0,
): Promise<Buffer> {
  return control(2, flags, Buffer.concat([u32(id), await z.block(headerBlock(pairs))]));
}

export async function headersFrame(
  z: Compressor,
  id: number,
  pairs: Array<[string, string]>,
): Promise<Buffer> {
  return control(8, 0, Buffer.concat([u32(id), await z.block(headerBlock(pairs))]));
}

export const rstStream = (id: number, status: number) => control(3, 0, Buffer.concat([u32(id), u32(status)]));
export const ping = (id: number) => control(6, 0, u32(id));
export const goaway = (last: number, status: number) =>
  control(7, 0, Buffer.concat([u32(last), u32(status)]));
export const windowUpdate = (id: number, delta: number) =>
  control(9, 0, Buffer.concat([u32(id), u32(delta)]));
export const settings = (entries: Array<[number, number, number]>) =>
  control(
    4,
    0,
    Buffer.concat([
      u32(entries.length),
      ...entries.map(([flags, id, v]) => Buffer.concat([u32((flags << 24) | id), u32(v)])),
    ]),
  );

/** The client's two streams of one forwarded connection, as client-go opens them (error first, then data). */
export async function forwardSyns(
  z: Compressor,
  firstId: number,
  port: string,
  requestId: string,
): Promise<Buffer[]> {
  const syns: Buffer[] = [];
  for (const [id, type] of [
    [firstId, "error"],
    [firstId + 2, "data"],
  ] as const)
    syns.push(
      await synStream(z, id, [
        ["streamtype", type],
        ["port", port],
        ["requestid", requestId],
      ]),
    );
  return syns;
}
