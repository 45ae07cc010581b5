// The spool's record format: one JSON object per line, written by pamgate itself so that the bytes hashed are
// exactly the bytes stored (no canonicalization step an implementation could get wrong):
//
//   {"seq":42,"kind":"decision","prev":"<64 hex>","body":{…},"hash":"<64 hex>"}\n
//
// hash = sha256 of the line up to (not including) `,"hash":"`, i.e. of seq, kind, prev and body together, and
// prev is the hash of the record before it. The first record of a spool has prev = genesisHash(spool id).
// Changing, removing, reordering or inserting a record therefore breaks the chain at or right after it.
import * as crypto from "node:crypto";

export const RECORD_KINDS = ["decision", "recording", "seal"] as const;

/** Kinds are embedded unescaped, so they are restricted to a safe alphabet. */
export const KIND_PATTERN = /^[a-z][a-z0-9_.-]{0,31}$/;

/** Length of the `,"hash":"<64 hex>"}` that ends every record line. */
export const RECORD_SUFFIX_LENGTH = ',"hash":"'.length + 64 + '"}'.length;
const SUFFIX_LENGTH = RECORD_SUFFIX_LENGTH;
const HEADER = /^\{"seq":(0|[1-9]\d{0,15}),"kind":"([a-z][a-z0-9_.-]{0,31})","prev":"([0-9a-f]{64})","body":/;
const SUFFIX = /^,"hash":"([0-9a-f]{64})"\}$/;

/** crypto.hash (Node ≥ 20.12) is a one-shot digest, several times cheaper than a Hash object per record. */
const oneShot = (crypto as { hash?: (alg: string, data: string | Uint8Array, enc: "hex") => string }).hash;

export function sha256Hex(data: string | Uint8Array): string {
  if (oneShot) return oneShot("sha256", data, "hex");
  return crypto.createHash("sha256").update(data).digest("hex");
}

/** The value the first record of a spool chains from: bound to the spool, so records cannot be transplanted. */
export function genesisHash(spoolId: string): string {
  return sha256Hex(`pamgate audit genesis ${spoolId}`);
}

/** The hashed part of a record line. */
export function recordPrefix(seq: number, kind: string, prev: string, bodyJson: string): string {
  return `{"seq":${seq},"kind":"${kind}","prev":"${prev}","body":${bodyJson}`;
}

export interface EncodedRecord {
  line: string;
  hash: string;
}

export function encodeRecord(seq: number, kind: string, prev: string, bodyJson: string): EncodedRecord {
  const prefix = recordPrefix(seq, kind, prev, bodyJson);
  const hash = sha256Hex(prefix);
  return { line: `${prefix},"hash":"${hash}"}\n`, hash };
}

/**
 * Encodes one record into `buf` at `offset` (the caller guarantees the room: body bytes + 191 + kind) and returns
 * where it ends and its hash. The same bytes as encodeRecord, hashed from the buffer so the body is encoded once.
 */
export function encodeInto(
  buf: Buffer,
  offset: number,
  seq: number,
  kind: string,
  prev: string,
  bodyJson: string,
): { end: number; hash: string } {
  let off = offset + buf.write(`{"seq":${seq},"kind":"${kind}","prev":"${prev}","body":`, offset, "latin1");
  off += buf.write(bodyJson, off, "utf8");
  const hash = sha256Hex(buf.subarray(offset, off));
  off += buf.write(`,"hash":"${hash}"}\n`, off, "latin1");
  return { end: off, hash };
}

/** One record as read back: the header fields, the raw body text and the line itself (without newline). */
export interface SpoolRecord {
  seq: number;
  kind: string;
  prev: string;
  hash: string;
  /** The body's JSON text, exactly as stored. */
  body: string;
  /** The whole line, without its newline: what the PostgreSQL sink stores and verify re-hashes. */
  line: string;
}

/**
 * Parses one line (without newline). Returns the record, or a description of what is wrong. With `checkHash`
 * false only the structure is checked (the writer re-reading its own tail checks the hash separately).
 */
export function parseRecordLine(line: string, checkHash = true): SpoolRecord | string {
  const h = HEADER.exec(line);
  if (!h) return "not a spool record (bad header)";
  if (line.length < h[0].length + SUFFIX_LENGTH + 1) return "truncated record";
  const s = SUFFIX.exec(line.slice(-SUFFIX_LENGTH));
  if (!s) return "truncated record (no hash at the end)";
  const prefix = line.slice(0, -SUFFIX_LENGTH);
  const hash = s[1] as string;
  if (checkHash && sha256Hex(prefix) !== hash) return "hash does not match the record's contents";
  return {
    seq: Number(h[1]),
    kind: h[2] as string,
    prev: h[3] as string,
    hash,
    body: prefix.slice(h[0].length),
    line,
  };
}

/** Parses a record's body JSON (for readers that need its fields). */
export function recordBody<T = Record<string, unknown>>(r: SpoolRecord): T {
  return JSON.parse(r.body) as T;
}
