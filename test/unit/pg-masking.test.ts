// Masking of result values (Masker) and the upstream → client path of a ProxySession on fake sockets: every
// strategy, NULLs, non-text columns, COPY text, frames split anywhere, passthrough mixed with masked rows,
// backpressure.
import t from "tap";
import { type ColumnMask, Masker, type MaskPlan } from "../../src/proxy/postgres/masking.js";
import { SipHash24 } from "../../src/proxy/postgres/siphash.js";
import { FrontendType, toServer } from "../../src/proxy/postgres/wire.js";
import { maskCopyText, maskDataRow, maskValue } from "../helpers/masking.js";
import {
  commandComplete,
  dataRow,
  fakeSession,
  notice,
  parseFrames,
  readyForQuery,
  rowDescription,
} from "../helpers/pg-session.js";

const text = (strategy: ColumnMask["strategy"]): ColumnMask => ({ strategy, textLike: true });
const masker = new Masker(Buffer.from("k"));
const mask = (value: string, m: ColumnMask) => maskValue(masker, Buffer.from(value), m)?.toString() ?? null;

function rowValues(frame: Buffer): Array<string | null> {
  const [f] = parseFrames(frame);
  return f?.values ?? [];
}

function copyFrame(body: string): Buffer {
  const b = Buffer.from(body);
  const out = Buffer.alloc(5 + b.length);
  out[0] = 0x64;
  out.writeInt32BE(out.length - 1, 1);
  b.copy(out, 5);
  return out;
}

t.test("strategies on single values", async (t) => {
  t.equal(mask("secret", text("redact")), "***");
  t.equal(mask("", text("redact")), "***");
  t.equal(mask("123-45-6789", text("partial")), "*******6789");
  t.equal(mask("12345", text("partial")), "*2345");
  t.equal(mask("1234", text("partial")), "****", "4 characters or fewer: nothing kept");
  t.equal(mask("ab", text("partial")), "**");
  t.equal(mask("", text("partial")), "*", "an empty value still shows it was masked");
  t.equal(mask("anything", { strategy: "hash", textLike: false }), null, "a non-text column becomes NULL");
  t.equal(mask("anything", { strategy: "redact", textLike: false }), null);
});

t.test("partial counts characters, not bytes", async (t) => {
  t.equal(mask("José Müller", text("partial")), "*******ller");
  t.equal(mask("Zoë Brontë", text("partial")), "******ontë");
  t.equal(mask("日本語テキスト", text("partial")), "***テキスト");
  t.equal(mask("ab😀😀😀😀", text("partial")), "**😀😀😀😀", "a character outside the BMP is one character");
  t.equal(mask("é", text("partial")), "*");
  t.equal(mask("éèêë", text("partial")), "****");
});

t.test("hash: keyed SipHash-2-4, 64 bits in hex, stable", async (t) => {
  // SipHash-2-4 itself: a reference test vector (key 00..0f, message 00..0e); test/unit/siphash.test.ts has all 64.
  const key = Buffer.from([...Array(16).keys()]);
  const msg = Buffer.from([...Array(15).keys()]);
  t.equal(new SipHash24(key).digest(msg).toString("hex"), "e545be4961ca29a1");

  const h = mask("ada@example.com", text("hash"));
  t.match(h, /^h:[0-9a-f]{16}$/);
  t.equal(mask("ada@example.com", text("hash")), h, "stable for one key");
  t.equal(
    maskValue(new Masker(Buffer.from("k")), Buffer.from("ada@example.com"), text("hash"))?.toString(),
    h,
  );
  t.not(
    maskValue(new Masker(Buffer.from("other")), Buffer.from("ada@example.com"), text("hash"))?.toString(),
    h,
  );
  t.not(mask("ada@example.con", text("hash")), h);
  t.match(mask("", text("hash")), /^h:[0-9a-f]{16}$/);
  const long = "x".repeat(100_000);
  t.match(mask(long, text("hash")), /^h:[0-9a-f]{16}$/, "a long value hashes too");
  // Pinned: a change here changes every pseudonym (allowed between bundle revisions, but never by accident).
  t.equal(h, "h:b2ac7c7b0bb21c97");
});

