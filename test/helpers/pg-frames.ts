// PostgreSQL frontend (client → server) messages built by hand, and fast-check arbitraries of valid and
// malformed message streams: used by the wire fuzz tests (test/unit/fuzz-pg-wire.test.ts) and by the gateway
// fuzz test (test/integration/fuzz-gateway.test.ts).
import fc from "fast-check";
import {
  CANCEL_REQUEST,
  FrontendType,
  GSSENC_REQUEST,
  message,
  PROTOCOL_V3,
  SSL_REQUEST,
} from "../../src/proxy/postgres/wire.js";

// --- encoders ------------------------------------------------------------------------------------------------------

function cstr(s: string): Buffer {
  return Buffer.from(`${s}\0`, "utf8");
}

function int16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeInt16BE(n);
  return b;
}

function int32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n | 0);
  return b;
}

/** A startup-phase packet: Int32 length (including itself), Int32 code, then `body`. */
export function startupPacket(code: number, body: Buffer = Buffer.alloc(0)): Buffer {
  return Buffer.concat([int32(8 + body.length), int32(code), body]);
}

/** A StartupMessage (protocol 3.0) with the parameters in order. */
export function startupMessage(params: ReadonlyArray<readonly [string, string]>): Buffer {
  return startupPacket(
    PROTOCOL_V3,
    Buffer.concat([...params.flatMap(([k, v]) => [cstr(k), cstr(v)]), Buffer.from([0])]),
  );
}

export const sslRequest = () => startupPacket(SSL_REQUEST);
export const gssencRequest = () => startupPacket(GSSENC_REQUEST);
export const cancelRequest = (pid: number, secret: number) =>
  startupPacket(CANCEL_REQUEST, Buffer.concat([int32(pid), int32(secret)]));

/** The frontend messages of protocol 3.0, well formed. */
export const fe = {
  query: (sql: string) => message(FrontendType.query, cstr(sql)),
  parse: (name: string, sql: string, types: number[] = []) =>
    message(
      FrontendType.parse,
      Buffer.concat([cstr(name), cstr(sql), int16(types.length), ...types.map(int32)]),
    ),
  bind: (
    portal: string,
    statement: string,
    values: Array<Buffer | null> = [],
    resultFormats: number[] = [],
  ) =>
    message(
      FrontendType.bind,
      Buffer.concat([
        cstr(portal),
        cstr(statement),
        int16(0),
        int16(values.length),
        ...values.flatMap((v) => (v === null ? [int32(-1)] : [int32(v.length), v])),
        int16(resultFormats.length),
        ...resultFormats.map(int16),
      ]),
    ),
  describe: (target: "S" | "P", name: string) =>
    message(FrontendType.describe, Buffer.concat([Buffer.from(target), cstr(name)])),
  execute: (portal: string, maxRows = 0) =>
    message(FrontendType.execute, Buffer.concat([cstr(portal), int32(maxRows)])),
  close: (target: "S" | "P", name: string) =>
    message(FrontendType.close, Buffer.concat([Buffer.from(target), cstr(name)])),
  sync: () => message(FrontendType.sync, Buffer.alloc(0)),
  flush: () => message(FrontendType.flush, Buffer.alloc(0)),
  terminate: () => message(FrontendType.terminate, Buffer.alloc(0)),
  password: (pw: string) => message(FrontendType.password, cstr(pw)),
  copyData: (data: Buffer) => message(FrontendType.copyData, data),
  copyDone: () => message(FrontendType.copyDone, Buffer.alloc(0)),
  copyFail: (why: string) => message(FrontendType.copyFail, cstr(why)),
  functionCall: (oid: number, args: Buffer[]) =>
    message(
      FrontendType.functionCall,
      Buffer.concat([
        int32(oid),
        int16(0),
        int16(args.length),
        ...args.flatMap((a) => [int32(a.length), a]),
        int16(0),
      ]),
    ),
};

/** A frame with any type byte and body, its length field as given (the true length when omitted). */
export function rawFrame(type: number, body: Buffer, length = body.length + 4): Buffer {
  const b = Buffer.alloc(5 + body.length);
  b[0] = type;
  b.writeInt32BE(length | 0, 1);
  body.copy(b, 5);
  return b;
}

