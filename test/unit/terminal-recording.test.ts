// Terminal recordings keep the exact bytes (valid UTF-8 as the asciicast text itself, anything else beside it in
// the chunk) and, for ptys, keyframes: the screen every ≤ 256 KiB or 10 s, which a player can start from.
import { createRequire } from "node:module";
import type { Terminal as TerminalType } from "@xterm/headless";
import t, { type Test } from "tap";
import type { SpoolRecord } from "../../src/audit/record.js";
import {
  KEYFRAME_BYTES,
  TerminalRecording,
  type TerminalRecordingOptions,
  utf8CompleteLength,
} from "../../src/audit/recording.js";
import {
  loadRecording,
  recordedBytes,
  recordingFile,
  type SessionRecording,
} from "../../src/audit/replay.js";

const { Terminal } = createRequire(import.meta.url)("@xterm/headless") as { Terminal: typeof TerminalType };

/** A recording writing to memory; `load()` reassembles it as `pamgate replay` does. */
function memoryRecording(options: Partial<TerminalRecordingOptions> = {}) {
  const bodies: string[] = [];
  const rec = new TerminalRecording(
    async (kind, body) => {
      bodies.push(body);
      return { seq: bodies.length, hash: "", kind } as never;
    },
    "s-1",
    { width: 80, height: 24, flushMs: 60_000, now: () => 0, ...options },
  );
  async function* records(): AsyncGenerator<SpoolRecord> {
    let seq = 0;
    for (const body of bodies) yield { seq: ++seq, kind: "recording", prev: "", hash: "", body, line: "" };
  }
  const load = async () => (await loadRecording(records(), "s-1")) as SessionRecording;
  const chunks = () => bodies.map((b) => JSON.parse(b) as Record<string, unknown>);
  return { rec, load, chunks };
}

/** Mulberry32: the same "random" streams on every run. */
function prng(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

const PIECES: Array<number[] | string> = [
  "plain ascii ",
  "\r\n",
  "\x1b[31mred\x1b[0m",
  "é", // 2 bytes
  "€", // 3 bytes
  "😀", // 4 bytes
  "\uFFFD", // a genuine replacement character: valid UTF-8, kept as text
  "\uFEFF", // a BOM (TextDecoder would have dropped one at the start)
  [0xff],
  [0xfe, 0xff],
  [0xc0, 0xaf], // overlong "/"
  [0xe0, 0x80, 0x80], // overlong
  [0xed, 0xa0, 0x80], // an encoded surrogate
  [0x80], // a lone continuation byte
  [0xe2, 0x82], // a truncated "€" …
  [0xf0, 0x9f, 0x98], // … and a truncated emoji, followed by whatever comes next
  [0xf4, 0x90, 0x80, 0x80], // beyond U+10FFFF
  [0x00, 0x07, 0x1b],
];

function randomStream(rand: () => number, n: number, validOnly: boolean): Buffer {
  const parts: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    const p = PIECES[Math.floor(rand() * PIECES.length)] as number[] | string;
    if (validOnly && typeof p !== "string") continue;
    parts.push(typeof p === "string" ? Buffer.from(p) : Buffer.from(p));
  }
  return Buffer.concat(parts);
}

/** Pushes `bytes` in random slices (1 byte to 40), so characters are split across pushes. */
function pushSliced(rand: () => number, bytes: Buffer, push: (b: Buffer) => void): void {
  for (let o = 0; o < bytes.length; ) {
    const n = 1 + Math.floor(rand() * 40);
    push(bytes.subarray(o, o + n));
    o += n;
  }
}

/** Checks a .cast is asciicast v2 as players read it: a header object, then [time, code, string] lines. */
function checkCast(t: Test, cast: string): void {
  const lines = cast.trimEnd().split("\n");
  const header = JSON.parse(lines[0] as string);
  t.match(header, { version: 2, width: Number, height: Number, timestamp: Number }, "asciicast v2 header");
  let last = 0;
  let bad = 0;
  for (const l of lines.slice(1)) {
    const e = JSON.parse(l);
    const ok =
      Array.isArray(e) &&
      e.length === 3 &&
      typeof e[0] === "number" &&
      e[0] >= last &&
      ["o", "i", "r", "m"].includes(e[1]) &&
      typeof e[2] === "string";
    if (!ok) bad++;
    last = e[0];
  }
  t.equal(bad, 0, "every event line is [seconds, code, text], in time order");
}

