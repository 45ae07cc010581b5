// Property tests of the PostgreSQL frontend framing and decoders (src/proxy/postgres/wire.ts) with fast-check:
// arbitrary bytes and arbitrary chunkings of valid and corrupted client streams. The reader and the decoders
// may only ever fail with ProtocolError, always terminate, never allocate from a length field beyond the
// configured limit, and decode a valid stream the same however it is chunked. On a failure fast-check prints the
// seed and the shrunk counterexample; replay it with fc.assert(..., { seed, path }).
import { isDeepStrictEqual } from "node:util";
import fc from "fast-check";
import t from "tap";
import {
  BackendType,
  decodeBind,
  decodeErrorFields,
  decodeExecute,
  decodeParse,
  decodePassword,
  decodeQuery,
  decodeRowDescription,
  decodeStartup,
  decodeTarget,
  type Frame,
  FrameReader,
  FrontendType,
  message,
  newSpan,
  ProtocolError,
  type StartupPacket,
  toClient,
  toServer,
} from "../../src/proxy/postgres/wire.js";
import {
  arbBadLength,
  arbCText,
  arbStartupParams,
  arbValidStream,
  cancelRequest,
  fe,
  rawFrame,
  splitAt,
  startupMessage,
} from "../helpers/pg-frames.js";

const RUNS = Number(process.env.FUZZ_RUNS ?? 1500);

/** What the listener and the session make of one frame, as the server does: decoded, or the ProtocolError. */
interface Decoded {
  type: number;
  raw: string;
  value?: unknown;
  error?: string;
}

/** The decoder the proxy applies to a typed client frame (session.ts onClientFrame), or null if it reads none. */
function decodeTyped(frame: Frame): unknown {
  switch (frame.type) {
    case FrontendType.query:
      return decodeQuery(frame);
    case FrontendType.parse:
      return decodeParse(frame);
    case FrontendType.bind:
      return decodeBind(frame);
    case FrontendType.execute:
      return decodeExecute(frame);
    case FrontendType.describe:
    case FrontendType.close:
      return decodeTarget(frame);
    case FrontendType.password:
      return decodePassword(frame);
    default:
      return null;
  }
}

/**
 * Feeds `chunks` to a FrameReader the way the listener does: startup-phase packets until a StartupMessage, then
 * typed messages; decodes every frame. Returns the frames, and the ProtocolError that stopped the stream (any
 * other error propagates and fails the property). Guards against a reader that loops: a frame is at least 4
 * bytes, so there can be no more frames than bytes / 4.
 */
function readStream(
  chunks: readonly Buffer[],
  maxFrame: number,
  opts: { spans?: boolean } = {},
): { frames: Decoded[]; error: ProtocolError | null; buffered: number } {
  const reader = new FrameReader(maxFrame);
  const frames: Decoded[] = [];
  const total = chunks.reduce((n, c) => n + c.length, 0);
  const span = newSpan();
  let calls = 0;
  try {
    for (const chunk of chunks) {
      reader.push(chunk);
      for (;;) {
        if (++calls > total / 4 + chunks.length + 2) throw new Error("the reader does not terminate");
        let frame: Frame | null;
        if (opts.spans && !reader.startup) {
          if (!reader.nextSpan(span)) break;
          frame = { type: span.type, raw: span.buf.subarray(span.start, span.end), body: 5 };
        } else frame = reader.next();
        if (!frame) break;
        const d: Decoded = { type: frame.type, raw: frame.raw.toString("hex") };
        frames.push(d);
        if (reader.startup) {
          const s: StartupPacket = decodeStartup(frame);
          d.value = s;
          if (s.kind === "startup") reader.startup = false;
          else if (s.kind === "cancel") return { frames, error: null, buffered: reader.bufferedBytes };
        } else {
          try {
            d.value = decodeTyped(frame);
          } catch (err) {
            if (!(err instanceof ProtocolError)) throw err;
            d.error = err.message;
          }
        }
      }
    }
  } catch (err) {
    if (err instanceof ProtocolError) return { frames, error: err, buffered: reader.bufferedBytes };
    throw err;
  }
  return { frames, error: null, buffered: reader.bufferedBytes };
}

