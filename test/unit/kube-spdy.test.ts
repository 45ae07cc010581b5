// The SPDY/3.1 reader behind the recording of kubectl's SPDY exec/attach (src/proxy/kubernetes/spdy.ts). Frames
// are built here, header blocks compressed with Node's zlib and the SPDY dictionary, one context per direction,
// several blocks in a row (so a reader that did not carry the context could not read the later ones). Checked:
// every frame type, a connection cut at every byte (and one byte per chunk), the remotecommand streams (stdin,
// stdout, stderr, error, resize — resize lines split across frames), and malformed input — a bad version, an
// oversized length, a garbage header block, a block out of order, too many streams — ending in one parse error,
// never a throw.
import { constants, createDeflate, type Deflate } from "node:zlib";
import t from "tap";
import {
  MAX_HEADER_BLOCK_BYTES,
  MAX_STREAMS,
  type RemoteCommandStream,
  SPDY_DICTIONARY,
  type SpdyFrame,
  SpdyParseError,
  SpdyReader,
  SpdyRemoteCommand,
} from "../../src/proxy/kubernetes/spdy.js";

const FIN = 0x01;

/** One direction's header compressor: a single zlib context for the connection, as SPDY requires. */
class Compressor {
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
function headerBlock(pairs: Array<[string, string]>): Buffer {
  const parts = [u32(pairs.length)];
  for (const [name, value] of pairs) {
    for (const s of [name, value]) {
      const b = Buffer.from(s);
      parts.push(u32(b.length), b);
    }
  }
  return Buffer.concat(parts);
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

function control(type: number, flags: number, body: Buffer, version = 3): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16BE(0x8000 | version, 0);
  h.writeUInt16BE(type, 2);
  h.writeUInt32BE(((flags << 24) | body.length) >>> 0, 4);
  return Buffer.concat([h, body]);
}

function data(streamId: number, payload: string | Buffer, flags = 0): Buffer {
  const body = Buffer.from(payload);
  const h = Buffer.alloc(8);
  h.writeUInt32BE(streamId, 0);
  h.writeUInt32BE(((flags << 24) | body.length) >>> 0, 4);
  return Buffer.concat([h, body]);
}

async function synStream(
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

async function synReply(
  z: Compressor,
  id: number,
  pairs: Array<[string, string]>,
  flags = 0,
): Promise<Buffer> {
  return control(2, flags, Buffer.concat([u32(id), await z.block(headerBlock(pairs))]));
}

async function headersFrame(z: Compressor, id: number, pairs: Array<[string, string]>): Promise<Buffer> {
  return control(8, 0, Buffer.concat([u32(id), await z.block(headerBlock(pairs))]));
}

const rstStream = (id: number, status: number) => control(3, 0, Buffer.concat([u32(id), u32(status)]));
const ping = (id: number) => control(6, 0, u32(id));
const goaway = (last: number, status: number) => control(7, 0, Buffer.concat([u32(last), u32(status)]));
const windowUpdate = (id: number, delta: number) => control(9, 0, Buffer.concat([u32(id), u32(delta)]));
const settings = (entries: Array<[number, number, number]>) =>
  control(
    4,
    0,
    Buffer.concat([
      u32(entries.length),
      ...entries.map(([flags, id, v]) => Buffer.concat([u32((flags << 24) | id), u32(v)])),
    ]),
  );

interface Read {
  frames: SpdyFrame[];
  errors: SpdyParseError[];
}

/** One direction through a reader, in the given chunks. */
async function read(chunks: Buffer[]): Promise<Read> {
  const out: Read = { frames: [], errors: [] };
  const reader = new SpdyReader({ onFrame: (f) => out.frames.push(f), onError: (e) => out.errors.push(e) });
  for (const c of chunks) reader.write(c);
  await reader.drained();
  reader.end();
  return out;
}

/** A plain view of frames for comparison (Maps as objects). */
function plain(frames: SpdyFrame[]): unknown[] {
  return frames.map((f) =>
    "headers" in f
      ? { ...f, headers: Object.fromEntries(f.headers) }
      : { ...f, ...("data" in f ? { data: f.data.toString() } : {}) },
  );
}

const bytes = (b: Buffer) => [...b].map((x) => Buffer.from([x]));

t.test("the dictionary is the spec's (length and Adler-32, the id in the zlib header)", async (t) => {
  t.equal(SPDY_DICTIONARY.length, 1423);
  let a = 1;
  let b = 0;
  for (const x of SPDY_DICTIONARY) {
    a = (a + x) % 65521;
    b = (b + a) % 65521;
  }
  t.equal(((b << 16) | a) >>> 0, 0xe3c6a7c2);
});

t.test(
  "every frame type, with header blocks in one carried context, whole and cut at every byte",
  async (t) => {
    const z = new Compressor();
    const conn = Buffer.concat([
      await synStream(z, 1, [
        ["streamtype", "error"],
        ["x-multi", "a\0b"],
      ]),
      settings([[1, 4, 100]]),
      await synStream(z, 3, [["streamtype", "stdin"]], FIN, 1),
      data(3, "hello"),
      await headersFrame(z, 3, [["x-late", "yes"]]),
      await synReply(z, 5, [["Status", "200"]], FIN),
      rstStream(3, 5),
      ping(7),
      windowUpdate(3, 65536),
      data(3, "", FIN),
      goaway(5, 0),
    ]);
    z.close();
    const expected = [
      {
        type: "syn_stream",
        streamId: 1,
        associatedTo: 0,
        priority: 2,
        fin: false,
        unidirectional: false,
        headers: { streamtype: ["error"], "x-multi": ["a", "b"] },
      },
      { type: "settings", settings: [{ flags: 1, id: 4, value: 100 }] },
      {
        type: "syn_stream",
        streamId: 3,
        associatedTo: 1,
        priority: 2,
        fin: true,
        unidirectional: false,
        headers: { streamtype: ["stdin"] },
      },
      { type: "data", streamId: 3, fin: false, data: "hello" },
      { type: "headers", streamId: 3, fin: false, headers: { "x-late": ["yes"] } },
      { type: "syn_reply", streamId: 5, fin: true, headers: { status: ["200"] } },
      { type: "rst_stream", streamId: 3, status: 5 },
      { type: "ping", id: 7 },
      { type: "window_update", streamId: 3, delta: 65536 },
      { type: "data", streamId: 3, fin: true, data: "" },
      { type: "goaway", lastGoodStreamId: 5, status: 0 },
    ];
    const whole = await read([conn]);
    t.same(whole.errors, []);
    t.same(plain(whole.frames), expected, "in one chunk");
    const single = await read(bytes(conn));
    t.same(single.errors, []);
    t.same(plain(single.frames), expected, "one byte per chunk");
    let bad = 0;
    for (let cut = 1; cut < conn.length; cut++) {
      const r = await read([conn.subarray(0, cut), conn.subarray(cut)]);
      if (r.errors.length > 0 || JSON.stringify(plain(r.frames)) !== JSON.stringify(expected)) bad++;
    }
    t.equal(bad, 0, `cut in two at each of ${conn.length - 1} places`);
  },
);

t.test("the context is the connection's: a later block alone cannot be read", async (t) => {
  const z = new Compressor();
  const first = await synStream(z, 1, [["streamtype", "error"]]);
  const second = await synStream(z, 3, [["streamtype", "error"]]);
  z.close();
  const r = await read([second]);
  t.equal(r.frames.length, 0);
  t.equal(r.errors.length, 1);
  t.match(r.errors[0]?.message, /header block could not be inflated/);
  const both = await read([first, second]);
  t.same(both.errors, []);
  t.equal(both.frames.length, 2);
});

/** A kubectl exec -it over SPDY: what the client sends and what the cluster sends, in the order they cross. */
async function execConnection(): Promise<{ client: Buffer[]; cluster: Buffer[] }> {
  const zc = new Compressor();
  const zs = new Compressor();
  const open: Array<[number, string]> = [
    [1, "error"],
    [3, "stdin"],
    [5, "stdout"],
    [7, "stderr"],
    [9, "resize"],
  ];
  // One block after another: each direction's blocks share its compressor, in order.
  const c1: Buffer[] = [];
  const s1: Buffer[] = [];
  for (const [id, type] of open) {
    c1.push(await synStream(zc, id, [["streamtype", type]]));
    s1.push(await synReply(zs, id, []));
  }
  const c2 = Buffer.concat([
    data(9, '{"Width":120,"Height":40}\n'),
    data(3, "ls\r"),
    data(9, '{"Width":100,'),
    data(9, '"Height":30}\n{"Width":90,"Height":20}\n'),
    data(5, "not the client's to send"),
  ]);
  const s2 = Buffer.concat([
    data(5, "file-a  file-b\r\n"),
    data(7, "warning\r\n"),
    data(3, "not the cluster's to send"),
    data(11, "never opened"),
    await synStream(zs, 2, [["streamtype", "stdout"]]), // a stream the cluster opens is nothing of the terminal
    data(2, "pushed"),
  ]);
  const c3 = Buffer.concat([data(3, "exit\r", FIN), data(9, '{"Width":80,"Height":24}', FIN)]);
  const s3 = Buffer.concat([data(1, '{"status":"Success"}', FIN), data(5, "", FIN), goaway(9, 0)]);
  zc.close();
  zs.close();
  return { client: [Buffer.concat(c1), c2, c3], cluster: [Buffer.concat(s1), s2, s3] };
}

const EXEC_EVENTS = [
  ["resize", '{"Width":120,"Height":40}'],
  ["stdin", "ls\r"],
  ["resize", '{"Width":100,"Height":30}'],
  ["resize", '{"Width":90,"Height":20}'],
  ["stdout", "file-a  file-b\r\n"],
  ["stderr", "warning\r\n"],
  ["stdin", "exit\r"],
  ["resize", '{"Width":80,"Height":24}'],
  ["error", '{"status":"Success"}'],
];

async function exec(client: Buffer[][], cluster: Buffer[][]) {
  const events: Array<[RemoteCommandStream, string]> = [];
  const errors: SpdyParseError[] = [];
  const rc = new SpdyRemoteCommand({
    data: (stream, d) => events.push([stream, d.toString()]),
    error: (e) => errors.push(e),
  });
  for (let i = 0; i < Math.max(client.length, cluster.length); i++) {
    for (const c of client[i] ?? []) rc.fromClient(c);
    for (const c of cluster[i] ?? []) rc.fromCluster(c);
  }
  await rc.end();
  return { events, errors, rc };
}

t.test(
  "remotecommand: streams by their streamtype, each side's data, resize lines across frames",
  async (t) => {
    const { client, cluster } = await execConnection();
    const whole = await exec(
      client.map((b) => [b]),
      cluster.map((b) => [b]),
    );
    t.same(whole.errors, []);
    t.same(whole.events, EXEC_EVENTS);
    t.same(
      Object.fromEntries(whole.rc.streams),
      { 1: "error", 3: "stdin", 5: "stdout", 7: "stderr", 9: "resize", 2: "other" },
      "stream ids mapped from the client's SYN_STREAMs",
    );
    const single = await exec(client.map(bytes), cluster.map(bytes));
    t.same(single.errors, []);
    t.same(single.events, EXEC_EVENTS, "the same, one byte per chunk");
  },
);

t.test("remotecommand: the cluster's data waits for the client's SYN_STREAM being inflated", async (t) => {
  // The client's SYN_STREAM and the cluster's first data are read in the same tick: the data must not be judged
  // (as on an unknown stream) before the header block naming its stream is inflated.
  const zc = new Compressor();
  const syn = await synStream(zc, 1, [["streamtype", "stdout"]]);
  zc.close();
  const r = await exec([[syn]], [[data(1, "right away")]]);
  t.same(r.errors, []);
  t.same(r.events, [["stdout", "right away"]]);
});

t.test(
  "remotecommand: a stream opened twice or out of order, or too many streams, is a parse error",
  async (t) => {
    const zc = new Compressor();
    const twice = [
      await synStream(zc, 1, [["streamtype", "stdin"]]),
      await synStream(zc, 1, [["streamtype", "stdout"]]),
    ];
    zc.close();
    const r1 = await exec([twice], []);
    t.equal(r1.errors.length, 1);
    t.match(r1.errors[0]?.message, /stream 1 opened twice/);

    const zd = new Compressor();
    const backwards = [
      await synStream(zd, 5, [["streamtype", "stdin"]]),
      await synStream(zd, 3, [["streamtype", "stdout"]]),
    ];
    zd.close();
    const r2 = await exec([backwards], []);
    t.match(r2.errors[0]?.message, /stream 3 opened after stream 5/);

    const ze = new Compressor();
    const many: Buffer[] = [];
    for (let i = 0; i <= MAX_STREAMS; i++)
      many.push(await synStream(ze, 2 * i + 1, [["streamtype", "stdin"]]));
    many.push(data(1, "after the error"));
    ze.close();
    const r3 = await exec([many], []);
    t.equal(r3.errors.length, 1, "one error");
    t.match(r3.errors[0]?.message, new RegExp(`more than ${MAX_STREAMS} streams`));
    t.same(r3.events, [], "nothing handed on after it");
  },
);

t.test("malformed input ends in one clean parse error, never a throw", async (t) => {
  const z = new Compressor();
  const good = await synStream(z, 1, [["streamtype", "stdin"]]);
  z.close();
  const fixed = Buffer.alloc(10);
  fixed.writeUInt32BE(1, 0);
  const cases: Array<[string, Buffer, RegExp]> = [
    ["a bad version", control(6, 0, u32(1), 2), /SPDY version 2, not 3/],
    ["an unknown control frame type", control(12, 0, u32(1)), /unknown control frame type 12/],
    ["a data frame on stream 0", data(0, "x"), /data frame on stream 0/],
    ["a PING of the wrong length", control(6, 0, Buffer.alloc(8)), /PING frame of 8 bytes, not 4/],
    ["a RST_STREAM for stream 0", rstStream(0, 1), /stream 0/],
    [
      "a SETTINGS frame whose count does not fit",
      control(4, 0, Buffer.concat([u32(3), Buffer.alloc(8)])),
      /SETTINGS/,
    ],
    [
      "a garbage header block",
      control(1, 0, Buffer.concat([fixed, Buffer.from("this is not zlib at all")])),
      /header block could not be inflated/,
    ],
    ["a SYN_STREAM without a header block", control(1, 0, fixed), /without its header block/],
  ];
  for (const [name, frame, why] of cases) {
    let r: Read | undefined;
    await t.resolves(async () => {
      r = await read([frame, good]);
    }, `${name}: no throw`);
    t.equal(r?.errors.length, 1, `${name}: one error`);
    t.match(r?.errors[0], { name: "SpdyParseError", message: why }, name);
    t.same(r?.frames, [], `${name}: nothing after it`);
  }
});

t.test("an oversized length is refused on the frame header, before its body", async (t) => {
  for (const [name, type] of [
    ["SYN_STREAM", 1],
    ["HEADERS", 8],
    ["PING", 6],
  ] as const) {
    const h = Buffer.alloc(8);
    h.writeUInt16BE(0x8003, 0);
    h.writeUInt16BE(type, 2);
    h.writeUInt32BE(0xffffff, 4);
    const r = await read([h]); // the 16 MiB body never comes
    t.equal(r.errors.length, 1, name);
    t.match(r.errors[0]?.message, new RegExp(`a ${name} frame of 16777215 bytes`), name);
  }
});

t.test("header blocks: bounded when inflated, malformed content refused", async (t) => {
  const fixed = Buffer.alloc(10);
  fixed.writeUInt32BE(1, 0);
  const syn = async (raw: Buffer) => {
    const z = new Compressor();
    const block = await z.block(raw);
    z.close();
    return control(1, 0, Buffer.concat([fixed, block]));
  };
  const big = await syn(headerBlock([["x-big", "y".repeat(MAX_HEADER_BLOCK_BYTES)]]));
  t.ok(big.length < 4096, "compresses small");
  const r1 = await read([big]);
  t.match(r1.errors[0]?.message, /inflates to more than 262144 bytes/);
  const r2 = await read([await syn(Buffer.concat([u32(1000), Buffer.alloc(8)]))]);
  t.match(r2.errors[0]?.message, /1000 pairs in 12 bytes/);
  const r3 = await read([await syn(Buffer.concat([headerBlock([["a", "b"]]), Buffer.from("extra")]))]);
  t.match(r3.errors[0]?.message, /5 bytes after the header block/);
  const r4 = await read([await syn(Buffer.concat([u32(1), u32(100), Buffer.from("short")]))]);
  t.match(r4.errors[0]?.message, /cut short/);
  const r5 = await read([await syn(headerBlock([["", "v"]]))]);
  t.match(r5.errors[0]?.message, /without a name/);
});

t.test("a remotecommand connection that is not SPDY/3 fails once, whichever side shows it", async (t) => {
  const z = new Compressor();
  const syn = await synStream(z, 1, [["streamtype", "stdout"]]);
  z.close();
  const errors: SpdyParseError[] = [];
  const events: string[] = [];
  const rc = new SpdyRemoteCommand({
    data: (_s, d) => events.push(d.toString()),
    error: (e) => errors.push(e),
  });
  t.doesNotThrow(() => rc.fromClient(syn));
  t.doesNotThrow(() => rc.fromCluster(control(2, 0, Buffer.concat([u32(1), Buffer.alloc(2)]), 2))); // SPDY/2
  t.doesNotThrow(() => rc.fromClient(Buffer.from([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0])));
  t.doesNotThrow(() => rc.fromCluster(data(1, "after the error")));
  await rc.end();
  t.equal(errors.length, 1);
  t.type(errors[0], SpdyParseError);
  t.match(errors[0]?.message, /SPDY version 2, not 3/);
  t.same(events, []);
});
