// What each statement of a PostgreSQL session returned, for the session transcript: the command tag, the row count,
// the error, the duration, and the first rows exactly as the client got them (masked values masked), so that
// `pamgate replay` shows what was asked and what came back.
//
// The session feeds it the upstream frames it forwards, in order. Statements are matched to results the way the
// protocol orders them: a simple Query of n statements gives n results (CommandComplete, EmptyQueryResponse or an
// ErrorResponse, after which the rest of the string does not run), an Execute one; ReadyForQuery closes what is
// left as not run. Rows are decoded only up to the cap; past it a DataRow costs one comparison (the count comes from the command tag).
import { performance } from "node:perf_hooks";
import type { FieldDescription } from "./wire.js";

export interface TranscriptOptions {
  /** First rows kept per statement (0: none). */
  maxRows: number;
  /** Strings never written (the gateway's upstream password): replaced by *** in kept values. */
  secrets?: readonly string[];
}

interface Pending {
  decisionId: string;
  started: number;
  columns: string[] | null;
  formats: number[] | null;
  rows: Array<Array<string | null>>;
}

export class ResultLog {
  private readonly queue: Pending[] = [];
  /** The columns of the last RowDescription: an Execute's rows follow the Describe that gave them. */
  private lastFields: FieldDescription[] | null = null;

  constructor(
    private readonly write: (entry: Record<string, unknown>) => void,
    private readonly options: TranscriptOptions,
  ) {}

  /** Statements that were let through, in the order their results will come. */
  expect(decisionIds: readonly string[]): void {
    const now = performance.now();
    for (const decisionId of decisionIds)
      this.queue.push({ decisionId, started: now, columns: null, formats: null, rows: [] });
  }

  /** Whether a DataRow now would be kept (cheap: checked before anything is decoded). */
  get wantsRow(): boolean {
    const head = this.queue[0];
    return head !== undefined && head.rows.length < this.options.maxRows;
  }

  rowDescription(fields: FieldDescription[]): void {
    this.lastFields = fields;
    const head = this.queue[0];
    if (head) this.describe(head, fields);
  }

  private describe(p: Pending, fields: FieldDescription[]): void {
    p.columns = fields.map((f) => f.name);
    p.formats = fields.map((f) => f.format);
  }

  /** A DataRow as sent to the client: `buf[start, end)` is the whole frame. */
  dataRow(buf: Buffer, start: number, end: number): void {
    const head = this.queue[0];
    if (!head || head.rows.length >= this.options.maxRows) return;
    if (!head.columns && this.lastFields) this.describe(head, this.lastFields);
    const row: Array<string | null> = [];
    const n = buf.readUInt16BE(start + 5);
    let at = start + 7;
    for (let i = 0; i < n && at + 4 <= end; i++) {
      const len = buf.readInt32BE(at);
      at += 4;
      if (len < 0) {
        row.push(null);
        continue;
      }
      row.push(
        head.formats?.[i] === 1
          ? `<binary ${len} bytes>`
          : this.scrub(buf.toString("utf8", at, Math.min(at + len, end))),
      );
      at += len;
    }
    head.rows.push(row);
  }

  private scrub(value: string): string {
    for (const s of this.options.secrets ?? [])
      if (s.length >= 4 && value.includes(s)) value = value.split(s).join("***");
    return value;
  }

  /** CommandComplete (its tag) or EmptyQueryResponse (""). */
  complete(tag: string): void {
    const head = this.queue.shift();
    if (head) this.emit(head, { tag });
  }

  /** An ErrorResponse, as the client got it. */
  error(sqlstate: string, message: string): void {
    const head = this.queue.shift();
    if (head) this.emit(head, { error: { code: sqlstate, message: this.scrub(message) } });
  }

  /** ReadyForQuery: statements still waiting did not run (an earlier one failed, or the transaction was aborted). */
  sync(): void {
    for (const p of this.queue.splice(0)) this.emit(p, { not_run: true });
  }

  private emit(p: Pending, outcome: Record<string, unknown>): void {
    const entry: Record<string, unknown> = {
      event: "result",
      decision_id: p.decisionId,
      ...outcome,
      duration_ms: Math.round((performance.now() - p.started) * 1000) / 1000,
    };
    if (outcome.tag !== undefined) entry.rows = rowCount(outcome.tag as string, p.rows.length);
    if (p.columns) entry.columns = p.columns;
    if (p.rows.length > 0) {
      entry.sample = p.rows;
      if ((entry.rows as number) > p.rows.length) entry.truncated = true;
    }
    this.write(entry);
  }
}

/** The row count of a command tag ("SELECT 3", "INSERT 0 2", "UPDATE 1"); the rows kept for tags without one. */
function rowCount(tag: string, seen: number): number {
  const last = tag.slice(tag.lastIndexOf(" ") + 1);
  return /^\d+$/.test(last) ? Number(last) : seen;
}
