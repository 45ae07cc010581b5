// PostgreSQL framing and the masking rewrites, on hand-built frames (including malformed ones).
import t from "tap";
import { Masker, planFor } from "../../src/proxy/postgres/masking.js";
import {
  decodeErrorFields,
  decodeParse,
  decodeRowDescription,
  decodeStartup,
  FrameReader,
  PROTOCOL_V3,
  ProtocolError,
  toClient,
  toServer,
} from "../../src/proxy/postgres/wire.js";
import { maskCopyText, maskDataRow } from "../helpers/masking.js";

function startupFrame(params: Record<string, string>): Buffer {
  const body = Buffer.concat([
    ...Object.entries(params).flatMap(([k, v]) => [Buffer.from(`${k}\0`), Buffer.from(`${v}\0`)]),
    Buffer.from([0]),
  ]);
  const out = Buffer.alloc(8 + body.length);
  out.writeInt32BE(out.length, 0);
  out.writeInt32BE(PROTOCOL_V3, 4);
  body.copy(out, 8);
  return out;
}

function dataRow(values: Array<string | null>): Buffer {
  const parts = values.map((v) => {
    if (v === null) {
      const b = Buffer.alloc(4);
      b.writeInt32BE(-1);
      return b;
    }
    const s = Buffer.from(v);
    const b = Buffer.alloc(4 + s.length);
    b.writeInt32BE(s.length);
    s.copy(b, 4);
    return b;
  });
  const body = Buffer.concat(parts);
  const out = Buffer.alloc(7 + body.length);
  out[0] = 0x44;
  out.writeInt32BE(out.length - 1, 1);
  out.writeInt16BE(values.length, 5);
  body.copy(out, 7);
  return out;
}

function readRow(frame: Buffer): Array<string | null> {
  const n = frame.readInt16BE(5);
  const out: Array<string | null> = [];
  let pos = 7;
  for (let i = 0; i < n; i++) {
    const len = frame.readInt32BE(pos);
    pos += 4;
    if (len < 0) out.push(null);
    else {
      out.push(frame.toString("utf8", pos, pos + len));
      pos += len;
    }
  }
  t.equal(frame.readInt32BE(1), frame.length - 1, "frame length is consistent");
  return out;
}

t.test("frames arrive split at any byte and are reassembled", async (t) => {
  const stream = Buffer.concat([
    startupFrame({ user: "alice", database: "orders-db" }),
    toServer.query("SELECT 1"),
    toServer.query("SELECT 2"),
  ]);
  const reader = new FrameReader(1024);
  const frames = [];
  for (const byte of stream) {
    reader.push(Buffer.from([byte]));
    for (let f = reader.next(); f; f = reader.next()) {
      frames.push(f);
      if (reader.startup) reader.startup = false;
    }
  }
  t.equal(frames.length, 3);
  const s = decodeStartup(frames[0] as (typeof frames)[0]);
  t.same(s, { kind: "startup", params: { user: "alice", database: "orders-db" } });
  t.equal(String.fromCharCode((frames[1] as (typeof frames)[0]).type), "Q");
});

