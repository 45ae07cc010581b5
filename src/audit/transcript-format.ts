// A statement/result transcript (JSON lines: `statement` and `result` entries, see docs/audit.md) printed as a
// readable, psql-like log: each statement with its decision, then its rows as an aligned table, the row count or
// command tag, or the error, and the time it took.
import type { SessionRecording } from "./replay.js";

type Entry = Record<string, unknown>;

/** The transcript as text. */
export function formatTranscript(rec: SessionRecording): string {
  const out: string[] = [];
  const h = rec.header as Entry;
  out.push(`-- session ${rec.session_id}${h.protocol ? ` (${h.protocol})` : ""}`);
  const results = new Map<string, Entry>();
  for (const e of rec.events as Entry[]) if (e.event === "result") results.set(String(e.decision_id), e);
  for (const e of rec.events as Entry[]) {
    if (e.event === "start" || e.event === "end") {
      const who = (e.identity as Entry | undefined)?.sub ?? e.requester ?? "";
      out.push(e.event === "start" ? `-- started${who ? ` by ${who}` : ""}` : `-- ended: ${e.reason ?? ""}`);
      continue;
    }
    if (e.event !== "statement") continue;
    out.push("");
    const text =
      typeof e.text === "string" ? e.text : `(${e.statement ?? "statement"} ${e.fingerprint ?? ""})`;
    out.push(`=> ${text.replace(/\n/g, "\n   ")};`);
    const reasons = Array.isArray(e.reasons) && e.reasons.length > 0 ? ` (${e.reasons.join(", ")})` : "";
    if (e.action !== "allow") out.push(`-- pamgate: ${e.action}${reasons}`);
    const r = results.get(String(e.decision_id));
    if (e.action === "block" || !r) continue;
    out.push(...formatResult(r));
  }
  return `${out.join("\n")}\n`;
}

function formatResult(r: Entry): string[] {
  const out: string[] = [];
  const ms = typeof r.duration_ms === "number" ? `Time: ${r.duration_ms.toFixed(3)} ms` : "";
  if (r.not_run) return ["-- not run (an earlier statement failed)"];
  if (r.error) {
    const err = r.error as Entry;
    out.push(`ERROR:  ${err.message}${err.code ? ` (SQLSTATE ${err.code})` : ""}`);
    if (ms) out.push(ms);
    return out;
  }
  const columns = Array.isArray(r.columns) ? (r.columns as string[]) : null;
  const sample = Array.isArray(r.sample) ? (r.sample as Array<Array<string | null>>) : [];
  if (columns) {
    out.push(...table(columns, sample));
    const n = typeof r.rows === "number" ? r.rows : sample.length;
    const more = r.truncated ? ` (first ${sample.length} shown)` : "";
    out.push(`(${n} ${n === 1 ? "row" : "rows"})${more}`);
  } else if (r.tag) out.push(String(r.tag));
  if (ms) out.push(ms);
  return out;
}

/** psql's aligned format: a header, a rule, the rows; NULL as an empty cell. */
function table(columns: string[], rows: Array<Array<string | null>>): string[] {
  const cells = rows.map((row) => columns.map((_, i) => (row[i] ?? "").replace(/\n/g, "\\n")));
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((r) => (r[i] as string).length)));
  const line = (vals: string[], center = false) =>
    ` ${vals
      .map((v, i) => {
        const w = widths[i] as number;
        if (!center) return v.padEnd(w);
        const left = Math.floor((w - v.length) / 2);
        return `${" ".repeat(left)}${v}`.padEnd(w);
      })
      .join(" | ")}`.trimEnd();
  return [line(columns, true), widths.map((w) => "-".repeat(w + 2)).join("+"), ...cells.map((r) => line(r))];
}