/** `buf` cut at the (sorted, deduplicated, in-range) offsets: arbitrary chunking of a byte stream. */
export function splitAt(buf: Buffer, cuts: readonly number[]): Buffer[] {
  const at = [...new Set(cuts.map((c) => (buf.length === 0 ? 0 : c % (buf.length + 1))))].sort(
    (a, b) => a - b,
  );
  const out: Buffer[] = [];
  let prev = 0;
  for (const c of at) {
    out.push(buf.subarray(prev, c));
    prev = c;
  }
  out.push(buf.subarray(prev));
  return out;
}

// --- arbitraries: well-formed messages ----------------------------------------------------------------------------

/** Text without NUL (a C string of the protocol): any code point, ASCII-biased. */
export const arbCText = (maxLength = 40): fc.Arbitrary<string> =>
  fc
    .oneof(
      fc.string({ maxLength }),
      fc.string({ unit: "binary", maxLength }),
      fc.constantFrom("", "SELECT 1", "BEGIN", "COMMIT", "p1", "s1"),
    )
    .map((s) => s.replaceAll("\0", ""));

/** A parameter name of a StartupMessage: non-empty, no NUL. */
export const arbParamName: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom("user", "database", "application_name", "options", "client_encoding", "DateStyle"),
  arbCText(20).filter((s) => s !== ""),
);

export const arbStartupParams: fc.Arbitrary<Array<[string, string]>> = fc.uniqueArray(
  fc.tuple(arbParamName, arbCText(40)),
  { maxLength: 6, selector: ([k]) => k },
);

/** One well-formed typed frontend message. */
export const arbTypedMessage: fc.Arbitrary<Buffer> = fc.oneof(
  arbCText(80).map(fe.query),
  fc
    .tuple(arbCText(10), arbCText(60), fc.array(fc.integer(), { maxLength: 3 }))
    .map(([n, q, t]) => fe.parse(n, q, t)),
  fc
    .tuple(
      arbCText(10),
      arbCText(10),
      fc.array(fc.option(fc.uint8Array({ maxLength: 12 }).map((a) => Buffer.from(a))), { maxLength: 3 }),
    )
    .map(([p, s, v]) => fe.bind(p, s, v)),
  fc.tuple(fc.constantFrom("S" as const, "P" as const), arbCText(10)).map(([t, n]) => fe.describe(t, n)),
  fc.tuple(arbCText(10), fc.nat()).map(([p, n]) => fe.execute(p, n)),
  fc.tuple(fc.constantFrom("S" as const, "P" as const), arbCText(10)).map(([t, n]) => fe.close(t, n)),
  fc.constant(null).map(fe.sync),
  fc.constant(null).map(fe.flush),
  arbCText(40).map(fe.password),
  fc.uint8Array({ maxLength: 64 }).map((a) => fe.copyData(Buffer.from(a))),
  fc.constant(null).map(fe.copyDone),
  arbCText(20).map(fe.copyFail),
  fc.tuple(fc.nat(), fc.array(fc.uint8Array({ maxLength: 8 }), { maxLength: 2 })).map(([oid, args]) =>
    fe.functionCall(
      oid,
      args.map((a) => Buffer.from(a)),
    ),
  ),
  fc.constant(null).map(fe.terminate),
);

/** Startup-phase packets a client may send before its StartupMessage (each answered with 'N' without TLS). */
export const arbPreStartup: fc.Arbitrary<Buffer[]> = fc.array(
  fc.constantFrom("ssl", "gssenc").map((k) => (k === "ssl" ? sslRequest() : gssencRequest())),
  { maxLength: 2 },
);

/** A whole well-formed client stream: SSL/GSS requests, StartupMessage, typed messages. */
export const arbValidStream: fc.Arbitrary<{ frames: Buffer[]; startupFrames: number }> = fc
  .tuple(arbPreStartup, arbStartupParams, fc.array(arbTypedMessage, { maxLength: 12 }))
  .map(([pre, params, typed]) => ({
    frames: [...pre, startupMessage(params), ...typed],
    startupFrames: pre.length + 1,
  }));

// --- arbitraries: malformed input ---------------------------------------------------------------------------------

const arbBytes = (maxLength: number) => fc.uint8Array({ maxLength }).map((a) => Buffer.from(a));

/** Length fields a parser must not trust: negative, too small, huge, just past a limit, off by a few. */
export const arbBadLength: fc.Arbitrary<number> = fc.oneof(
  fc.integer({ min: -(2 ** 31), max: 7 }),
  fc.constantFrom(0, 1, 2, 3, 4, 5, 7, 8, 65535, 65536, 65537, 2 ** 24, 2 ** 30, 2 ** 31 - 1, -1, -(2 ** 31)),
  fc.integer({ min: 65537, max: 2 ** 31 - 1 }),
);