t.test("utf8CompleteLength holds back only the start of a character that is still arriving", async (t) => {
  const cases: Array<[number[], number]> = [
    [[], 0],
    [[0x61], 1],
    [[0x61, 0xc3], 1],
    [[0xc3, 0xa9], 2],
    [[0x61, 0xe2, 0x82], 1],
    [[0xe2, 0x82, 0xac], 3],
    [[0xf0, 0x9f, 0x98], 0],
    [[0xf0, 0x9f, 0x98, 0x80], 4],
    [[0xff], 1], // never a lead: not held back
    [[0x80, 0x80, 0x80, 0x80, 0x80], 5],
    [[0xc0], 1],
    [[0xf5, 0x80], 2],
  ];
  for (const [bytes, n] of cases) t.equal(utf8CompleteLength(Uint8Array.from(bytes)), n, bytes.join(","));
});

t.test("random byte streams come back exactly: record → loadRecording → recordedBytes", async (t) => {
  const rand = prng(7);
  for (let round = 0; round < 60; round++) {
    const validOnly = round % 3 === 0;
    const out = randomStream(rand, 20 + Math.floor(rand() * 200), validOnly);
    const typed = randomStream(rand, 5 + Math.floor(rand() * 20), validOnly);
    const { rec, load, chunks } = memoryRecording({ chunkBytes: 64 + Math.floor(rand() * 512) });
    pushSliced(rand, out, (b) => rec.output(b));
    pushSliced(rand, typed, (b) => rec.input(b));
    await rec.close();
    const loaded = await load();
    if (!recordedBytes(loaded, "o").equals(out) || !recordedBytes(loaded, "i").equals(typed)) {
      t.fail(`round ${round}: bytes differ`, { out: out.toString("hex"), typed: typed.toString("hex") });
      continue;
    }
    const withRaw = chunks().filter((c) => c.raw !== undefined).length;
    if (validOnly) t.equal(withRaw, 0, `round ${round}: valid UTF-8 is stored as its text alone`);
    checkCast(t, recordingFile(loaded));
  }
  t.pass("all rounds byte-exact");
});

t.test("the bytes kept: only for events that are not UTF-8, beside standard events", async (t) => {
  const { rec, load, chunks } = memoryRecording();
  rec.output(Buffer.from("ok \uFFFD\r\n")); // a real U+FFFD is text
  rec.output(Buffer.from([0xe2, 0x82])); // the start of "€" …
  rec.output(Buffer.from([0xac, 0x21])); // … completed by the next read
  rec.output(Buffer.from([0xff, 0xfe, 0x6f, 0x6b])); // printf '\377\376ok'
  rec.output(Buffer.from([0x61, 0xe2])); // ends inside a character: written at close
  await rec.close();
  const [chunk] = chunks();
  t.same(chunk?.events, [
    [0, "o", "ok \uFFFD\r\n"],
    [0, "o", "€!"],
    [0, "o", "\uFFFD\uFFFDok"],
    [0, "o", "a"],
    [0, "o", "\uFFFD"],
  ]);
  t.same(chunk?.raw, [
    [2, Buffer.from([0xff, 0xfe, 0x6f, 0x6b]).toString("base64")],
    [4, Buffer.from([0xe2]).toString("base64")],
  ]);
  const loaded = await load();
  t.same([...loaded.raw.keys()], [2, 4], "the loader indexes raw bytes by event");
  t.same(
    recordedBytes(loaded),
    Buffer.concat([
      Buffer.from("ok \uFFFD\r\n€!"),
      Buffer.from([0xff, 0xfe, 0x6f, 0x6b]),
      Buffer.from([0x61, 0xe2]),
    ]),
  );
  t.notOk(recordingFile(loaded).includes('"raw"'), "the .cast has the events alone");
});