/** Records the largest Buffer allocation made while `fn` runs (the reader copies split frames with allocUnsafe). */
function largestAllocation<T>(fn: () => T): { result: T; largest: number } {
  const orig = {
    alloc: Buffer.alloc,
    allocUnsafe: Buffer.allocUnsafe,
    allocUnsafeSlow: Buffer.allocUnsafeSlow,
  };
  let largest = 0;
  const spy =
    <F extends (size: number, ...rest: never[]) => Buffer>(f: F) =>
    (size: number, ...rest: never[]) => {
      if (size > largest) largest = size;
      return f(size, ...rest);
    };
  Buffer.alloc = spy(orig.alloc) as typeof Buffer.alloc;
  Buffer.allocUnsafe = spy(orig.allocUnsafe) as typeof Buffer.allocUnsafe;
  Buffer.allocUnsafeSlow = spy(orig.allocUnsafeSlow) as typeof Buffer.allocUnsafeSlow;
  try {
    return { result: fn(), largest };
  } finally {
    Object.assign(Buffer, orig);
  }
}

const arbChunks = (buf: Buffer) =>
  fc.array(fc.nat({ max: buf.length }), { maxLength: 8 }).map((cuts) => splitAt(buf, cuts));
const arbMaxFrame = fc.oneof(fc.integer({ min: 8, max: 300 }), fc.constant(64 * 1024));

t.test(
  "arbitrary bytes, arbitrarily chunked: only ProtocolError, always terminates, bounded copies",
  async (t) => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 600 }).chain((a) => arbChunks(Buffer.from(a))),
        fc.boolean(),
        arbMaxFrame,
        (chunks, startup, maxFrame) => {
          const reader = new FrameReader(maxFrame);
          reader.startup = startup;
          const total = chunks.reduce((n, c) => n + c.length, 0);
          let consumed = 0;
          const { largest } = largestAllocation(() => {
            try {
              for (const c of chunks) {
                reader.push(c);
                for (let f = reader.next(), guard = 0; f; f = reader.next(), guard++) {
                  if (guard > total) throw new Error("the reader does not terminate");
                  if (f.raw.length > maxFrame + 1)
                    throw new Error(`a frame of ${f.raw.length} bytes passed the limit`);
                  consumed += f.raw.length;
                  if (!startup) decodeTyped(f);
                  else decodeStartup(f);
                }
              }
            } catch (err) {
              if (!(err instanceof ProtocolError)) throw err;
              if (!/^(08P01|54000|0A000)$/.test(err.sqlstate)) throw new Error(`SQLSTATE ${err.sqlstate}`);
              return;
            }
            if (consumed + reader.bufferedBytes !== total) throw new Error("bytes were lost or invented");
          });
          // The only copy the reader makes is a split frame (at most the limit plus the type byte) or a header.
          return largest <= maxFrame + 1;
        },
      ),
      { numRuns: RUNS },
    );
    t.pass(`the properties held for ${RUNS} runs`);
  },
);

t.test(
  "a length field past the limit is refused from the header alone, before any body arrives",
  async (t) => {
    fc.assert(
      fc.property(
        fc.integer({ min: 8, max: 4096 }),
        fc.integer({ min: 0, max: 255 }),
        fc.boolean(),
        fc.integer({ min: 1, max: 2 ** 31 - 1 }),
        (maxFrame, type, startup, excess) => {
          const length = Math.min(2 ** 31 - 1, maxFrame + excess);
          const reader = new FrameReader(maxFrame);
          reader.startup = startup;
          const header = Buffer.alloc(startup ? 4 : 5);
          if (startup) header.writeInt32BE(length, 0);
          else {
            header[0] = type;
            header.writeInt32BE(length, 1);
          }
          // Byte by byte: null until the header is whole, then the refusal (never waiting for `length` bytes).
          for (let i = 0; i < header.length - 1; i++) {
            reader.push(header.subarray(i, i + 1));
            if (reader.next() !== null) return false;
          }
          reader.push(header.subarray(header.length - 1));
          const { largest } = largestAllocation(() => {
            try {
              reader.next();
            } catch (err) {
              if (err instanceof ProtocolError && err.sqlstate === "54000") return;
              throw err;
            }
            throw new Error("an oversized frame was not refused");
          });
          return largest <= header.length;
        },
      ),
      { numRuns: RUNS },
    );
    t.pass(`the properties held for ${RUNS} runs`);
  },
);

