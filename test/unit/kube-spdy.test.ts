// The SPDY/3.1 reader behind the recording of kubectl's SPDY exec/attach (src/proxy/kubernetes/spdy.ts). Frames
// are built here, header blocks compressed with Node's zlib and the SPDY dictionary, one context per direction,
// several blocks in a row (so a reader that did not carry the context could not read the later ones). Checked:
// every frame type, a connection cut at every byte (and one byte per chunk), the remotecommand streams (stdin,
// stdout, stderr, error, resize — resize lines split across frames), and malformed input — a bad version, an
// oversized length, a garbage header block, a block out of order, too many streams — ending in one parse error,
// never a throw. Port-forward: each client SYN_STREAM's `port` read as the kubelet reads it (none, several, not a
// number: refused) and put to `allowPort` once per port — an answer that takes its time (a policy decision, an
// approval) holds that frame and everything after it, in order — and the gate in front of the cluster
// (portforward.ts): it writes a frame only once it was checked, never any byte of a refused SYN_STREAM even while
// its header block is still being inflated or its port decided, pauses the client meanwhile, and reads the same
// SPDY inside WebSocket frames (kubectl's tunnel).
import { EventEmitter } from "node:events";
import type { Socket } from "node:net";
import t from "tap";
import { ClientWebSocketFrames, PortForwardGate } from "../../src/proxy/kubernetes/portforward.js";
import {
  type AllowPort,
  MAX_HEADER_BLOCK_BYTES,
  MAX_STREAMS,
  type PortAnswer,
  type PortForwardRefusal,
  type RemoteCommandStream,
  SPDY_DICTIONARY,
  type SpdyFrame,
  SpdyParseError,
  SpdyPortForward,
  SpdyReader,
  SpdyRemoteCommand,
  streamPort,
} from "../../src/proxy/kubernetes/spdy.js";
import {
  Compressor,
  control,
  data,
  FIN,
  forwardSyns,
  goaway,
  headerBlock,
  headersFrame,
  ping,
  rstStream,
  settings,
  synReply,
  synStream,
  u32,
  windowUpdate,
} from "../helpers/spdy-frames.js";

interface Read {
  frames: SpdyFrame[];
  errors: SpdyParseError[];
}

