// Checking the hash chain, in a spool directory or in the PostgreSQL sink's table, and naming the first record
// where it breaks and how: modified (contents do not match the hash), deleted (a seq is missing), reordered or
// inserted (a seq out of place, or a record that does not chain from the one before it).
import pg from "pg";
import { errorText } from "../util/errors.js";
import { type JsonValue, parseExact } from "./json.js";
import { fileLines } from "./reader.js";
import { genesisHash, parseRecordLine, RECORD_SUFFIX_LENGTH, type SpoolRecord, sha256Hex } from "./record.js";
import { quoteTable } from "./sinks/postgres.js";
import { listSegmentFiles, readAnchor, readSpoolId } from "./spool-layout.js";

export interface VerifyProblem {
  /** The seq of the first bad record (or where one was expected). */
  seq: number | null;
  /** Where: "seg-….jsonl line 12" or "table pamgate_audit row seq 12". */
  where: string;
  problem: string;
}

export interface VerifyResult {
  ok: boolean;
  spool_id: string;
  records: number;
  first_seq: number | null;
  last_seq: number | null;
  last_hash: string | null;
  problem: VerifyProblem | null;
  notes: string[];
}

/** The chain rules, fed one record at a time. */
class Chain {
  private expectedSeq: number | null = null;
  private prevHash: string | null = null;
  private lastSeen: { seq: number; where: string } | null = null;
  records = 0;
  firstSeq: number | null = null;
  lastHash: string | null = null;
  problem: VerifyProblem | null = null;
  readonly notes: string[] = [];

  constructor(
    private readonly genesis: string,
    private readonly anchor: { seq: number; hash: string } | null,
  ) {}

  get lastSeq(): number | null {
    return this.lastSeen?.seq ?? null;
  }

  private fail(seq: number | null, where: string, problem: string): false {
    this.problem ??= { seq, where, problem };
    return false;
  }

  /** Feeds one line; returns false (and records the problem) at the first break. */
  line(text: string, where: string): boolean {
    if (this.problem) return false;
    const structure = parseRecordLine(text, false);
    if (typeof structure === "string") {
      return this.fail(this.expectedSeq, where, `not a valid record (${structure})`);
    }
    return this.record(structure, where, sha256Hex(text.slice(0, -RECORD_SUFFIX_LENGTH)));
  }

  /** Feeds one parsed record whose actual hash has been computed by the caller. */
  record(r: SpoolRecord, where: string, actualHash: string): boolean {
    if (this.problem) return false;
    if (actualHash !== r.hash) {
      return this.fail(r.seq, where, `seq ${r.seq} was modified: its contents do not match its hash`);
    }
    if (this.expectedSeq === null) {
      this.firstSeq = r.seq;
      if (r.seq === 1) {
        if (r.prev !== this.genesis) {
          return this.fail(
            1,
            where,
            "seq 1 does not chain from the spool's genesis (a forged or transplanted start)",
          );
        }
      } else if (this.anchor && this.anchor.seq === r.seq - 1) {
        if (r.prev !== this.anchor.hash) {
          return this.fail(
            r.seq,
            where,
            `seq ${r.seq} does not chain from the anchor of the deleted segments`,
          );
        }
        this.notes.push(
          `records up to seq ${this.anchor.seq} were shipped and released; checked from the anchor`,
        );
      } else {
        this.notes.push(`the chain starts at seq ${r.seq}; its link to earlier records is not checked`);
      }
    } else if (r.seq !== this.expectedSeq) {
      const prev = this.lastSeen as { seq: number; where: string };
      if (r.seq > this.expectedSeq) {
        const missing =
          r.seq - this.expectedSeq === 1
            ? `seq ${this.expectedSeq} is`
            : `seq ${this.expectedSeq}–${r.seq - 1} are`;
        return this.fail(
          this.expectedSeq,
          where,
          `seq ${r.seq} follows seq ${prev.seq}: ${missing} missing (deleted, or the records were reordered)`,
        );
      }
      return this.fail(
        r.seq,
        where,
        r.seq === prev.seq
          ? `seq ${r.seq} appears twice (at ${prev.where} and ${where}): a record was inserted or duplicated`
          : `seq ${r.seq} comes after seq ${prev.seq}: records were reordered or a record was inserted`,
      );
    } else if (r.prev !== this.prevHash) {
      return this.fail(
        r.seq,
        where,
        `seq ${r.seq} does not chain from seq ${r.seq - 1}: its prev_hash is not the hash of seq ${r.seq - 1} (seq ${r.seq - 1} was replaced, or a record was inserted or removed between them)`,
      );
    }
    this.records++;
    this.expectedSeq = r.seq + 1;
    this.prevHash = r.hash;
    this.lastHash = r.hash;
    this.lastSeen = { seq: r.seq, where };
    return true;
  }
}