t.test("bad length fields are refused with a named reason, whatever follows", async (t) => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 255 }),
      arbBadLength,
      fc.uint8Array({ maxLength: 40 }),
      (type, length, rest) => {
        const reader = new FrameReader(64 * 1024);
        reader.startup = false;
        reader.push(rawFrame(type, Buffer.from(rest), length));
        try {
          const f = reader.next();
          // Lengths within [4, limit] are legal: the frame is then complete or awaited.
          return length >= 4 && length <= 64 * 1024 && (f === null || f.raw.length === length + 1);
        } catch (err) {
          return err instanceof ProtocolError && (length < 4 || length > 64 * 1024);
        }
      },
    ),
    { numRuns: RUNS },
  );
  t.pass(`the properties held for ${RUNS} runs`);
});

t.test("a valid stream decodes the same however it is chunked, with next() or nextSpan()", async (t) => {
  fc.assert(
    fc.property(
      arbValidStream.chain((s) => fc.tuple(fc.constant(s), arbChunks(Buffer.concat(s.frames)), fc.boolean())),
      ([stream, chunks, spans]) => {
        const whole = readStream([Buffer.concat(stream.frames)], 64 * 1024);
        const split = readStream(chunks, 64 * 1024, { spans });
        if (whole.error || split.error) return false;
        // Every frame comes out whole and in order: exactly the frames that went in.
        const expected = stream.frames.map((f) => f.toString("hex"));
        const got = split.frames.map((f) => f.raw);
        // Nothing stops a valid stream before its end (a CancelRequest is never generated after start-up).
        return (
          isDeepStrictEqual(got, expected) &&
          split.buffered === 0 &&
          isDeepStrictEqual(split.frames, whole.frames)
        );
      },
    ),
    { numRuns: RUNS },
  );
  t.pass(`the properties held for ${RUNS} runs`);
});