/** Garbage type bytes: anything but the frontend types the proxy knows. */
const KNOWN_TYPES = new Set<number>(Object.values(FrontendType));
export const arbGarbageType: fc.Arbitrary<number> = fc
  .integer({ min: 0, max: 255 })
  .filter((t) => !KNOWN_TYPES.has(t));

/**
 * What one malformed connection sends before it is authenticated, in steps: bytes to write, and how the
 * connection ends (`end`: FIN after the bytes, `reset`: RST mid-stream, `wait`: keep it open until the
 * gateway closes it, `half`: FIN, keep reading). Every case is one the gateway must answer with an error or a
 * close, never a hang.
 */
export interface MalformedConnection {
  kind: string;
  /** Written in order, each chunk separately (chunking is part of the case). */
  chunks: Buffer[];
  ending: "end" | "reset" | "wait" | "half";
  /** Frames this connection carries (for the count). */
  frames: number;
}

/** The chunks of `buf` cut by fast-check at up to 3 places. */
const chunked = (buf: fc.Arbitrary<Buffer>): fc.Arbitrary<Buffer[]> =>
  fc
    .tuple(buf, fc.array(fc.nat(), { maxLength: 3 }))
    .map(([b, cuts]) => splitAt(b, cuts).filter((c) => c.length));

const endings = fc.constantFrom<MalformedConnection["ending"]>("end", "reset", "wait", "half");
/** Mostly a FIN or waiting for the gateway's answer; some resets and half-closes. */
const endingMostlyWait = fc.oneof(
  { weight: 6, arbitrary: fc.constant<MalformedConnection["ending"]>("wait") },
  { weight: 2, arbitrary: endings },
);

