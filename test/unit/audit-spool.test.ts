// The durable spool: hash chain from a genesis, group commit (one write + one fdatasync per batch, promises
// resolved only after it), sealed segments, the size limit, and every way the disk can fail: each refuses records
// with AuditUnavailableError naming the cause, loses nothing already recorded, and resumes by itself.
import {
  appendFileSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import t from "tap";
import { AuditUnavailableError } from "../../src/audit/errors.js";
import { nodeIo, type SpoolIo } from "../../src/audit/io.js";
import { spoolRecords } from "../../src/audit/reader.js";
import { genesisHash, parseRecordLine, type SpoolRecord } from "../../src/audit/record.js";
import { Spool, type SpoolOptions } from "../../src/audit/spool.js";
import { listSegmentFiles, TORN_WINDOW_BYTES } from "../../src/audit/spool-layout.js";
import { verifySpool } from "../../src/audit/verify.js";

const body = (i: number, pad = 200) => JSON.stringify({ i, text: "x".repeat(pad) });

async function all(dir: string): Promise<SpoolRecord[]> {
  const out: SpoolRecord[] = [];
  for await (const r of spoolRecords(dir)) out.push(r);
  return out;
}

/** The default io with switchable faults and counters. */
function faultyIo() {
  const state = {
    writes: 0,
    syncs: 0,
    failWrite: null as string | null,
    /** Write this many bytes of the buffer before failing (a partial write). */
    partial: 0,
    failSync: null as string | null,
    failOpen: null as string | null,
    syncGate: null as Promise<void> | null,
  };
  const fail = (code: string) => Object.assign(new Error(`${code}: simulated`), { code });
  const io: SpoolIo = {
    ...nodeIo,
    async open(path, flags) {
      if (state.failOpen) throw fail(state.failOpen);
      return nodeIo.open(path, flags);
    },
    async writeAll(fd, buf, position) {
      state.writes++;
      if (state.failWrite) {
        if (state.partial) await nodeIo.writeAll(fd, buf.subarray(0, state.partial), position);
        throw fail(state.failWrite);
      }
      return nodeIo.writeAll(fd, buf, position);
    },
    async fdatasync(fd) {
      state.syncs++;
      if (state.syncGate) await state.syncGate;
      if (state.failSync) throw fail(state.failSync);
      return nodeIo.fdatasync(fd);
    },
  };
  return { io, state };
}

async function open(dir: string, extra: Partial<SpoolOptions> = {}): Promise<Spool> {
  return Spool.open({ dir, ...extra });
}

t.test("records are hash-chained from the spool's genesis and numbered without gaps", async (t) => {
  const dir = t.testdir();
  const spool = await open(dir);
  const receipts = await Promise.all(Array.from({ length: 50 }, (_, i) => spool.record("decision", body(i))));
  t.same(
    receipts.map((r) => r.seq),
    Array.from({ length: 50 }, (_, i) => i + 1),
    "receipts in call order",
  );
  await spool.close();
  const records = await all(dir);
  t.equal(records.length, 50);
  t.equal(records[0]?.prev, genesisHash(spool.id as string), "seq 1 chains from the genesis");
  for (let i = 1; i < records.length; i++) t.equal(records[i]?.prev, records[i - 1]?.hash);
  t.same(JSON.parse(records[7]?.body as string), { i: 7, text: "x".repeat(200) }, "bodies in call order");
  t.equal(records[49]?.hash, receipts[49]?.hash);
  const v = await verifySpool(dir);
  t.ok(v.ok, "verify agrees");
  t.equal(v.records, 50);
});

t.test(
  "group commit: concurrent records share writes and fsyncs, and resolve only after the fsync",
  async (t) => {
    const dir = t.testdir();
    const { io, state } = faultyIo();
    const spool = await open(dir, { io });
    let release: () => void = () => {};
    state.syncGate = new Promise((r) => {
      release = r;
    });
    let resolved = 0;
    const pending = Array.from({ length: 300 }, (_, i) =>
      spool.record("decision", body(i)).then((r) => {
        resolved++;
        return r;
      }),
    );
    await new Promise((r) => setTimeout(r, 50));
    t.equal(resolved, 0, "nothing resolves while the fsync has not returned");
    t.equal(state.writes, 1, "the first batch is in one write");
    state.syncGate = null;
    release();
    await Promise.all(pending);
    t.equal(resolved, 300);
    t.ok(state.writes <= 3, `300 concurrent records took ${state.writes} writes`);
    t.equal(state.syncs, state.writes, "one fdatasync per write");
    await spool.close();
  },
);

t.test(
  "segments rotate at segmentBytes, are sealed, and the chain continues across them and restarts",
  async (t) => {
    const dir = t.testdir();
    const spool = await open(dir, { segmentBytes: 16 * 1024, maxBytes: 4 * 1024 * 1024 });
    for (let i = 0; i < 100; i++) await spool.record("decision", body(i, 500));
    await spool.close();
    const files = await listSegmentFiles(dir);
    t.ok(files.length >= 5, `${files.length} segments`);
    for (const f of files.slice(0, -1)) {
      const lines = readFileSync(f.path, "utf8").trimEnd().split("\n");
      const last = parseRecordLine(lines[lines.length - 1] as string) as SpoolRecord;
      t.equal(last.kind, "seal", `${f.name} ends with a seal`);
      const seal = JSON.parse(last.body);
      t.equal(seal.last_hash, last.prev, "the seal names the segment's last hash");
      t.equal(seal.segment, f.name);
      t.ok(f.size >= 16 * 1024 && f.size < 16 * 1024 + 2048, "rotated at the size");
    }
    const again = await open(dir, { segmentBytes: 16 * 1024, maxBytes: 4 * 1024 * 1024 });
    const before = again.lastSeq;
    const r = await again.record("decision", body(1000));
    t.equal(r.seq, before + 1, "numbering continues after a restart");
    await again.close();
    const v = await verifySpool(dir);
    t.ok(v.ok, v.problem?.problem ?? "chain intact across segments and restarts");
    t.equal(v.last_seq, r.seq);
    const kinds = (await all(dir)).map((x) => x.kind);
    t.equal(kinds.filter((k) => k === "decision").length, 101);
  },
);

t.test(
  "a full spool refuses records with a clear reason and takes them again once space is freed",
  async (t) => {
    const dir = t.testdir();
    const maxBytes = 64 * 1024;
    const spool = await open(dir, { maxBytes, segmentBytes: 16 * 1024 });
    let accepted = 0;
    let refusal: unknown;
    for (let i = 0; i < 1000; i++) {
      try {
        await spool.record("decision", body(i, 400));
        accepted++;
      } catch (err) {
        refusal = err;
        break;
      }
    }
    t.ok(refusal instanceof AuditUnavailableError, "refused with AuditUnavailableError");
    t.match((refusal as Error).message, new RegExp(`^audit spool full: \\d+ bytes of ${maxBytes}$`));
    t.ok(accepted > 50, `${accepted} records fitted`);
    const total = (await listSegmentFiles(dir)).reduce((n, f) => n + f.size, 0);
    t.ok(total <= maxBytes, `the spool stays within its limit (${total} bytes)`);
    t.equal(spool.status().available, false);
    t.match(spool.status().reason, /audit spool full/);

    // Shipping frees space: sealed segments up to the shipped seq are deleted.
    const deleted = await spool.release(spool.lastSeq);
    t.ok(deleted >= 2, `${deleted} shipped segments deleted`);
    const r = await spool.record("decision", body(5000, 400));
    t.equal(r.seq, spool.lastSeq, "records are accepted again");
    await spool.close();
    const v = await verifySpool(dir);
    t.ok(v.ok, "the rest of the chain verifies from the anchor");
    t.match(v.notes.join("\n"), /released; checked from the anchor/);
  },
);

t.test(
  "ENOSPC on write: the batch is refused and cut off, nothing is lost, and writing resumes",
  async (t) => {
    const dir = t.testdir();
    const { io, state } = faultyIo();
    const spool = await open(dir, { io });
    for (let i = 0; i < 10; i++) await spool.record("decision", body(i));
    const seg = (await listSegmentFiles(dir))[0]?.path as string;
    const size = statSync(seg).size;

    state.failWrite = "ENOSPC";
    state.partial = 100; // half a record reaches the disk before the error
    const results = await Promise.allSettled([
      spool.record("decision", body(10)),
      spool.record("decision", body(11)),
    ]);
    for (const r of results) {
      t.equal(r.status, "rejected");
      const err = (r as PromiseRejectedResult).reason;
      t.ok(err instanceof AuditUnavailableError);
      t.match(err.message, /^audit spool write failed: ENOSPC/);
      t.equal(err.code, "ENOSPC");
    }
    t.equal(statSync(seg).size, size, "the partial write was cut off");
    t.equal(spool.status().available, false, "the status says it cannot record (readiness drops)");
    t.match(spool.status().reason, /ENOSPC/);

    state.failWrite = null; // space returns
    const r = await spool.record("decision", body(12));
    t.equal(spool.status().available, true, "a successful write makes it available again");
    t.equal(r.seq, 11, "the refused records' numbers are reused: no gap in the chain");
    await spool.close();
    const v = await verifySpool(dir);
    t.ok(v.ok, v.problem?.problem ?? "chain intact");
    t.equal(v.records, 11);
  },
);

t.test(
  "a failing fsync (EIO) refuses the batch; a failed truncate is retried before the next write",
  async (t) => {
    const dir = t.testdir();
    const { io, state } = faultyIo();
    let failTruncate = true;
    const spool = await open(dir, {
      io: {
        ...io,
        async ftruncate(fd, len) {
          if (failTruncate) throw Object.assign(new Error("EIO: simulated"), { code: "EIO" });
          return nodeIo.ftruncate(fd, len);
        },
      },
    });
    await spool.record("decision", body(1));
    state.failSync = "EIO";
    await t.rejects(spool.record("decision", body(2)), /audit spool write failed: EIO/);
    // The written-but-not-synced bytes are still there (truncate failed): the next write must cut them first.
    state.failSync = null;
    await t.rejects(spool.record("decision", body(3)), /audit spool cannot be written: EIO/);
    failTruncate = false;
    const r = await spool.record("decision", body(4));
    t.equal(r.seq, 2);
    await spool.close();
    const records = await all(dir);
    t.same(
      records.map((x) => JSON.parse(x.body).i),
      [1, 4],
    );
    t.ok((await verifySpool(dir)).ok);
  },
);

t.test("a directory that cannot be used: refused with the reason, resumes when it can", async (t) => {
  const root = t.testdir();
  // Root ignores file modes, so make the directory impossible instead: its parent is a regular file.
  const blocker = join(root, "not-a-dir");
  writeFileSync(blocker, "x");
  const dir = join(blocker, "spool");
  const spool = await open(dir, { retryMs: 50 });
  t.equal(spool.status().available, false);
  const err = await spool.record("decision", body(1)).catch((e) => e);
  t.ok(err instanceof AuditUnavailableError);
  t.match(err.message, /audit spool directory .* is not usable: ENOTDIR/);
  t.equal(err.code, "ENOTDIR");

  rmSync(blocker);
  mkdirSync(blocker);
  await new Promise((r) => setTimeout(r, 60));
  const r = await spool.record("decision", body(2));
  t.equal(r.seq, 1, "recording resumes once the directory is usable");
  await spool.close();
});

t.test("a segment that cannot be created at rotation: refused, then resumes", async (t) => {
  const dir = t.testdir();
  const { io, state } = faultyIo();
  const spool = await open(dir, { io, segmentBytes: 16 * 1024 });
  state.failOpen = "EMFILE";
  let refused: unknown;
  for (let i = 0; i < 100 && !refused; i++) {
    await spool.record("decision", body(i, 500)).catch((e) => {
      refused = e;
    });
  }
  t.match((refused as Error)?.message, /audit spool cannot be written: EMFILE/);
  state.failOpen = null;
  await spool.record("decision", body(999));
  await spool.close();
  const v = await verifySpool(dir);
  t.ok(v.ok, v.problem?.problem ?? "chain intact");
  t.ok((await listSegmentFiles(dir)).length >= 2);
});

t.test(
  "a torn last record is cut off at start-up and kept under torn/; nothing before it is lost",
  async (t) => {
    const dir = t.testdir();
    const spool = await open(dir);
    const receipts = [];
    for (let i = 0; i < 20; i++) receipts.push(await spool.record("decision", body(i)));
    await spool.close();
    const seg = (await listSegmentFiles(dir))[0]?.path as string;
    const good = statSync(seg).size;
    appendFileSync(seg, '{"seq":21,"kind":"decision","prev":"abc","body":{"i":20,"te');

    const again = await open(dir);
    t.equal(again.status().available, true);
    t.equal(statSync(seg).size, good, "cut back to the last complete record");
    t.same(readdirSync(join(dir, "torn")), [`${seg.split("/").pop()}.${good}.bin`]);
    const r = await again.record("decision", body(21));
    t.equal(r.seq, 21);
    await again.close();
    const v = await verifySpool(dir);
    t.ok(v.ok);
    t.equal(v.records, 21);
    const records = await all(dir);
    for (const rec of receipts) t.equal(records[rec.seq - 1]?.hash, rec.hash);
  },
);

t.test(
  "bad records near the end are a torn write; a bad record far back with good ones after is corruption",
  async (t) => {
    const dir = t.testdir();
    const spool = await open(dir);
    for (let i = 0; i < 5; i++) await spool.record("decision", body(i));
    await spool.close();
    const seg = (await listSegmentFiles(dir))[0]?.path as string;
    const good = statSync(seg).size;
    // Garbage with a newline (zeros from a power loss), then a valid-looking record that was never acknowledged.
    const lines = readFileSync(seg, "utf8").trimEnd().split("\n");
    appendFileSync(seg, `${"\0".repeat(300)}\n${lines[4]}\n`);
    const a = await open(dir);
    t.equal(a.status().available, true, "within the torn window: cut off");
    t.equal(a.lastSeq, 5);
    t.equal(statSync(seg).size, good);
    await a.close();

    // A spool bigger than the torn window, damaged near its start: valid records follow, so it is not a crash.
    const big = t.testdir();
    const s2 = await open(big);
    await Promise.all(Array.from({ length: 7000 }, (_, i) => s2.record("decision", body(i, 1000))));
    await s2.close();
    const bigSeg = (await listSegmentFiles(big))[0]?.path as string;
    t.ok(statSync(bigSeg).size > TORN_WINDOW_BYTES);
    const text = readFileSync(bigSeg, "utf8");
    writeFileSync(bigSeg, text.replace('"i":2,', '"i":9,'));
    const b = await open(big, { retryMs: 10_000 });
    t.equal(b.status().available, false);
    t.match(b.status().reason, /is corrupt at byte \d+ \(hash does not match.*valid records follow/);
    await t.rejects(b.record("decision", body(6)), AuditUnavailableError);
    await b.close();
  },
);

t.test("one writer per spool directory", async (t) => {
  const dir = t.testdir();
  const a = await open(dir);
  const b = await open(dir, { retryMs: 10_000 });
  t.match(b.status().reason, /is in use by process \d+/);
  await b.close();
  await a.close();
  const c = await open(dir);
  t.equal(c.status().available, true, "free again once the first one closed");
  await c.close();
  // A lock left by a process that is gone (killed) is taken over.
  writeFileSync(join(dir, "LOCK"), "999999999\n");
  const d = await open(dir);
  t.equal(d.status().available, true);
  await d.close();
  // So is one with our own pid that no spool of ours holds: a restarted container's pid 1 before us.
  writeFileSync(join(dir, "LOCK"), `${process.pid}\n`);
  const e = await open(dir);
  t.equal(e.status().available, true);
  await e.close();
});

t.test("a record larger than maxRecordBytes is refused without touching the spool", async (t) => {
  const dir = t.testdir();
  const spool = await open(dir, { maxRecordBytes: 4096 });
  await t.rejects(
    spool.record("decision", body(1, 5000)),
    /audit record too large: \d+ bytes \(at most 4096\)/,
  );
  await t.rejects(spool.record("Bad Kind", "{}"), TypeError);
  t.equal((await spool.record("decision", body(2))).seq, 1);
  await spool.close();
});

t.test(
  "records arriving during an fdatasync wait for it and go out as one write; a failed one refuses only its own",
  async (t) => {
    const dir = t.testdir();
    let syncs = 0;
    let writes = 0;
    let release: (code?: string) => void = () => {};
    const io: SpoolIo = {
      ...nodeIo,
      writeAll(fd, buf, position) {
        writes++;
        return nodeIo.writeAll(fd, buf, position);
      },
      async fdatasync(fd) {
        if (++syncs === 2) {
          const code = await new Promise<string | undefined>((r) => {
            release = r;
          });
          if (code) throw Object.assign(new Error(`${code}: simulated`), { code });
        }
        return nodeIo.fdatasync(fd);
      },
    };
    const spool = await open(dir, { io });
    await spool.record("decision", body(0));
    const seg = (await listSegmentFiles(dir))[0]?.path as string;
    const durable = statSync(seg).size;
    const a = spool.record("decision", body(1));
    await new Promise((r) => setTimeout(r, 20)); // A is written, its fdatasync waits
    const b = spool.record("decision", body(2));
    const c = spool.record("decision", body(3));
    await new Promise((r) => setTimeout(r, 20));
    t.equal(writes, 2, "B and C wait for A's fdatasync instead of being written behind it");
    release("EIO");
    await t.rejects(a, /EIO/, "A is refused");
    t.same(
      [(await b).seq, (await c).seq],
      [2, 3],
      "B and C are written after the roll-back, in one write, chaining from the durable end",
    );
    t.equal(writes, 3);
    t.ok(statSync(seg).size > durable);
    await spool.close();
    const v = await verifySpool(dir);
    t.ok(v.ok, v.problem?.problem ?? "chain intact");
    t.same(
      (await all(dir)).map((r) => JSON.parse(r.body).i),
      [0, 2, 3],
    );
  },
);

t.test(
  "recordWritten: acknowledged once written, before the fdatasync; `durable` follows it; fsync'd records still wait",
  async (t) => {
    const dir = t.testdir();
    const { io, state } = faultyIo();
    let openGate: () => void = () => {};
    const spool = await open(dir, { io });
    state.syncGate = new Promise<void>((r) => {
      openGate = r;
    });
    const written = await spool.recordWritten("decision", body(0));
    t.equal(written.seq, 1, "acknowledged while the fdatasync is held");
    t.equal(state.writes, 1);
    const seg = (await listSegmentFiles(dir))[0]?.path as string;
    t.match(readFileSync(seg, "utf8"), /"i":0/, "the record is in the file (in the OS) already");
    const second = await spool.recordWritten("decision", body(9));
    t.equal(
      second.seq,
      2,
      "another write-acknowledged record is written while the fdatasync is held, not after it",
    );
    let durable = false;
    void written.durable.then(() => {
      durable = true;
    });
    let fsynced = false;
    const viaFsync = spool.record("decision", body(1)).then((r) => {
      fsynced = true;
      return r;
    });
    await new Promise((r) => setTimeout(r, 30));
    t.notOk(durable, "not durable while the fdatasync has not returned");
    t.notOk(fsynced, "a record() in the same spool still waits for its fdatasync");
    openGate();
    state.syncGate = null;
    await written.durable;
    await second.durable;
    t.equal((await viaFsync).seq, 3);
    t.ok(durable && fsynced);
    await spool.close();
    t.ok((await verifySpool(dir)).ok);
  },
);

t.test(
  "recordWritten and a failing fdatasync: the written records stay (their commands may have run), `durable` rejects, the spool reopens from disk",
  async (t) => {
    const dir = t.testdir();
    const { io, state } = faultyIo();
    const spool = await open(dir, { io, retryMs: 50 });
    await spool.record("decision", body(0));
    let openGate: () => void = () => {};
    state.syncGate = new Promise<void>((r) => {
      openGate = r;
    });
    // One batch: written together, their fdatasync held.
    const [a, b] = await Promise.all([
      spool.recordWritten("decision", body(1)),
      spool.recordWritten("decision", body(2)),
    ]);
    state.failSync = "EIO";
    openGate();
    await t.rejects(a.durable, /EIO/, "the first caller learns its record may not be on disk");
    await t.rejects(b.durable, /EIO/);
    state.syncGate = null;
    t.equal(spool.status().available, false, "unavailable until reopened from disk");
    await t.rejects(
      spool.record("decision", body(3)),
      AuditUnavailableError,
      "new records are refused meanwhile",
    );
    state.failSync = null;
    await new Promise((r) => setTimeout(r, 60));
    const c = await spool.record("decision", body(4));
    t.equal(c.seq, 4, "reopened: the written records were kept and the chain goes on after them");
    await spool.close();
    const v = await verifySpool(dir);
    t.ok(v.ok, v.problem?.problem ?? "chain intact");
    t.same(
      (await all(dir)).map((r) => JSON.parse(r.body).i),
      [0, 1, 2, 4],
    );
  },
);
