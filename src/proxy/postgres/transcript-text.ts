// The statement text a session transcript keeps. By default literal values are replaced by $n placeholders with
// PostgreSQL's own normalization (libpg-query's, as pg_stat_statements does), so the transcript shows what was
// run without the values in it (a password in ALTER ROLE, a card number in a WHERE clause). "full" keeps the
// text as sent, "none" keeps no text (the fingerprint still identifies the statement). Whatever the mode, the
// gateway's own upstream secrets are never written.
import { normalizeSync } from "libpg-query";
import type { AnalyzedStatement, StatementCommand } from "./analysis/index.js";

export type StatementTextMode = "normalized" | "full" | "none";

/** Normalized texts by analyzed command: statements that differ only in literals share one (see shape.ts). */
const normalized = new WeakMap<StatementCommand, string>();

export function transcriptText(
  stmt: AnalyzedStatement,
  mode: StatementTextMode = "normalized",
  secrets: readonly string[] = [],
): string | undefined {
  if (mode === "none") return undefined;
  let text: string;
  if (mode === "full") text = stmt.text;
  else {
    const hit = normalized.get(stmt.command);
    if (hit !== undefined) text = hit;
    else {
      try {
        text = normalizeSync(stmt.text);
      } catch {
        text = "(statement text withheld: it could not be normalized)";
      }
      normalized.set(stmt.command, text);
    }
  }
  for (const s of secrets) if (s.length >= 4 && text.includes(s)) text = text.split(s).join("***");
  return text;
}