t.test("DataRow: plans, NULLs, non-text columns, rows left as they are", async (t) => {
  const plan: MaskPlan = [null, text("partial"), text("hash"), { strategy: "redact", textLike: false }, null];
  const out = rowValues(
    maskDataRow(masker, dataRow(["7", "123-45-6789", "ada@example.com", "1815-12-10", "x"]), plan),
  );
  t.same(out, ["7", "*******6789", mask("ada@example.com", text("hash")), null, "x"]);

  const nulls = dataRow(["1", null, null, null, "y"]);
  t.equal(maskDataRow(masker, nulls, plan), nulls, "only NULLs in masked columns: the same frame");
  t.same(rowValues(maskDataRow(masker, dataRow(["1", null, "", null, ""]), plan)), [
    "1",
    null,
    mask("", text("hash")),
    null,
    "",
  ]);
  const wide = dataRow(["1", "x".repeat(300), "é".repeat(200), "d", "z".repeat(70)]);
  t.same(rowValues(maskDataRow(masker, wide, plan)), [
    "1",
    `${"*".repeat(296)}xxxx`,
    mask("é".repeat(200), text("hash")),
    null,
    "z".repeat(70),
  ]);

  const into = Buffer.alloc(Masker.dataRowRoom(wide.length, plan) + 10, 0xee);
  const n = masker.maskDataRowInto(wide, 0, wide.length, plan, into, 10);
  t.same(
    rowValues(into.subarray(10, 10 + n)),
    rowValues(maskDataRow(masker, wide, plan)),
    "writes at an offset",
  );
  t.equal(into[0], 0xee, "and nothing before it");

  const bad = dataRow(["1", "secret"]);
  bad.writeInt32BE(1000, 7 + 4 + 1); // the second value claims 1000 bytes
  t.throws(() => maskDataRow(masker, bad, [null, text("redact")]), /malformed DataRow/);
});

t.test("DataRow: values of every short length, ASCII or not, at every offset", async (t) => {
  // The rewrite copies 4 bytes at a time and checks ASCII 4 bytes at a time: lengths around those steps, a
  // non-ASCII byte in each position, and long values (copied with Buffer#copy) against a plain reference.
  const partial = (v: string) => {
    const chars = [...v];
    return chars.length > 4
      ? "*".repeat(chars.length - 4) + chars.slice(-4).join("")
      : "*".repeat(Math.max(chars.length, 1));
  };
  const values: string[] = [];
  for (let n = 0; n <= 12; n++) {
    const ascii = "abcdefghijkl".slice(0, n);
    values.push(ascii);
    for (let i = 0; i < n; i++) values.push(`${ascii.slice(0, i)}é${ascii.slice(i + 1)}`);
  }
  for (const n of [31, 32, 33, 127, 128, 129, 130, 500]) values.push("x".repeat(n - 1) + String(n % 10));
  const plan: MaskPlan = [null, text("partial"), null, text("hash"), text("redact"), null];
  let failures = 0;
  for (const [k, v] of values.entries()) {
    const lead = "L".repeat(k % 9); // shifts every later value's offset
    const row = [lead, v, values[(k * 7) % values.length] ?? "", v, v, "t".repeat(k % 140)];
    const frame = dataRow(row);
    const want = [row[0], partial(v), row[2], mask(v, text("hash")), "***", row[5]];
    const out = Buffer.alloc(Masker.dataRowRoom(frame.length, plan) + 3 + (k % 5), 0xee);
    const n = masker.maskDataRowInto(frame, 0, frame.length, plan, out, 3 + (k % 5));
    const got = rowValues(out.subarray(3 + (k % 5), 3 + (k % 5) + n));
    if (JSON.stringify(got) !== JSON.stringify(want)) {
      failures++;
      t.same(got, want, `row ${k}: ${JSON.stringify(v)}`);
    }
    if (out[2] !== 0xee || out[3 + (k % 5) + n] !== 0xee) {
      failures++;
      t.fail(`row ${k}: bytes written outside the frame`);
    }
  }
  t.equal(failures, 0, `${values.length} rows`);
});

t.test("COPY text: escapes, NULL markers, several rows, hash agrees with DataRow", async (t) => {
  const plan: MaskPlan = [null, text("redact"), text("partial"), text("hash")];
  const out = maskCopyText(
    masker,
    copyFrame("1\tsecret\\twith tab\t4111111111111111\tada@example.com\n2\t\\N\tabc\t\\N\n"),
    plan,
  );
  t.equal(out.readInt32BE(1), out.length - 1);
  const h = mask("ada@example.com", text("hash"));
  t.equal(out.toString("utf8", 5), `1\t***\t************1111\t${h}\n2\t\\N\t***\t\\N\n`);

  // Escapes are undone before masking and redone after: a tab in the kept characters stays escaped.
  const tabbed = maskCopyText(masker, copyFrame("1\tx\tabcd\\te\ta\\tb\n"), plan).toString("utf8", 5);
  t.equal(tabbed, `1\t***\t**cd\\te\t${mask("a\tb", text("hash"))}\n`);
  const slashed = maskCopyText(masker, copyFrame("1\tx\tab\\\\cd\tq\n"), plan).toString("utf8", 5);
  t.equal(slashed, `1\t***\t*b\\\\cd\t${mask("q", text("hash"))}\n`, "so does a backslash");
  t.equal(
    maskCopyText(masker, copyFrame("1\tx\tnewline\\nend\tq"), plan).toString("utf8", 5),
    `1\t***\t*******\\nend\t${mask("q", text("hash"))}`,
    "a frame without a final newline",
  );
  t.equal(
    maskCopyText(masker, copyFrame("\n"), plan).toString("utf8", 5),
    "\n",
    "an empty row is left as it is",
  );
});