t.test(
  "a corrupted stream fails only with ProtocolError, and frames before the damage are unchanged",
  async (t) => {
    const arbMutation = fc.oneof(
      fc.record({ op: fc.constant("set" as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
      fc.record({
        op: fc.constant("insert" as const),
        at: fc.nat(),
        bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }),
      }),
      fc.record({ op: fc.constant("delete" as const), at: fc.nat(), n: fc.integer({ min: 1, max: 8 }) }),
      fc.record({ op: fc.constant("truncate" as const), at: fc.nat() }),
    );
    fc.assert(
      fc.property(
        arbValidStream,
        arbMutation,
        fc.array(fc.nat(), { maxLength: 6 }),
        arbMaxFrame,
        (stream, m, cuts, maxFrame) => {
          const good = Buffer.concat(stream.frames);
          const at = good.length === 0 ? 0 : m.at % good.length;
          let bad: Buffer;
          if (m.op === "set") {
            bad = Buffer.from(good);
            bad[at] = m.byte;
          } else if (m.op === "insert")
            bad = Buffer.concat([good.subarray(0, at), m.bytes, good.subarray(at)]);
          else if (m.op === "delete") bad = Buffer.concat([good.subarray(0, at), good.subarray(at + m.n)]);
          else bad = good.subarray(0, at);
          const before = readStream([good], maxFrame);
          const after = readStream(splitAt(bad, cuts), maxFrame);
          // Frames that end before the damaged offset read exactly as before.
          let end = 0;
          for (let i = 0; i < before.frames.length && i < after.frames.length; i++) {
            const f = before.frames[i] as Decoded;
            end += f.raw.length / 2;
            if (end > at) break;
            if (!isDeepStrictEqual(after.frames[i], f)) return false;
          }
          return true;
        },
      ),
      { numRuns: RUNS },
    );
    t.pass(`the properties held for ${RUNS} runs`);
  },
);

t.test("typed decoders on arbitrary bodies: only ProtocolError", async (t) => {
  const backendTypes = Object.values(BackendType);
  fc.assert(
    fc.property(
      fc.constantFrom(...Object.values(FrontendType), ...backendTypes),
      fc.uint8Array({ maxLength: 120 }),
      (type, body) => {
        const frame: Frame = { type, raw: message(type, Buffer.from(body)), body: 5 };
        for (const decode of [
          decodeTyped,
          decodeRowDescription,
          decodeErrorFields,
          () => decodeStartup({ type: 0, raw: frame.raw.subarray(1), body: 4 }),
        ]) {
          try {
            decode(frame);
          } catch (err) {
            if (!(err instanceof ProtocolError)) throw err;
          }
        }
        return true;
      },
    ),
    { numRuns: RUNS },
  );
  t.pass(`the properties held for ${RUNS} runs`);
});

t.test("round trips through the encoders", async (t) => {
  const one = (raw: Buffer, startup = false): Frame => {
    const r = new FrameReader(1 << 20);
    r.startup = startup;
    r.push(raw);
    const f = r.next();
    if (!f || r.bufferedBytes !== 0) throw new Error("not exactly one frame");
    return f;
  };
  fc.assert(
    fc.property(arbCText(200), (sql) => decodeQuery(one(toServer.query(sql))) === sql),
    { numRuns: RUNS },
  );
  fc.assert(
    fc.property(arbCText(20), arbCText(200), (name, query) => {
      const d = decodeParse(one(toServer.parse(name, query)));
      return d.name === name && d.query === query;
    }),
    { numRuns: RUNS },
  );
  fc.assert(
    fc.property(arbCText(20), arbCText(20), (portal, statement) => {
      const d = decodeBind(one(fe.bind(portal, statement, [Buffer.from("x"), null])));
      return d.portal === portal && d.statement === statement;
    }),
    { numRuns: RUNS },
  );
  fc.assert(
    fc.property(fc.constantFrom("S" as const, "P" as const), arbCText(20), (target, name) => {
      const a = decodeTarget(one(fe.describe(target, name)));
      const b = decodeTarget(one(fe.close(target, name)));
      return a.target === target && a.name === name && b.target === target && b.name === name;
    }),
    { numRuns: RUNS },
  );
  fc.assert(
    fc.property(
      arbCText(20),
      fc.nat(),
      (portal, n) => decodeExecute(one(fe.execute(portal, n))).portal === portal,
    ),
    { numRuns: RUNS },
  );
  fc.assert(
    fc.property(arbCText(100), (pw) => decodePassword(one(fe.password(pw))) === pw),
    { numRuns: RUNS },
  );
  fc.assert(
    fc.property(arbStartupParams, (params) => {
      const s = decodeStartup(one(startupMessage(params), true));
      // (Compared as a set: integer-like keys such as "0" enumerate first in any JavaScript object.)
      return (
        s.kind === "startup" &&
        Object.keys(s.params).length === params.length &&
        params.every(([k, v]) => Object.hasOwn(s.params, k) && s.params[k] === v)
      );
    }),
    { numRuns: RUNS },
  );
  fc.assert(
    fc.property(fc.integer(), fc.integer(), (pid, secret) => {
      for (const raw of [toServer.cancel(pid, secret), cancelRequest(pid, secret)]) {
        const s = decodeStartup(one(raw, true));
        if (s.kind !== "cancel" || s.pid !== pid || s.secret !== secret) return false;
      }
      return true;
    }),
    { numRuns: RUNS },
  );
  fc.assert(
    fc.property(
      fc.record({
        code: fc.stringMatching(/^[0-9A-Z]{5}$/),
        message: arbCText(80).filter((s) => s !== ""),
        detail: fc.option(
          arbCText(40).filter((s) => s !== ""),
          { nil: undefined },
        ),
        hint: fc.option(
          arbCText(40).filter((s) => s !== ""),
          { nil: undefined },
        ),
      }),
      (f) => {
        const d = decodeErrorFields(one(toClient.errorResponse(f)));
        return d.C === f.code && d.M === f.message && d.S === "ERROR" && d.D === f.detail && d.H === f.hint;
      },
    ),
    { numRuns: RUNS },
  );
  t.pass(`the properties held for ${RUNS} runs`);
});

// --- regressions found by the properties above -----------------------------------------------------------------------

t.test("regression: a startup parameter named __proto__ is kept (seed 2067703766)", async (t) => {
  const r = new FrameReader(1024);
  r.push(
    startupMessage([
      ["__proto__", ""],
      ["user", "alice"],
      ["constructor", "x"],
    ]),
  );
  const s = decodeStartup(r.next() as Frame);
  t.equal(s.kind, "startup");
  if (s.kind !== "startup") return;
  t.same(Object.entries(s.params), [
    ["__proto__", ""],
    ["user", "alice"],
    ["constructor", "x"],
  ]);
  t.equal(Object.getPrototypeOf(s.params), null, "no prototype to assign through");
});