t.test("malformed and oversized frames are refused with a named reason", async (t) => {
  const tooShort = Buffer.from([0x51, 0, 0, 0, 2]);
  const r1 = new FrameReader(1024);
  r1.startup = false;
  r1.push(tooShort);
  t.throws(() => r1.next(), /invalid message length 2 for message type 'Q'/);

  const huge = Buffer.from([0x51, 0x7f, 0, 0, 0]);
  const r2 = new FrameReader(1024);
  r2.startup = false;
  r2.push(huge);
  const err = t.throws(() => r2.next(), ProtocolError) as ProtocolError;
  t.match(err.message, /exceeds the gateway's limit of 1024 bytes/);
  t.equal(err.sqlstate, "54000");

  const badVersion = Buffer.alloc(8);
  badVersion.writeInt32BE(8, 0);
  badVersion.writeInt32BE(2 << 16, 4);
  const r3 = new FrameReader(1024);
  r3.push(badVersion);
  t.throws(
    () => decodeStartup(r3.next() as NonNullable<ReturnType<FrameReader["next"]>>),
    /unsupported frontend protocol 2\.0/,
  );

  const r4 = new FrameReader(1024);
  r4.startup = false;
  r4.push(Buffer.from([0x50, 0, 0, 0, 7, 0x61, 0x62, 0x63])); // Parse with an unterminated name
  const parse = r4.next();
  t.throws(() => decodeParse(parse as NonNullable<typeof parse>), /unterminated string/);
});

t.test("backend messages round-trip through the readers", async (t) => {
  const err = toClient.errorResponse({
    code: "42501",
    message: "blocked",
    detail: "pamgate policy: pg.no_where",
  });
  const r = new FrameReader(1024);
  r.startup = false;
  r.push(err);
  const f = r.next();
  t.same(decodeErrorFields(f as NonNullable<typeof f>), {
    S: "ERROR",
    V: "ERROR",
    C: "42501",
    M: "blocked",
    D: "pamgate policy: pg.no_where",
  });
});

t.test("DataRow masking: strategies, NULLs, non-text types, untouched rows", async (t) => {
  const masker = new Masker(Buffer.from("k"));
  const fields = [
    { name: "id", tableOid: 1, column: 1, typeOid: 23, format: 0 },
    { name: "ssn", tableOid: 1, column: 2, typeOid: 25, format: 0 },
    { name: "email", tableOid: 1, column: 3, typeOid: 1043, format: 0 },
    { name: "dob", tableOid: 1, column: 4, typeOid: 1082, format: 0 },
    { name: "note", tableOid: 1, column: 5, typeOid: 25, format: 0 },
  ];
  const origins = [
    "public.users.id",
    "public.users.ssn",
    "public.users.email",
    "public.users.dob",
    "public.users.note",
  ];
  const plan = planFor(fields, origins, [
    { field: "public.users.ssn", strategy: "partial" },
    { field: "public.users.email", strategy: "hash" },
    { field: "public.users.dob", strategy: "redact" },
  ]);
  const out = readRow(
    maskDataRow(masker, dataRow(["7", "123-45-6789", "ada@example.com", "1815-12-10", "x"]), plan),
  );
  t.equal(out[0], "7");
  t.equal(out[1], "*******6789");
  t.match(out[2], /^h:[0-9a-f]{16}$/);
  t.equal(out[3], null, "a masked non-text column becomes NULL");
  t.equal(out[4], "x");
  const again = readRow(
    maskDataRow(masker, dataRow(["8", "000-00-0000", "ada@example.com", null, null]), plan),
  );
  t.equal(again[2], out[2], "hash is stable, so joins on it still work");
  t.equal(again[3], null);

  const untouched = dataRow(["1", null, null, null, "y"]);
  t.equal(
    maskDataRow(masker, untouched, plan),
    untouched,
    "a row with only NULLs in masked columns is passed as is",
  );

  const other = new Masker(Buffer.from("other-key"));
  t.not(
    readRow(maskDataRow(other, dataRow(["8", "x", "ada@example.com", null, null]), plan))[2],
    out[2],
    "hash is keyed",
  );
});

t.test("COPY text masking keeps escapes and NULL markers", async (t) => {
  const masker = new Masker(Buffer.from("k"));
  const plan = [
    null,
    { strategy: "redact" as const, textLike: true },
    { strategy: "partial" as const, textLike: true },
  ];
  const body = Buffer.from("1\tsecret\\twith tab\t4111111111111111\n2\t\\N\tabc\n");
  const frame = Buffer.alloc(5 + body.length);
  frame[0] = 0x64;
  frame.writeInt32BE(frame.length - 1, 1);
  body.copy(frame, 5);
  const out = maskCopyText(masker, frame, plan);
  t.equal(out.readInt32BE(1), out.length - 1);
  t.equal(out.toString("utf8", 5), "1\t***\t************1111\n2\t\\N\t***\n");
});

t.test("RowDescription decoding", async (t) => {
  const name = Buffer.from("ssn\0");
  const body = Buffer.alloc(2 + name.length + 18);
  body.writeInt16BE(1, 0);
  name.copy(body, 2);
  let o = 2 + name.length;
  body.writeInt32BE(16384, o);
  body.writeInt16BE(2, o + 4);
  body.writeInt32BE(25, o + 6);
  body.writeInt16BE(-1, o + 10);
  body.writeInt32BE(-1, o + 12);
  body.writeInt16BE(0, o + 16);
  o += 18;
  const frame = Buffer.alloc(5 + body.length);
  frame[0] = 0x54;
  frame.writeInt32BE(frame.length - 1, 1);
  body.copy(frame, 5);
  t.same(decodeRowDescription({ type: 0x54, raw: frame, body: 5 }), [
    { name: "ssn", tableOid: 16384, column: 2, typeOid: 25, format: 0 },
  ]);
});