// --- the session's upstream → client path ------------------------------------------------------------------

const OID = 16384;
const columns = [
  { name: "id", tableOid: OID, column: 1, typeOid: 23 },
  { name: "ssn", tableOid: OID, column: 2, typeOid: 25 },
  { name: "email", tableOid: OID, column: 3, typeOid: 25 },
  { name: "dob", tableOid: OID, column: 4, typeOid: 1082 },
];
const options = {
  hashKey: Buffer.from("k"),
  masks: [
    { field: "public.users.ssn", strategy: "partial" as const },
    { field: "public.users.email", strategy: "hash" as const },
    { field: "public.users.dob", strategy: "redact" as const },
  ],
  origins: {
    [`${OID}/1`]: "public.users.id",
    [`${OID}/2`]: "public.users.ssn",
    [`${OID}/3`]: "public.users.email",
    [`${OID}/4`]: "public.users.dob",
  },
};

/** A result of masked rows, passthrough rows and other frames between them, and what the client must get. */
function scenario() {
  const h = (v: string) => mask(v, text("hash"));
  const rows: Array<[Array<string | null>, Array<string | null>]> = [
    [
      ["1", "123-45-6789", "ada@example.com", "1815-12-10"],
      ["1", "*******6789", h("ada@example.com"), null],
    ],
    [
      ["2", null, null, null],
      ["2", null, null, null],
    ], // passes as it is
    [
      ["3", "José", "grace@example.com", null],
      ["3", "****", h("grace@example.com"), null],
    ],
  ];
  const server = Buffer.concat([
    rowDescription(columns),
    dataRow(rows[0]?.[0] ?? []),
    dataRow(rows[1]?.[0] ?? []),
    notice("in the middle"),
    dataRow(rows[2]?.[0] ?? []),
    dataRow(rows[1]?.[0] ?? []),
    commandComplete("SELECT 4"),
    readyForQuery(),
  ]);
  const expected = [
    { type: "T" },
    { type: "D", values: rows[0]?.[1] },
    { type: "D", values: rows[1]?.[1] },
    { type: "N" },
    { type: "D", values: rows[2]?.[1] },
    { type: "D", values: rows[1]?.[1] },
    { type: "C" },
    { type: "Z" },
  ];
  return { server, expected };
}

function summary(out: Buffer) {
  return parseFrames(out).map((f) =>
    f.type === "D" ? { type: f.type, values: f.values } : { type: f.type },
  );
}

t.test("session: masked rows and passthrough frames in one chunk, in order", async (t) => {
  const s = await fakeSession(options);
  await s.query("SELECT id, ssn, email, dob FROM users");
  const { server, expected } = scenario();
  await s.fromServer(server);
  t.same(summary(s.client.output()), expected);

  // The unmasked stretches and the masked rows go out as a few writes, not one per frame.
  t.ok(s.client.writeCalls <= 8, `${s.client.writeCalls} writes for 8 frames`);
  t.equal(s.client.corked, 0, "the client is uncorked again");

  // The next statement, unmasked (the fake pipeline masks every statement, but this result has no origins).
  const before = s.client.writes.length;
  await s.query("SELECT 1");
  const plain = Buffer.concat([
    rowDescription([{ name: "?column?", tableOid: 0, column: 0, typeOid: 23 }]),
    dataRow(["1"]),
    dataRow(["2"]),
    commandComplete("SELECT 2"),
    readyForQuery(),
  ]);
  await s.fromServer(plain);
  t.same(Buffer.concat(s.client.writes.slice(before)), plain, "an unmasked result passes byte for byte");
  t.equal(s.client.writes.length - before, 1, "in one write");
});

t.test("session: frames split at every byte boundary", async (t) => {
  const { server, expected } = scenario();
  for (let cut = 1; cut < server.length; cut++) {
    const s = await fakeSession(options);
    await s.query("SELECT id, ssn, email, dob FROM users");
    await s.fromServer(server.subarray(0, cut), server.subarray(cut));
    const got = summary(s.client.output());
    if (JSON.stringify(got) !== JSON.stringify(expected)) {
      t.same(got, expected, `split at byte ${cut}`);
      return;
    }
  }
  const s = await fakeSession(options);
  await s.query("SELECT id, ssn, email, dob FROM users");
  const bytes = [...server].map((b) => Buffer.from([b]));
  await s.fromServer(...bytes);
  t.same(summary(s.client.output()), expected, "one byte at a time");
  t.pass(`every split of ${server.length} bytes gives the same result`);
});