/** One direction through a reader, in the given chunks. */
async function read(chunks: Buffer[]): Promise<Read> {
  const out: Read = { frames: [], errors: [] };
  const reader = new SpdyReader({
    onFrame: (f) => {
      out.frames.push(f);
    },
    onError: (e) => out.errors.push(e),
  });
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

async function forwardStreams(
  z: Compressor,
  firstId: number,
  port: string,
  requestId: string,
): Promise<Buffer> {
  return Buffer.concat(await forwardSyns(z, firstId, port, requestId));
}

t.test("port-forward: a stream's port header, as the kubelet reads it", async (t) => {
  t.equal(streamPort(["8080"]), 8080);
  t.equal(streamPort(["00080"]), 80, "leading zeros, as strconv.ParseUint reads them");
  t.equal(streamPort(["65535"]), 65535);
  const cases: Array<[string[] | undefined, unknown, RegExp]> = [
    [undefined, null, /names no port/],
    [[], null, /names no port/],
    [["0"], "0", /"0", not a port/],
    [["65536"], "65536", /not a port/],
    [["8o"], "8o", /not a port/],
    [["+80"], "+80", /not a port/],
    [["000080"], "000080", /not a port/],
    [[""], "", /not a port/],
    [["80", "22"], "80,22", /several ports/],
  ];
  for (const [values, port, why] of cases) {
    const r = streamPort(values);
    t.equal(typeof r === "number" ? r : r.port, port, `${JSON.stringify(values)}: the port as sent`);
    t.match(typeof r === "number" ? "" : r.message, why, JSON.stringify(values));
  }
});

/** An AllowPort for a fixed list of ports, answering at once; `asked` collects every port it was asked about. */
function allowList(ports: number[], asked: number[] = []): AllowPort {
  return (port) => {
    asked.push(port);
    return ports.includes(port) || { message: `port ${port} is not among ${ports.join(", ") || "none"}` };
  };
}

/** An AllowPort whose answers the test gives, one pending promise per question. */
function allowLater() {
  const pending: Array<{ port: number; answer: (a: PortAnswer) => void; fail: (e: Error) => void }> = [];
  const allowPort: AllowPort = (port) =>
    new Promise<PortAnswer>((resolve, reject) => pending.push({ port, answer: resolve, fail: reject }));
  return {
    allowPort,
    pending,
    /** Until `n` questions were asked (every header block before them inflated). */
    asked: async (n: number) => {
      for (let i = 0; i < 400 && pending.length < n; i++) await new Promise((r) => setTimeout(r, 5));
      return pending.map((p) => p.port);
    },
  };
}

const tick = () => new Promise((r) => setTimeout(r, 20));

interface ForwardRead {
  checked: number[];
  refused: PortForwardRefusal[];
  errors: SpdyParseError[];
}

async function forward(allow: number[] | AllowPort, chunks: Buffer[]): Promise<ForwardRead> {
  const out: ForwardRead = { checked: [], refused: [], errors: [] };
  const pf = new SpdyPortForward(Array.isArray(allow) ? allowList(allow) : allow, {
    checked: (o) => out.checked.push(o),
    refused: (r) => out.refused.push(r),
    error: (e) => out.errors.push(e),
  });
  for (const c of chunks) pf.fromClient(c);
  await pf.drained();
  pf.end();
  return out;
}

t.test("port-forward: every frame checked, at its end offset; cut anywhere", async (t) => {
  const z = new Compressor();
  const frames = [
    ...(await forwardSyns(z, 1, "8080", "0")),
    data(3, "GET / HTTP/1.0\r\n\r\n"),
    ...(await forwardSyns(z, 5, "80", "1")),
    windowUpdate(7, 1024),
    data(7, "more", FIN),
    ping(1),
  ];
  z.close();
  const conn = Buffer.concat(frames);
  const ends: number[] = [];
  let at = 0;
  for (const f of frames) {
    at += f.length;
    ends.push(at);
  }
  const whole = await forward([80, 8080], [conn]);
  t.same(whole.refused, []);
  t.same(whole.errors, []);
  t.same(whole.checked, ends, "one offset per frame, each the end of its frame");
  let bad = 0;
  for (let cut = 1; cut < conn.length; cut++) {
    const r = await forward([80, 8080], [conn.subarray(0, cut), conn.subarray(cut)]);
    if (r.refused.length || r.errors.length || JSON.stringify(r.checked) !== JSON.stringify(ends)) bad++;
  }
  t.equal(bad, 0, `cut in two at each of ${conn.length - 1} places`);
});

t.test("port-forward: a stream to a port not allowed is refused; nothing is checked after it", async (t) => {
  const z = new Compressor();
  const allowed = await forwardStreams(z, 1, "8080", "0");
  const forbidden = await forwardStreams(z, 5, "22", "1");
  z.close();
  const asked: number[] = [];
  const r = await forward(allowList([8080], asked), [allowed, data(3, "x"), forbidden, data(7, "after")]);
  t.same(r.errors, []);
  t.same(r.refused, [{ streamId: 5, port: 22, message: "port 22 is not among 8080" }]);
  t.equal(r.checked.at(-1), allowed.length + data(3, "x").length, "checked up to the refused SYN_STREAM");
  t.same(asked, [8080, 22], "each port asked once: the second stream to 8080 was not asked about");

  const zn = new Compressor();
  const none = await synStream(zn, 1, [["streamtype", "data"]]);
  zn.close();
  const askedNone: number[] = [];
  const r2 = await forward(allowList([8080], askedNone), [none]);
  t.match(r2.refused, [{ streamId: 1, port: null, message: /no port/ }]);
  t.same(r2.checked, []);
  t.same(askedNone, [], "a stream naming no port is refused without asking");

  const zs = new Compressor();
  const nothingAllowed = await forwardStreams(zs, 1, "8080", "0");
  zs.close();
  const detail = { decision_id: "d-1", reasons: [{ code: "x.y", message: "no" }] };
  const r3 = await forward(() => ({ message: "blocked", detail }), [nothingAllowed]);
  t.same(
    r3.refused,
    [{ streamId: 1, port: 8080, message: "blocked", detail }],
    "the answer's detail goes on",
  );

  const zt = new Compressor();
  const thrown = await forwardStreams(zt, 1, "8080", "0");
  zt.close();
  const r4 = await forward(() => Promise.reject(new Error("the audit trail is down")), [thrown]);
  t.match(r4.refused, [{ port: 8080, message: /port 8080 could not be decided: the audit trail is down/ }]);
  t.same(r4.errors, []);
  const r5 = await forward(() => {
    throw new Error("boom");
  }, [thrown]);
  t.match(r5.refused, [{ port: 8080, message: /could not be decided: boom/ }], "a throw refuses too");
});

t.test(
  "port-forward: a port decided asynchronously holds its frame and every later one, in order",
  async (t) => {
    const z = new Compressor();
    const first = await forwardStreams(z, 1, "8080", "0");
    const second = await forwardStreams(z, 5, "9090", "1");
    z.close();
    const later = allowLater();
    const out: ForwardRead = { checked: [], refused: [], errors: [] };
    const pf = new SpdyPortForward(later.allowPort, {
      checked: (o) => out.checked.push(o),
      refused: (r) => out.refused.push(r),
      error: (e) => out.errors.push(e),
    });
    pf.fromClient(Buffer.concat([first, data(3, "a"), second, data(3, "b"), ping(1)]));
    t.same(await later.asked(1), [8080]);
    await tick();
    t.same(out.checked, [], "nothing checked while the first port is being decided");
    t.notOk(pf.idle);
    later.pending[0]?.answer(true);
    t.same(await later.asked(2), [8080, 9090], "the second stream to 8080 is not asked about; 9090 is");
    await tick();
    const upTo9090 = first.length + data(3, "a").length;
    t.equal(
      out.checked.at(-1),
      upTo9090,
      "checked up to the SYN_STREAM being decided, not the data after it",
    );
    later.pending[1]?.answer(true);
    await pf.drained();
    t.equal(
      out.checked.at(-1),
      upTo9090 + second.length + data(3, "b").length + ping(1).length,
      "then the rest",
    );
    t.same(out.refused, []);
    pf.end();
  },
);

t.test("port-forward: bytes that are not SPDY/3 are one parse error", async (t) => {
  const r = await forward([80], [control(6, 0, u32(1), 2)]);
  t.equal(r.errors.length, 1);
  t.match(r.errors[0]?.message, /SPDY version 2/);
  t.same(r.refused, []);
});

/** A gate between a fake client and a fake cluster: what reached the cluster, and what the client was told. */
function gate(allow: number[] | AllowPort, websocket = false) {
  const sent: Buffer[] = [];
  const log: string[] = [];
  const refused: PortForwardRefusal[] = [];
  const unparsable: Error[] = [];
  let writable = true;
  const to = Object.assign(new EventEmitter(), {
    write: (b: Buffer) => {
      sent.push(Buffer.from(b));
      return writable;
    },
    end: () => {
      log.push("end");
    },
  });
  const g = new PortForwardGate({
    allowPort: Array.isArray(allow) ? allowList(allow) : allow,
    websocket,
    from: {
      pause: () => {
        log.push("pause");
        return undefined as unknown as Socket;
      },
      resume: () => {
        log.push("resume");
        return undefined as unknown as Socket;
      },
    },
    to: to as unknown as Pick<Socket, "write" | "end" | "once">,
    refused: (r) => refused.push(r),
    unparsable: (e) => unparsable.push(e),
  });
  return {
    g,
    log,
    refused,
    unparsable,
    sent: () => Buffer.concat(sent),
    /** The cluster's socket stops draining (write returns false) or drains again. */
    backpressure(on: boolean) {
      writable = !on;
      if (!on) to.emit("drain");
    },
    /** Until every header block given so far was inflated and checked. */
    settle: async () => {
      for (
        let i = 0;
        i < 200 && log.filter((x) => x === "pause").length > log.filter((x) => x === "resume").length;
        i++
      )
        await new Promise((r) => setTimeout(r, 5));
    },
  };
}

t.test("gate: allowed streams reach the cluster as sent, each frame once it was checked", async (t) => {
  const z = new Compressor();
  const conn = Buffer.concat([
    await forwardStreams(z, 1, "8080", "0"),
    data(3, "hello"),
    await forwardStreams(z, 5, "80", "1"),
    data(7, "world", FIN),
  ]);
  z.close();
  const a = gate([80, 8080]);
  a.g.write(conn);
  t.ok(a.sent().length < conn.length, "not all at once: header blocks are being inflated");
  t.same(a.log, ["pause"], "the client waits meanwhile");
  await a.settle();
  t.same(a.sent(), conn, "then everything, unchanged");
  t.same(a.log, ["pause", "resume"]);
  a.g.end();
  t.same(a.log, ["pause", "resume", "end"], "the end goes on after it");
  t.same(a.refused, []);

  const b = gate([80, 8080]);
  for (const x of bytes(conn)) {
    b.g.write(x);
    await b.settle();
  }
  t.same(b.sent(), conn, "one byte per chunk: the same bytes");
});

t.test(
  "gate: not one byte of a refused SYN_STREAM reaches the cluster, before or after its check",
  async (t) => {
    const z = new Compressor();
    const allowed = await forwardStreams(z, 1, "8080", "0");
    const forbidden = await forwardStreams(z, 5, "22", "1");
    z.close();
    const before = Buffer.concat([allowed, data(3, "to 8080")]);
    const a = gate([8080]);
    // All in one chunk: the forbidden SYN_STREAM is in hand while the allowed ones are still being inflated.
    a.g.write(Buffer.concat([before, forbidden, data(7, "to 22")]));
    t.ok(before.subarray(0, a.sent().length).equals(a.sent()), "at first, a prefix of the allowed frames");
    await a.settle();
    t.same(a.sent(), before, "then exactly the frames before the refused one");
    t.match(a.refused, [{ streamId: 5, port: 22 }]);
    a.g.write(data(7, "later"));
    a.g.end();
    t.same(a.sent(), before, "nothing after it, even once the client ends");
    t.notOk(a.log.includes("end"), "the tunnel is the caller's to close");

    // The allowed stream's data behind a SYN_STREAM still being checked waits for it (order is kept).
    const zb = new Compressor();
    const first = await forwardStreams(zb, 1, "8080", "0");
    const second = await forwardStreams(zb, 5, "8080", "1");
    zb.close();
    const b = gate([8080]);
    b.g.write(first);
    await b.settle();
    b.g.write(Buffer.concat([data(3, "early"), second, data(3, "late")]));
    t.same(b.sent(), Buffer.concat([first, data(3, "early")]), "data of a checked stream goes at once");
    await b.settle();
    t.same(b.sent(), Buffer.concat([first, data(3, "early"), second, data(3, "late")]));
  },
);

t.test(
  "gate: while a port is being decided, no byte of its SYN_STREAM or after it reaches the cluster",
  async (t) => {
    const z = new Compressor();
    const allowed = await forwardStreams(z, 1, "8080", "0");
    const pending = await forwardStreams(z, 5, "9090", "1");
    const third = await forwardStreams(z, 9, "9090", "2");
    z.close();
    const later = allowLater();
    // 8080 was decided with the request; 9090 is asked about.
    const a = gate((port) => port === 8080 || later.allowPort(port));
    const before = Buffer.concat([allowed, data(3, "to 8080")]);
    const after = Buffer.concat([data(3, "more to 8080"), data(7, "to 9090"), third, data(11, "x"), ping(1)]);
    a.g.write(Buffer.concat([before, pending]));
    t.same(await later.asked(1), [9090]);
    a.g.write(after);
    // One byte at a time too: each is held.
    for (const b of bytes(data(3, "trickle"))) a.g.write(b);
    await tick();
    t.same(
      a.sent(),
      before,
      "only what came before the SYN_STREAM being decided, not even data of an allowed stream",
    );
    t.same(a.log, ["pause"], "the client waits for the decision");
    a.g.end();
    t.notOk(a.log.includes("end"), "the client's end waits for it too");
    later.pending[0]?.answer(true);
    await a.settle();
    t.same(
      a.sent(),
      Buffer.concat([before, pending, after, data(3, "trickle")]),
      "once allowed, everything, in the order sent",
    );
    t.same(later.pending.length, 1, "the third stream, to the same port, was not decided again");
    t.ok(a.log.includes("end"), "then the client's end");
    t.equal(a.log.filter((x) => x === "resume").length, 1, "and the client is resumed");
    t.same(a.refused, []);
  },
);

t.test(
  "gate: a port refused after an asynchronous wait: nothing of it or after it is ever written",
  async (t) => {
    for (const websocket of [false, true]) {
      const z = new Compressor();
      const allowed = await forwardStreams(z, 1, "8080", "0");
      const refused = await forwardStreams(z, 5, "22", "1");
      z.close();
      const later = allowLater();
      const a = gate((port) => port === 8080 || later.allowPort(port), websocket);
      const wrap = (b: Buffer) => (websocket ? wsFrame(2, b) : b);
      const first = wrap(Buffer.concat([allowed, data(3, "to 8080")]));
      a.g.write(first);
      await a.settle();
      t.same(a.sent(), first, `${websocket ? "WebSocket" : "SPDY"}: the allowed stream went`);
      const rest = Buffer.concat([refused, data(7, "to 22"), data(3, "to 8080 after")]);
      a.g.write(wrap(rest));
      t.same(await later.asked(1), [22]);
      await tick();
      // Over WebSocket the message's frame header (length, mask) may go: it carries no SPDY.
      const header = wrap(rest).length - rest.length;
      t.same(a.sent().length, first.length + header, "nothing of the SYN_STREAM while it is decided");
      const detail = { decision_id: "port-decision", reasons: [{ code: "k8s.x", message: "blocked" }] };
      later.pending[0]?.answer({ message: "the policy blocks port 22", detail });
      await tick();
      t.same(a.refused, [{ streamId: 5, port: 22, message: "the policy blocks port 22", detail }]);
      a.g.write(wrap(data(3, "later still")));
      a.g.end();
      await tick();
      t.same(a.sent().length, first.length + header, "nothing further, even once the client ends");
      t.notOk(a.log.includes("end"), "the tunnel is the caller's to close");
    }
  },
);

t.test("gate: a decision answered after the tunnel closed writes nothing", async (t) => {
  const z = new Compressor();
  const streams = await forwardStreams(z, 1, "9090", "0");
  z.close();
  const later = allowLater();
  const a = gate(later.allowPort);
  a.g.write(streams);
  await later.asked(1);
  a.g.close();
  later.pending[0]?.answer(true);
  await tick();
  t.same(a.sent(), Buffer.alloc(0));
  t.same(a.refused, []);
});

t.test(
  "gate: a frame the client never finished is not sent; the cluster's socket's backpressure pauses",
  async (t) => {
    const z = new Compressor();
    const syn = await forwardStreams(z, 1, "8080", "0");
    z.close();
    const a = gate([8080]);
    a.g.write(syn);
    await a.settle();
    const partial = data(3, "cut short").subarray(0, 10);
    a.g.write(partial);
    a.g.end();
    t.same(a.sent(), syn);
    t.equal(a.log.at(-1), "end");

    const b = gate([8080]);
    b.backpressure(true);
    b.g.write(syn);
    await new Promise((r) => setTimeout(r, 50));
    t.same(b.log, ["pause"], "paused for the check, then kept paused by the cluster's socket");
    b.backpressure(false);
    t.same(b.log, ["pause", "resume"]);
    t.same(b.sent(), syn);

    const c = gate([8080]);
    c.g.write(control(6, 0, u32(1), 2));
    t.match(c.unparsable, [{ message: /SPDY version 2/ }], "not SPDY/3: unparsable");
    t.same(c.sent(), Buffer.alloc(0));
  },
);

/** A client's WebSocket frame (masked unless told otherwise). */
function wsFrame(
  opcode: number,
  payload: Buffer,
  opts: { fin?: boolean; mask?: boolean; rsv?: number } = {},
) {
  const { fin = true, mask = true, rsv = 0 } = opts;
  const len = payload.length;
  const ext = len > 0xffff ? 8 : len > 125 ? 2 : 0;
  const h = Buffer.alloc(2 + ext + (mask ? 4 : 0));
  h[0] = (fin ? 0x80 : 0) | rsv | opcode;
  h[1] = (mask ? 0x80 : 0) | (ext === 8 ? 127 : ext === 2 ? 126 : len);
  if (ext === 2) h.writeUInt16BE(len, 2);
  if (ext === 8) h.writeBigUInt64BE(BigInt(len), 2);
  if (!mask) return Buffer.concat([h, payload]);
  const key = Buffer.from([0x37, 0xfa, 0x21, 0x3d]);
  key.copy(h, 2 + ext);
  return Buffer.concat([h, Buffer.from(payload.map((x, i) => x ^ (key[i % 4] as number)))]);
}

t.test("WebSocket tunnel: SPDY split across messages and fragments, control frames between", async (t) => {
  const z = new Compressor();
  const spdy = Buffer.concat([
    await forwardStreams(z, 1, "8080", "0"),
    data(3, "x".repeat(300)),
    await forwardStreams(z, 5, "8080", "1"),
  ]);
  z.close();
  const cut = 37;
  const ws = Buffer.concat([
    wsFrame(2, spdy.subarray(0, cut)),
    wsFrame(9, Buffer.from("ping")),
    wsFrame(2, spdy.subarray(cut, 200), { fin: false }),
    wsFrame(0xa, Buffer.alloc(0)),
    wsFrame(0, spdy.subarray(200)),
    wsFrame(8, Buffer.from([0x03, 0xe8])),
  ]);
  const frames = new ClientWebSocketFrames();
  const pieces = bytes(ws).flatMap((b) => frames.split(b));
  t.same(Buffer.concat(pieces.map((p) => p.raw)), ws, "the pieces are the bytes as sent");
  t.same(
    Buffer.concat(pieces.flatMap((p) => (p.payload ? [p.payload] : []))),
    spdy,
    "the payloads, the SPDY",
  );

  const a = gate([8080], true);
  a.g.write(ws);
  await a.settle();
  t.same(a.sent(), ws, "all of it, as sent (the close frame too)");
  t.same(a.refused, []);

  const zf = new Compressor();
  const allowed = await forwardStreams(zf, 1, "8080", "0");
  const wsBad = wsFrame(2, Buffer.concat([allowed, await forwardStreams(zf, 5, "22", "1")]));
  zf.close();
  const b = gate([8080], true);
  b.g.write(wsBad);
  await b.settle();
  t.match(b.refused, [{ port: 22 }]);
  // The frame's header (2 + 2 length + 4 mask) and the allowed SYN_STREAMs, masked: the apiserver may read the
  // start of a message before its end, so that is safe; the refused SYN_STREAM's bytes never go.
  t.same(b.sent(), wsBad.subarray(0, 8 + allowed.length), "up to the refused SYN_STREAM, no further");

  for (const [name, frame, why] of [
    ["unmasked", wsFrame(2, Buffer.from("x"), { mask: false }), /unmasked/],
    ["text", wsFrame(1, Buffer.from("x")), /text message/],
    ["reserved bits", wsFrame(2, Buffer.from("x"), { rsv: 0x40 }), /reserved bits/],
    ["opcode 3", wsFrame(3, Buffer.from("x")), /unknown opcode 3/],
    ["a stray continuation", wsFrame(0, Buffer.from("x")), /continuation frame outside/],
  ] as const) {
    const c = gate([8080], true);
    c.g.write(frame);
    t.match(c.unparsable, [{ message: why }], name);
    t.same(c.sent(), Buffer.alloc(0), `${name}: nothing sent`);
  }
});