/** Verifies every segment of a spool directory. */
export async function verifySpool(dir: string): Promise<VerifyResult> {
  const spoolId = await readSpoolId(dir);
  const chain = new Chain(genesisHash(spoolId), await readAnchor(dir));
  const files = await listSegmentFiles(dir);
  for (let i = 0; i < files.length && !chain.problem; i++) {
    const f = files[i] as (typeof files)[number];
    const isLast = i === files.length - 1;
    let first = true;
    let lastKind = "";
    let lastLine = 0;
    for await (const l of fileLines(f.path, f.name)) {
      const where = `${f.name} line ${l.line}`;
      if (!l.complete) {
        if (isLast) {
          chain.notes.push(
            `${where}: the last record is incomplete (being written now, or torn by a crash; the writer cuts it off when it starts)`,
          );
          break;
        }
        chain.line(l.text, where);
        break;
      }
      if (!chain.line(l.text, where)) break;
      const r = parseRecordLine(l.text, false) as SpoolRecord;
      if (first && r.seq !== f.firstSeq) {
        chain.problem = {
          seq: r.seq,
          where,
          problem: `segment ${f.name} should start at seq ${f.firstSeq} but starts at seq ${r.seq}`,
        };
        break;
      }
      if (lastKind === "seal") {
        chain.problem = { seq: r.seq, where, problem: `seq ${r.seq} follows the seal of ${f.name}` };
        break;
      }
      first = false;
      lastKind = r.kind;
      lastLine = l.line;
      if (r.kind === "seal") {
        const seal = JSON.parse(r.body) as { last_seq?: number; last_hash?: string; segment?: string };
        if (seal.last_seq !== r.seq - 1 || seal.last_hash !== r.prev || seal.segment !== f.name) {
          chain.problem = {
            seq: r.seq,
            where,
            problem: `the seal of ${f.name} does not describe its segment`,
          };
          break;
        }
      }
    }
    if (!chain.problem && !isLast && lastKind !== "seal") {
      chain.problem = {
        seq: chain.lastSeq,
        where: `${f.name} line ${lastLine}`,
        problem: `segment ${f.name} is not sealed, yet a newer segment follows it (its end was cut off?)`,
      };
    }
  }
  return result(spoolId, chain);
}

function result(spoolId: string, chain: Chain): VerifyResult {
  return {
    ok: chain.problem === null,
    spool_id: spoolId,
    records: chain.records,
    first_seq: chain.firstSeq,
    last_seq: chain.lastSeq,
    last_hash: chain.lastHash,
    problem: chain.problem,
    notes: chain.notes,
  };
}

function deepEqual(a: JsonValue, b: JsonValue): boolean {
  if (a === b) return true;
  if (typeof a === "bigint" || typeof b === "bigint") return BigInt(a as bigint) === BigInt(b as bigint);
  if (a === null || b === null || typeof a !== "object" || typeof b !== "object") return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) {
    const bb = b as JsonValue[];
    return a.length === bb.length && a.every((x, i) => deepEqual(x, bb[i] as JsonValue));
  }
  const ao = a as { [k: string]: JsonValue };
  const bo = b as { [k: string]: JsonValue };
  const ak = Object.keys(ao);
  if (ak.length !== Object.keys(bo).length) return false;
  return ak.every((k) => k in bo && deepEqual(ao[k] as JsonValue, bo[k] as JsonValue));
}

