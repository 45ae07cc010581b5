// `audit verify` on a spool: an intact chain passes; a record modified, deleted, reordered or inserted (even one
// forged with a correct hash of its own) is found, and the first bad record is named with what is wrong.
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import t, { type Test } from "tap";
import { encodeRecord, parseRecordLine, type SpoolRecord } from "../../src/audit/record.js";
import { Spool } from "../../src/audit/spool.js";
import { listSegmentFiles } from "../../src/audit/spool-layout.js";
import { describeResult, verifySpool } from "../../src/audit/verify.js";

/** A spool of `n` decision records in one segment (or several with a small segmentBytes). */
async function spoolOf(t: Test, n: number, segmentBytes?: number): Promise<{ dir: string; path: string }> {
  const dir = t.testdir();
  const spool = await Spool.open({ dir, segmentBytes, maxBytes: 16 * 1024 * 1024 });
  for (let i = 1; i <= n; i++) {
    await spool.record(
      "decision",
      JSON.stringify({ decision_id: `d-${i}`, action: "allow", pad: "p".repeat(300) }),
    );
  }
  await spool.close();
  const files = await listSegmentFiles(dir);
  return { dir, path: files[0]?.path as string };
}

function lines(path: string): string[] {
  return readFileSync(path, "utf8").trimEnd().split("\n");
}

function save(path: string, ls: string[]): void {
  writeFileSync(path, `${ls.join("\n")}\n`);
}

t.test("an intact spool verifies", async (t) => {
  const { dir } = await spoolOf(t, 30);
  const r = await verifySpool(dir);
  t.ok(r.ok);
  t.equal(r.records, 30);
  t.equal(r.first_seq, 1);
  t.equal(r.last_seq, 30);
  t.match(describeResult(r, dir), /^ok: .* 30 records \(seq 1–30\), chain intact, last hash [0-9a-f]{64}$/);
});

t.test("modified: the record whose contents no longer match its hash", async (t) => {
  const { dir, path } = await spoolOf(t, 10);
  const ls = lines(path);
  ls[4] = (ls[4] as string).replace('"action":"allow"', '"action":"block"');
  save(path, ls);
  const r = await verifySpool(dir);
  t.notOk(r.ok);
  t.equal(r.problem?.seq, 5);
  t.match(r.problem?.problem, /seq 5 was modified: its contents do not match its hash/);
  t.match(describeResult(r, dir), /^FAILED: .* first bad record seq 5 at seg-0+1\.jsonl line 5: /);
});

t.test("modified with its hash recomputed: the next record no longer chains from it", async (t) => {
  const { dir, path } = await spoolOf(t, 10);
  const ls = lines(path);
  const r5 = parseRecordLine(ls[4] as string) as SpoolRecord;
  ls[4] = encodeRecord(5, "decision", r5.prev, r5.body.replace('"allow"', '"block"')).line.trimEnd();
  save(path, ls);
  const r = await verifySpool(dir);
  t.equal(r.problem?.seq, 6);
  t.match(r.problem?.problem, /seq 6 does not chain from seq 5.*seq 5 was replaced/);
});

t.test("deleted: the missing seq is named", async (t) => {
  const { dir, path } = await spoolOf(t, 10);
  const ls = lines(path);
  ls.splice(6, 1); // seq 7
  save(path, ls);
  const r = await verifySpool(dir);
  t.equal(r.problem?.seq, 7);
  t.match(r.problem?.problem, /seq 8 follows seq 6: seq 7 is missing \(deleted/);
});

t.test("deleted at the end of a sealed segment, or a whole segment", async (t) => {
  const { dir } = await spoolOf(t, 120, 16 * 1024);
  const files = await listSegmentFiles(dir);
  t.ok(files.length >= 3);
  const first = files[0]?.path as string;
  save(first, lines(first).slice(0, -1)); // the seal
  let r = await verifySpool(dir);
  t.notOk(r.ok);
  t.match(r.problem?.problem, /is not sealed, yet a newer segment follows it/);

  const other = await spoolOf(t, 120, 16 * 1024);
  const segs = await listSegmentFiles(other.dir);
  rmSync(segs[1]?.path as string);
  r = await verifySpool(other.dir);
  t.equal(r.problem?.seq, segs[1]?.firstSeq);
  t.match(r.problem?.problem, /missing/);
});

t.test("reordered: a seq out of place", async (t) => {
  const { dir, path } = await spoolOf(t, 10);
  const ls = lines(path);
  [ls[2], ls[3]] = [ls[3] as string, ls[2] as string]; // seq 3 and 4 swapped
  save(path, ls);
  const r = await verifySpool(dir);
  t.notOk(r.ok);
  t.equal(r.problem?.seq, 3);
  t.match(
    r.problem?.problem,
    /seq 4 follows seq 2: seq 3 is missing \(deleted, or the records were reordered\)/,
  );
});

t.test("inserted: a duplicate, and a forged record with a valid hash of its own", async (t) => {
  const a = await spoolOf(t, 10);
  let ls = lines(a.path);
  ls.splice(5, 0, ls[2] as string); // a copy of seq 3 after seq 5
  save(a.path, ls);
  let r = await verifySpool(a.dir);
  t.equal(r.problem?.seq, 3);
  t.match(r.problem?.problem, /seq 3 comes after seq 5: records were reordered or a record was inserted/);

  const b = await spoolOf(t, 10);
  ls = lines(b.path);
  const r5 = parseRecordLine(ls[4] as string) as SpoolRecord;
  // The forger chains the new record correctly from seq 5 and gives it seq 6 …
  const forged = encodeRecord(
    6,
    "decision",
    r5.hash,
    '{"decision_id":"forged","action":"allow"}',
  ).line.trimEnd();
  ls.splice(5, 0, forged);
  save(b.path, ls);
  r = await verifySpool(b.dir);
  // … so the original seq 6 is where the chain breaks.
  t.equal(r.problem?.seq, 6);
  t.match(
    r.problem?.problem,
    /seq 6 appears twice \(at seg-0+1\.jsonl line 6 and seg-0+1\.jsonl line 7\): a record was inserted/,
  );
});

t.test("a garbled line and a truncated one", async (t) => {
  const { dir, path } = await spoolOf(t, 5);
  const ls = lines(path);
  ls[1] = "hello";
  save(path, ls);
  const r = await verifySpool(dir);
  t.equal(r.problem?.seq, 2);
  t.match(r.problem?.problem, /not a valid record/);

  const b = await spoolOf(t, 5);
  writeFileSync(b.path, readFileSync(b.path, "utf8").slice(0, -40));
  const rb = await verifySpool(b.dir);
  t.ok(rb.ok, "an incomplete last line is reported as a note (a write in progress, or torn)");
  t.equal(rb.records, 4);
  t.match(rb.notes.join("\n"), /the last record is incomplete/);
});