t.test("raw indexes are per chunk and global once loaded", async (t) => {
  const { rec, load, chunks } = memoryRecording();
  for (const data of ["a", Buffer.from([0xff]), "b", Buffer.from([0xfe])]) {
    rec.output(data);
    await rec.flush(); // each event its own chunk
  }
  await rec.close();
  t.same(
    chunks().map((c) => c.raw ?? null),
    [null, [[0, "/w=="]], null, [[0, "/g=="]], null],
  );
  const loaded = await load();
  t.same([...loaded.raw.keys()], [1, 3]);
  t.same(recordedBytes(loaded), Buffer.from([0x61, 0xff, 0x62, 0xfe]));
});

/** The visible screen of a headless terminal, once everything written to it is parsed. */
async function screenOf(term: TerminalType) {
  await new Promise<void>((resolve) => term.write("", resolve));
  const b = term.buffer.active;
  const lines: string[] = [];
  for (let y = 0; y < term.rows; y++) lines.push(b.getLine(b.baseY + y)?.translateToString(true) ?? "");
  return { lines, cursor: [b.cursorX, b.cursorY], buffer: b.type, size: [term.cols, term.rows] };
}

/** Replays events[from, to) into `term` as a player does ("o" written, "r" resizes). */
function replayInto(term: TerminalType, rec: SessionRecording, from: number, to: number): void {
  for (const e of rec.events.slice(from, to) as Array<[number, string, string]>) {
    if (e[1] === "o") term.write(e[2]);
    else if (e[1] === "r") {
      const [w, h] = e[2].split("x").map(Number);
      term.write("", () => term.resize(w as number, h as number));
    }
  }
}

t.test("keyframes: the screen at a chunk's start, as a fresh terminal shows it", async (t) => {
  let clock = 0;
  const { rec, load, chunks } = memoryRecording({ keyframes: true, now: () => clock });
  const rand = prng(11);
  let written = 0;
  const out = (s: string) => {
    rec.output(Buffer.from(s));
    written += Buffer.byteLength(s);
    clock += 1;
  };
  // Fill the screen (and scroll it), then draw over it with colours, cursor moves, wide characters.
  for (let i = 0; i < 40; i++) out(`\x1b[3${i % 8}mline ${i}\x1b[0m ${"x".repeat(i)}\r\n`);
  let i = 0;
  let resized = false;
  let alternate = false;
  while (written < 4 * KEYFRAME_BYTES) {
    i++;
    if (i % 97 === 0) out("\x1b[2J\x1b[H");
    const row = 1 + Math.floor(rand() * 24);
    const col = 1 + Math.floor(rand() * 70);
    out(`\x1b[${row};${col}H\x1b[1;4${i % 8}m#${i}\x1b[0m 漢字 é ${"-".repeat(Math.floor(rand() * 30))}`);
    if (i % 7 === 0) out(`\r\nscrolling ${i}\r\n`);
    if (!resized && written > 1.5 * KEYFRAME_BYTES) {
      resized = true;
      rec.resize(100, 30); // honoured: keyframes after it are 100x30
    }
    if (!alternate && written > 2.5 * KEYFRAME_BYTES) {
      alternate = true;
      out("\x1b[?1049h\x1b[H\x1b[7malternate screen\x1b[0m"); // a full-screen program starts
    }
  }
  await rec.close();
  const loaded = await load();
  const kf = loaded.keyframes;
  t.equal(kf[0]?.index, 0, "part 0 starts with a keyframe");
  t.ok(chunks()[0]?.keyframe, "(a field of the chunk record)");
  t.ok(kf.length >= 3, `${kf.length} keyframes in ${written} bytes`);
  // Output between keyframes never exceeds KEYFRAME_BYTES (the chunk is cut before it would).
  const outBytes = (from: number, to: number) =>
    (loaded.events.slice(from, to) as Array<[number, string, string]>)
      .filter((e) => e[1] === "o")
      .reduce((n, e) => n + Buffer.byteLength(e[2]), 0);
  const gaps = kf.map((k, j) => outBytes(k.index, kf[j + 1]?.index ?? loaded.events.length));
  t.ok(
    gaps.every((g) => g <= KEYFRAME_BYTES),
    `output between keyframes ≤ 256 KiB (${Math.max(...gaps)})`,
  );
  const resizeAt = loaded.events.findIndex((e) => (e as string[])[1] === "r");
  t.same(
    kf.map((k) => (k.index > resizeAt ? "100x30" : "80x24")),
    kf.map((k) => `${k.width}x${k.height}`),
    "keyframes have the size in force: 80x24, then 100x30 after the resize",
  );
  t.ok(kf.some((k) => k.index > 0 && k.index < resizeAt) && kf.some((k) => k.index > resizeAt));
  const later = kf.filter((k) => k.index > 0);
  t.ok(later.length >= 2);
  const buffers = new Set<string>();
  for (const k of later) {
    const full = new Terminal({ cols: 80, rows: 24, scrollback: 0, allowProposedApi: true });
    replayInto(full, loaded, 0, k.index);
    const fromKeyframe = new Terminal({
      cols: k.width,
      rows: k.height,
      scrollback: 0,
      allowProposedApi: true,
    });
    fromKeyframe.write(k.screen);
    const expected = await screenOf(full);
    buffers.add(expected.buffer);
    t.same(await screenOf(fromKeyframe), expected, `keyframe at event ${k.index} (t=${k.t})`);
    // Seeking: the keyframe and the events after it end where the whole replay ends.
    replayInto(full, loaded, k.index, loaded.events.length);
    replayInto(fromKeyframe, loaded, k.index, loaded.events.length);
    t.same(await screenOf(fromKeyframe), await screenOf(full), `seeking from event ${k.index} ends the same`);
    full.dispose();
    fromKeyframe.dispose();
  }
  t.same([...buffers].sort(), ["alternate", "normal"], "keyframes of the normal and the alternate screen");
});