t.test("session: the upstream is paused while the client cannot keep up", async (t) => {
  const s = await fakeSession(options);
  await s.query("SELECT id, ssn, email, dob FROM users");
  const { server, expected } = scenario();
  s.client.full = true;
  await s.fromServer(server);
  t.ok(s.upstream.paused, "a full client socket pauses reading from the server");
  t.same(summary(s.client.output()), expected, "what was already read is still delivered");
  s.client.full = false;
  s.client.emit("drain");
  t.notOk(s.upstream.paused, "drain resumes it");
});

t.test("session: masked COPY TO STDOUT, split across chunks", async (t) => {
  const s = await fakeSession({
    ...options,
    tables: { "public.users": ["public.users.id", "public.users.ssn", "public.users.email"] },
  });
  await s.query("COPY public.users TO STDOUT");
  const copyOut = Buffer.from([0x48, 0, 0, 0, 13, 0, 0, 3, 0, 0, 0, 0, 0, 0]);
  const server = Buffer.concat([
    copyOut,
    copyFrame("1\t123-45-6789\tada@example.com\n"),
    copyFrame("2\t\\N\t\\N\n"),
    Buffer.from([0x63, 0, 0, 0, 4]), // CopyDone
    commandComplete("COPY 2"),
    readyForQuery(),
  ]);
  await s.fromServer(server.subarray(0, 20), server.subarray(20, 41), server.subarray(41));
  const frames = parseFrames(s.client.output());
  t.same(
    frames.map((f) => f.type),
    ["H", "d", "d", "c", "C", "Z"],
  );
  t.equal(frames[1]?.raw.toString("utf8", 5), `1\t*******6789\t${mask("ada@example.com", text("hash"))}\n`);
  t.equal(frames[2]?.raw.toString("utf8", 5), "2\t\\N\t\\N\n");
});

/** Frontend Bind (unnamed portal and statement, no parameters), Execute (unnamed, no limit) and Sync. */
function extendedRun(): Buffer {
  const bind = Buffer.from([FrontendType.bind, 0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0]);
  const execute = Buffer.from([FrontendType.execute, 0, 0, 0, 9, 0, 0, 0, 0, 0]);
  const sync = Buffer.from([FrontendType.sync, 0, 0, 0, 4]);
  return Buffer.concat([toServer.parse("", "SELECT id, ssn, email, dob FROM users"), bind, execute, sync]);
}

t.test("session: extended protocol hides the injected Describe's answer", async (t) => {
  const s = await fakeSession(options);
  s.client.emit("data", extendedRun());
  for (let i = 0; i < 100 && s.upstream.writes.length < 5; i++) await new Promise((r) => setImmediate(r));
  const sent = parseFrames(Buffer.concat(s.upstream.writes), true).map((f) => f.type);
  t.same(sent, ["P", "B", "D", "E", "S"], "the proxy asks for the portal's columns before Execute");

  const { expected } = scenario();
  const server = Buffer.concat([
    Buffer.from([0x31, 0, 0, 0, 4]), // ParseComplete
    Buffer.from([0x32, 0, 0, 0, 4]), // BindComplete
    rowDescription(columns), // the injected Describe's answer
    dataRow(["1", "123-45-6789", "ada@example.com", "1815-12-10"]),
    commandComplete("SELECT 1"),
    readyForQuery(),
  ]);
  // Split inside the RowDescription and inside the DataRow.
  await s.fromServer(server.subarray(0, 17), server.subarray(17, 70), server.subarray(70));
  t.same(summary(s.client.output()), [
    { type: "1" },
    { type: "2" },
    expected[1],
    { type: "C" },
    { type: "Z" },
  ]);
});

t.test("session: a malformed DataRow from the server ends the session with an error", async (t) => {
  const s = await fakeSession(options);
  await s.query("SELECT id, ssn, email, dob FROM users");
  const bad = dataRow(["1", "123-45-6789", null, null]);
  bad.writeInt32BE(500, 7 + 4 + 1); // ssn claims 500 bytes
  await s.fromServer(Buffer.concat([rowDescription(columns), dataRow(["0", null, null, null]), bad]));
  const frames = parseFrames(s.client.output());
  t.same(
    frames.map((f) => f.type),
    ["T", "D", "E"],
    "what came before the bad frame, then the error",
  );
  t.match(frames[2]?.raw.toString(), /could not process the server's response: malformed DataRow/);
  t.ok(s.client.destroyed);
});