/** A startup-phase malformed connection, where `database` is the resource a "valid startup" names. */
export function arbMalformedConnection(database: string): fc.Arbitrary<MalformedConnection> {
  const validStartup = startupMessage([
    ["user", "fuzz"],
    ["database", database],
  ]);
  const conn = (kind: string, chunks: fc.Arbitrary<Buffer[]>, frames = 1, ending = endingMostlyWait) =>
    fc.record({
      kind: fc.constant(kind),
      chunks,
      ending,
      frames: fc.constant(frames),
    });
  return fc.oneof(
    // Random bytes where a startup packet belongs.
    conn("random-bytes", chunked(arbBytes(64).filter((b) => b.length > 0))),
    // A startup packet whose length is too small, negative or oversized, with some bytes after it.
    conn(
      "bad-startup-length",
      chunked(
        fc
          .tuple(arbBadLength, fc.integer(), arbBytes(24))
          .map(([len, code, rest]) => Buffer.concat([int32(len), int32(code), rest])),
      ),
    ),
    // A well-framed startup packet with a protocol code the gateway does not speak.
    conn(
      "bad-protocol-code",
      chunked(
        fc
          .tuple(
            fc
              .integer()
              .filter((c) => ![PROTOCOL_V3, SSL_REQUEST, GSSENC_REQUEST, CANCEL_REQUEST].includes(c)),
            arbBytes(16),
          )
          .map(([code, body]) => startupPacket(code, body)),
      ),
    ),
    // A StartupMessage cut short, then the connection ends, resets or waits.
    conn(
      "truncated-startup",
      fc
        .tuple(arbStartupParams, fc.nat())
        .map(([p, n]) => {
          const m = startupMessage(p);
          return [m.subarray(0, n % m.length)];
        })
        .map((c) => c.filter((b) => b.length)),
      1,
      endings,
    ),
    // SSLRequest/GSSENCRequest with a wrong length or trailing garbage, or many of them, or garbage after one.
    conn(
      "bad-sslrequest",
      chunked(
        fc.oneof(
          fc
            .tuple(fc.integer({ min: 9, max: 64 }), arbBytes(56))
            .map(([len, rest]) => Buffer.concat([int32(len), int32(SSL_REQUEST), rest.subarray(0, len - 8)])),
          arbBytes(16).map((rest) => Buffer.concat([sslRequest(), rest])),
          arbBytes(16).map((rest) => Buffer.concat([gssencRequest(), gssencRequest(), rest])),
        ),
      ),
      2,
    ),
    // SSLRequest and GSSENCRequest over and over (PostgreSQL takes one of each), then a bad protocol code.
    fc
      .tuple(fc.array(fc.boolean(), { minLength: 2, maxLength: 40 }), fc.integer({ min: 1, max: 0xffff }))
      .chain(([reqs, minor]) =>
        fc.record({
          kind: fc.constant("sslrequest-flood"),
          chunks: chunked(
            fc.constant(
              Buffer.concat([
                ...reqs.map((ssl) => (ssl ? sslRequest() : gssencRequest())),
                startupPacket(minor),
              ]),
            ),
          ),
          ending: endingMostlyWait,
          frames: fc.constant(reqs.length + 1),
        }),
      ),
    // CancelRequest too short, too long, or naming a process that does not exist.
    conn(
      "bad-cancelrequest",
      chunked(
        fc.oneof(
          fc.constant(startupPacket(CANCEL_REQUEST)),
          fc.integer().map((pid) => startupPacket(CANCEL_REQUEST, int32(pid))),
          fc
            .tuple(fc.integer(), fc.integer(), arbBytes(16))
            .map(([pid, secret, more]) =>
              startupPacket(CANCEL_REQUEST, Buffer.concat([int32(pid), int32(secret), more])),
            ),
          fc.tuple(fc.integer(), fc.integer()).map(([pid, secret]) => cancelRequest(pid, secret)),
        ),
      ),
      1,
      fc.constantFrom<MalformedConnection["ending"]>("wait", "end"),
    ),
    // A StartupMessage whose parameters are not terminated or hold garbage.
    conn("bad-startup-params", chunked(arbBytes(48).map((body) => startupPacket(PROTOCOL_V3, body)))),
    // A valid StartupMessage for a real resource, then garbage where the password message belongs.
    conn(
      "startup-then-garbage",
      chunked(
        fc
          .oneof(
            fc.tuple(arbGarbageType, arbBytes(24)).map(([t, b]) => rawFrame(t, b)),
            fc
              .tuple(fc.integer({ min: 0, max: 255 }), arbBadLength, arbBytes(16))
              .map(([t, l, b]) => rawFrame(t, b, l)),
            arbBytes(32),
            arbTypedMessage,
            fc.constant(fe.password("not-a-token")),
            arbCText(40).map((s) => fe.password(s)),
          )
          .map((garbage) => Buffer.concat([validStartup, garbage])),
      ),
      2,
    ),
    // A valid StartupMessage, then the connection resets (or half-closes) before the password.
    conn(
      "startup-then-close",
      fc.constant([validStartup]),
      1,
      fc.constantFrom<MalformedConnection["ending"]>("reset", "end", "half"),
    ),
    // A valid StartupMessage and the start of a password frame, then reset mid-frame.
    conn(
      "reset-mid-frame",
      fc
        .tuple(arbBytes(20), fc.integer({ min: 30, max: 4000 }))
        .map(([part, len]) => [validStartup, Buffer.concat([Buffer.from([0x70]), int32(len), part])]),
      2,
      fc.constantFrom<MalformedConnection["ending"]>("reset", "end"),
    ),
    // Connect and send nothing at all (half-open from the start), or only a few bytes of a length.
    conn("empty", fc.constant([]), 0, fc.constantFrom<MalformedConnection["ending"]>("end", "reset", "half")),
    conn(
      "partial-header",
      arbBytes(3)
        .filter((b) => b.length > 0)
        .map((b) => [b]),
      1,
      fc.constantFrom<MalformedConnection["ending"]>("end", "reset", "half"),
    ),
  );
}

/**
 * Typed messages for an authenticated session that are garbage in their content but well framed, so the session
 * goes on and handles every one: SQL the parser rejects, names of statements and portals that do not exist,
 * wrong targets, COPY messages outside COPY, fast-path calls. `pause` lets the server's answer arrive first.
 */
export type SessionStep = { kind: "frame"; bytes: Buffer } | { kind: "pause" };

export const arbGarbageSql: fc.Arbitrary<string> = fc
  .oneof(
    fc.string({ maxLength: 40 }),
    fc.string({ unit: "binary", maxLength: 20 }),
    fc.constantFrom(
      "SELEC 1",
      "SELECT FROM WHERE",
      "SELECT * FROM no_such_table",
      "((((",
      "SELECT $1",
      "'",
      '"',
      "$$",
      "/*",
      "COPY",
      "SELECT 1; SELEC 2",
    ),
  )
  .map((s) => s.replaceAll("\0", ""));

