// Whether the masks of a verdict can be enforced on a statement (the pipeline's checkMask hook): the proxy masks
// result values of columns PostgreSQL names as their origin in RowDescription, so a masked column that leaves any
// other way cannot be masked, and the statement is blocked with the reason instead.
import type { MaskRule, Reason } from "../../decision/contract.js";
import type { ResolvedStatement } from "./resolve.js";
import type { ErrorFields } from "./wire.js";

const last = (name: string): string => name.slice(name.lastIndexOf(".") + 1);

/** Why these masks cannot be enforced on this statement, or null. */
export function maskProblem(stmt: ResolvedStatement, masks: readonly MaskRule[]): Reason | null {
  const fields = new Set(masks.map((m) => m.field));
  const names = new Set(masks.map((m) => last(m.field)));
  const masked = (col: string) => fields.has(col) || names.has(last(col));
  const list = [...names].join(", ");
  const { bare, computed } = stmt.masking;
  // An expression over a masked column (upper(ssn)), or a whole row (row_to_json(t), t.*) in one.
  const leak = computed.find((c) => c === "*" || c.endsWith(".*") || masked(c));
  if (leak) {
    return {
      code: "pg.mask_unsafe",
      message: `${leak} is output through an expression, where masked columns (${list}) cannot be masked; select the column itself`,
    };
  }
  for (const view of stmt.views ?? []) {
    const prefix = `${view.name}.`;
    const referenced = (entries: readonly string[], col: string) =>
      entries.some(
        (e) => e === "*" || e === `${prefix}*` || e === col || (!e.includes(".") && e === last(col)),
      );
    for (const col of view.columns) {
      const asBare = referenced(bare, col.name);
      const asComputed = referenced(computed, col.name);
      if (!asBare && !asComputed) continue;
      if (col.passes) {
        if (asComputed && masked(col.passes))
          return {
            code: "pg.mask_unsafe",
            message: `${col.name} is masked column ${col.passes} (through view ${view.name}), output through an expression where it cannot be masked; select the column itself`,
          };
        continue;
      }
      const from = col.sources.find(masked);
      if (from)
        return {
          code: "pg.mask_unsafe",
          message: `${col.name} is computed by view ${view.name} from masked column ${from}, so it cannot be masked; select other columns of the view, or the table's columns themselves`,
        };
    }
  }
  const copy = stmt.command.copy;
  if (
    stmt.command.statement === "copy" &&
    copy?.direction === "to" &&
    (copy.query || copy.format !== "text")
  ) {
    return {
      code: "pg.mask_unsupported",
      message: "masked columns can be copied out only as COPY table [(columns)] TO STDOUT in text format",
    };
  }
  return null;
}

/**
 * The error a masked statement's client gets in place of the server's: PostgreSQL quotes the offending value in
 * many messages (`invalid input syntax for type integer: "123-45-6789"` for a failed cast of a masked column, a
 * key's value in a constraint's DETAIL, a COPY line in CONTEXT), so quoted text in the message is withheld and
 * DETAIL, CONTEXT and the internal query are dropped. The SQLSTATE and severity stay, so clients still react to
 * the error as they would.
 */
export function withheldError(fields: Record<string, string>): ErrorFields {
  const message = (fields.M ?? "error").replace(/"(?:[^"]|"")*"/g, '"…"');
  return {
    severity: (fields.S as ErrorFields["severity"]) ?? "ERROR",
    code: fields.C ?? "XX000",
    message,
    hint: "pamgate withheld values from this error because the statement reads masked columns",
  };
}