t.test("keyframes: one at least every 10 s while there are events", async (t) => {
  let clock = 0;
  const { rec, load } = memoryRecording({ keyframes: true, now: () => clock });
  for (let s = 0; s < 60; s++) {
    rec.output(`tick ${s}\r\n`);
    clock += 1000;
  }
  await rec.close();
  const loaded = await load();
  const times = loaded.keyframes.map((k) => k.t);
  t.same(times, [0, 10, 20, 30, 40, 50], "every 10 s of ticks starts a chunk with a keyframe");
  t.equal(loaded.events.length, 60);
});

t.test("without the option: no emulator, no keyframe fields", async (t) => {
  const { rec, load, chunks } = memoryRecording();
  for (let i = 0; i < 5; i++) {
    rec.output(`line ${i}\r\n`);
    await rec.flush();
  }
  await rec.close();
  t.ok(chunks().length > 3);
  t.ok(
    chunks().every((c) => c.keyframe === undefined && c.keyframes_stopped === undefined),
    "no keyframes",
  );
  t.same((await load()).keyframes, []);
});

t.test("a fast stream behind a slow write: chunks stay small enough for the spool", async (t) => {
  const sizes: number[] = [];
  const rec = new TerminalRecording(
    async (_kind, body) => {
      sizes.push(Buffer.byteLength(body));
      await new Promise((r) => setTimeout(r, 20));
      return {} as never;
    },
    "s-slow",
    { width: 80, height: 24 },
  );
  const line = Buffer.from(`${"€".repeat(1000)}\r\n`); // 3 bytes of UTF-8 per UTF-16 unit
  for (let i = 0; i < 4000; i++) rec.output(line); // 12 MB while the first write waits
  await rec.close();
  t.ok(sizes.length > 4, `${sizes.length} chunks`);
  t.ok(
    sizes.every((n) => n < 4 * 1024 * 1024),
    `every record under the spool's 4 MiB (largest ${Math.max(...sizes)})`,
  );
});
