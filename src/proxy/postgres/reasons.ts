// The reason codes the PostgreSQL adapter gives itself (before or besides policy), in the form of
// src/decision/reasons.ts. The example policy's own pg.* codes are documented in policies/README.md.
import type { Reason } from "../../decision/contract.js";

export const PG_REASONS = {
  "pg.parse_error": "the PostgreSQL parser rejected the statement (SQLSTATE 42601); nothing was forwarded",
  "pg.statement_too_deep":
    "the statement nests parentheses, sub-selects or operators deeper than listeners.postgres.max_statement_depth (SQLSTATE 54001); refused before parsing, nothing was forwarded",
  "pg.statement_too_long":
    "the statement text is longer than pamgate analyzes (1 Mi characters; SQLSTATE 54000); nothing was forwarded",
  "pg.function_call_protocol": "the fast-path function call protocol bypasses SQL, so it is never allowed",
  "pg.unknown_portal": "an Execute named a portal that was not prepared through pamgate",
  "pg.mask_unsafe":
    "a masked column would leave through an expression (upper(ssn), row_to_json(t)) or a view column computed from it, where it cannot be masked",
  "pg.mask_unsupported":
    "masked columns can be copied out only as COPY table [(columns)] TO STDOUT in text format",
  "pg.catalog_unavailable":
    "the database catalog could not be read to resolve the statement's views, columns and functions, so it was not checked",
  "pg.catalog_changed":
    "the statement reads objects after a schema change in the same message (or one still running), so it could not be checked against the changed catalog",
  "pg.search_path_change":
    "the statement would change search_path, which pamgate pins so policy sees the tables the server reads",
} as const satisfies Record<string, string>;

export type PgReasonCode = keyof typeof PG_REASONS;

export function pgReason(code: PgReasonCode, message: string): Reason {
  return { code, message };
}