interface Row {
  /** seq and body as text: bigint exactly, jsonb without pg's parsing (selected under other names so that
   * ORDER BY seq still means the bigint column). */
  seq_text: string;
  kind: string;
  prev_hash: string;
  hash: string;
  record: string;
  body_text: string | null;
}

/**
 * Verifies the chain of every spool (or one) in the PostgreSQL sink's table. Rows must hold their records
 * unchanged, in seq order without gaps, with the columns agreeing with the record they hold.
 */
export async function verifyPostgres(
  url: string,
  table = "pamgate_audit",
  spoolId?: string,
): Promise<VerifyResult[]> {
  const t = quoteTable(table);
  const client = new pg.Client({ connectionString: url, application_name: "pamgate-audit-verify" });
  await client.connect();
  try {
    const ids = spoolId
      ? [spoolId]
      : (await client.query<{ spool_id: string }>(`SELECT DISTINCT spool_id FROM ${t} ORDER BY 1`)).rows.map(
          (r) => r.spool_id,
        );
    const results: VerifyResult[] = [];
    for (const id of ids) {
      const chain = new Chain(genesisHash(id), null);
      let after = "-1";
      for (;;) {
        const { rows } = await client.query<Row>(
          `SELECT seq::text AS seq_text, kind, prev_hash, hash, record, body::text AS body_text FROM ${t}
           WHERE spool_id = $1 AND seq > $2::bigint ORDER BY seq LIMIT 5000`,
          [id, after],
        );
        if (rows.length === 0) break;
        for (const row of rows) {
          const where = `table ${table} row seq ${row.seq_text}`;
          const problem = checkRow(row);
          if (problem) {
            chain.problem ??= { seq: Number(row.seq_text), where, problem };
            break;
          }
          if (!chain.line(row.record, where)) break;
        }
        if (chain.problem) break;
        after = (rows[rows.length - 1] as Row).seq_text;
      }
      if (chain.records === 0 && !chain.problem) chain.notes.push("no records");
      results.push(result(id, chain));
    }
    return results;
  } finally {
    await client.end().catch(() => {});
  }
}

/** The row's columns must say what the record it holds says. */
function checkRow(row: Row): string | null {
  const r = parseRecordLine(row.record, false);
  if (typeof r === "string") return `row seq ${row.seq_text} does not hold a valid record (${r})`;
  if (sha256Hex(row.record.slice(0, -RECORD_SUFFIX_LENGTH)) !== r.hash) {
    return `seq ${r.seq} was modified: its contents do not match its hash`;
  }
  if (String(r.seq) !== row.seq_text) {
    return `row seq ${row.seq_text} holds the record of seq ${r.seq}: rows were renumbered (reordered, or a record was inserted or deleted before it)`;
  }
  if (r.kind !== row.kind || r.prev !== row.prev_hash || r.hash !== row.hash) {
    return `row seq ${row.seq_text}: its kind/prev_hash/hash columns do not match the record it holds (modified)`;
  }
  if (row.body_text !== null) {
    try {
      if (!deepEqual(parseExact(r.body), parseExact(row.body_text))) {
        return `row seq ${row.seq_text}: its body column differs from the record it holds (modified)`;
      }
    } catch (err) {
      return `row seq ${row.seq_text}: ${errorText(err)}`;
    }
  }
  return null;
}

/** One line for a result, as `pamgate audit verify` prints it. */
export function describeResult(r: VerifyResult, source: string): string {
  if (r.ok) {
    const range = r.records > 0 ? `seq ${r.first_seq}–${r.last_seq}` : "empty";
    return `ok: ${source} spool ${r.spool_id}: ${r.records} records (${range}), chain intact, last hash ${r.last_hash ?? "-"}`;
  }
  const p = r.problem as VerifyProblem;
  return `FAILED: ${source} spool ${r.spool_id}: first bad record ${p.seq === null ? "(unknown seq)" : `seq ${p.seq}`} at ${p.where}: ${p.problem}`;
}