export const arbSessionStep: fc.Arbitrary<SessionStep> = fc.oneof(
  { weight: 3, arbitrary: arbGarbageSql.map((s) => ({ kind: "frame" as const, bytes: fe.query(s) })) },
  {
    weight: 3,
    arbitrary: fc
      .tuple(arbCText(6), arbGarbageSql)
      .map(([n, s]) => ({ kind: "frame" as const, bytes: fe.parse(n, s) })),
  },
  {
    weight: 2,
    arbitrary: fc
      .tuple(arbCText(6), arbCText(6), fc.array(fc.option(arbBytes(6)), { maxLength: 3 }))
      .map(([p, s, v]) => ({ kind: "frame" as const, bytes: fe.bind(p, s, v) })),
  },
  {
    weight: 2,
    arbitrary: fc
      .tuple(fc.constantFrom("S" as const, "P" as const), arbCText(6))
      .map(([t, n]) => ({ kind: "frame" as const, bytes: fe.describe(t, n) })),
  },
  {
    weight: 2,
    arbitrary: fc
      .tuple(arbCText(6), fc.nat(10))
      .map(([p, n]) => ({ kind: "frame" as const, bytes: fe.execute(p, n) })),
  },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.constantFrom("S" as const, "P" as const), arbCText(6))
      .map(([t, n]) => ({ kind: "frame" as const, bytes: fe.close(t, n) })),
  },
  { weight: 3, arbitrary: fc.constant({ kind: "frame" as const, bytes: fe.sync() }) },
  { weight: 1, arbitrary: fc.constant({ kind: "frame" as const, bytes: fe.flush() }) },
  {
    weight: 1,
    arbitrary: arbBytes(32).map((b) => ({ kind: "frame" as const, bytes: fe.copyData(b) })),
  },
  { weight: 1, arbitrary: fc.constant({ kind: "frame" as const, bytes: fe.copyDone() }) },
  { weight: 1, arbitrary: arbCText(10).map((s) => ({ kind: "frame" as const, bytes: fe.copyFail(s) })) },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.nat(), fc.array(arbBytes(4), { maxLength: 2 }))
      .map(([oid, a]) => ({ kind: "frame" as const, bytes: fe.functionCall(oid, a) })),
  },
  { weight: 2, arbitrary: fc.constant({ kind: "pause" as const }) },
);

/**
 * The frame that ends a fuzzed session (the session must answer it with a FATAL ErrorResponse, or close): an
 * unknown type byte, a bad or oversized length, a truncated message the peer then resets, a Describe/Close with
 * a bad target, a message body with an unterminated string, or a password message after start-up.
 */
export const arbSessionKiller: fc.Arbitrary<{ kind: string; bytes: Buffer; reset: boolean }> = fc.oneof(
  fc
    .tuple(arbGarbageType, arbBytes(16))
    .map(([t, b]) => ({ kind: "garbage-type", bytes: rawFrame(t, b), reset: false })),
  fc
    .tuple(fc.constantFrom(...KNOWN_TYPES), fc.integer({ min: -(2 ** 31), max: 3 }))
    .map(([t, l]) => ({ kind: "short-length", bytes: rawFrame(t, Buffer.alloc(0), l), reset: false })),
  fc
    .tuple(fc.constantFrom(...KNOWN_TYPES), fc.integer({ min: 64 * 1024 * 1024 + 1, max: 2 ** 31 - 1 }))
    .map(([t, l]) => ({ kind: "oversized-length", bytes: rawFrame(t, Buffer.alloc(0), l), reset: false })),
  fc
    .tuple(fc.constantFrom(...KNOWN_TYPES), fc.integer({ min: 64, max: 100_000 }), arbBytes(30))
    .map(([t, l, b]) => ({ kind: "truncated-then-reset", bytes: rawFrame(t, b, l), reset: true })),
  fc
    .tuple(fc.constantFrom(FrontendType.describe, FrontendType.close), fc.integer({ min: 0, max: 255 }))
    .filter(([, target]) => target !== 0x53 && target !== 0x50)
    .map(([t, target]) => ({
      kind: "bad-target",
      bytes: rawFrame(t, Buffer.from([target, 0])),
      reset: false,
    })),
  fc
    .tuple(
      fc.constantFrom(FrontendType.query, FrontendType.parse, FrontendType.bind, FrontendType.execute),
      arbBytes(12),
    )
    .map(([t, b]) => ({
      kind: "unterminated-string",
      bytes: rawFrame(t, Buffer.from(b.filter((x) => x !== 0))),
      reset: false,
    })),
  arbCText(10).map((s) => ({ kind: "password-after-startup", bytes: fe.password(s), reset: false })),
);
