// The walk over one statement's parse tree (libpg-query's JSON: a node is `{"TypeName": {…fields}}`; a field
// typed as one specific node, e.g. InsertStmt.relation, holds the fields without the wrapper): `walkStatement`
// dispatches the statement to its handler and assembles the result.
//
// The walk is one object built in layers, each in its own module:
// - scope.ts: what is collected, the generic traversal (every node is visited; only the node types that carry
//   what the policy needs have handlers), names (how tables and columns are qualified) and scopes (FROM items,
//   CTEs, aliases, sub-selects traced back to their columns);
// - dml.ts: queries, INSERT/UPDATE/DELETE/MERGE and COPY — what is read or written, and masking (`bare` and
//   `computed`: where column values go);
// - utility.ts: DDL, TRUNCATE, VACUUM, CALL, SET, and the statements that wrap another (EXPLAIN, PREPARE, …);
// - kinds.ts: a statement's kind and category.

import type { CopyCommand } from "./dml.js";
import { type Category, type Kind, kindOf } from "./kinds.js";
import { type Body, newScope, Out, type Scope } from "./scope.js";
import { UtilityWalk } from "./utility.js";

export type { CopyCommand } from "./dml.js";

/** What the walk finds in one statement (the caller adds fingerprint and text). */
export interface WalkResult {
  statement: string;
  category: Category;
  read: string[];
  write: string[];
  columns: string[];
  functions: string[];
  calls: string[][];
  operators: string[][];
  hasWhere: boolean;
  copy: CopyCommand | null;
  paramCount: number;
  changesSearchPath: boolean;
  bare: string[];
  computed: string[];
}

class Walk extends UtilityWalk {
  statement(type: string, b: Body, sc: Scope, out: Out): Kind {
    const kind = kindOf(type, b);
    switch (type) {
      case "SelectStmt":
        this.select(b, sc, 0, out);
        break;
      case "InsertStmt":
        this.insert(b, sc, 0, out);
        break;
      case "UpdateStmt":
        this.update(b, sc, 0, out);
        break;
      case "DeleteStmt":
        this.delete(b, sc, 0, out);
        break;
      case "MergeStmt":
        this.merge(b, sc, 0, out);
        break;
      case "CopyStmt":
        return this.copyStmt(kind, b, sc);
      case "ExplainStmt":
        return this.explain(b, sc);
      case "PrepareStmt":
        return this.prepare(kind, b, sc);
      case "DeclareCursorStmt":
        return this.wrapped(kind, b.query, sc, Out.Sink);
      case "CreateFunctionStmt":
        this.createFunction(b, sc);
        break;
      case "CreateTableAsStmt":
        this.createTableAs(b, sc);
        break;
      case "ViewStmt":
        this.view(b, sc);
        break;
      case "TruncateStmt":
        this.truncate(b, sc);
        break;
      case "DropStmt":
        this.drop(b);
        break;
      case "CreateStmt":
      case "AlterTableStmt":
      case "IndexStmt":
      case "RefreshMatViewStmt":
      case "RenameStmt":
      case "AlterObjectSchemaStmt":
      case "AlterOwnerStmt":
      case "CreateTrigStmt":
      case "RuleStmt":
        this.relationDdl(type, b, sc);
        break;
      case "CreatePolicyStmt":
      case "AlterPolicyStmt":
        this.ddlOn(b, "table", sc);
        break;
      case "CreateSeqStmt":
      case "AlterSeqStmt":
        this.ddlOn(b, "sequence", sc);
        break;
      case "CreateForeignTableStmt":
        this.createForeignTable(b, sc);
        break;
      case "VacuumStmt":
        this.vacuum(b, sc);
        break;
      case "CallStmt":
        this.visit(b.funccall, sc, 0);
        break;
      case "VariableSetStmt":
        this.variableSet(b, sc);
        break;
      default:
        this.rest(b, [], sc, 0);
    }
    return kind;
  }
}

const sorted = (s: Set<string>): string[] => [...s].sort();
const byKey = (m: Map<string, string[]>): string[][] => [...m.keys()].sort().map((k) => m.get(k) as string[]);

/**
 * Analyzes one top-level statement node of a parse result (`stmts[i].stmt`); unqualified relation names resolve
 * in `schema` (scope.ts, Names).
 */
export function walkStatement(stmt: Body, schema = "public"): WalkResult {
  const w = new Walk(schema);
  let type = "";
  for (const k in stmt) {
    type = k;
    break;
  }
  const kind = w.statement(type, stmt[type] as Body, newScope(null), Out.Output);
  // UPDATE pg_settings is set_config by another name (a rule on the view calls it), for whichever setting the
  // WHERE clause selects. (A plain EXPLAIN of it writes nothing and has moved it to `read` by now.)
  if (w.write.has("pg_catalog.pg_settings")) w.changesSearchPath = true;
  w.traceComputed();
  let category = kind.category;
  if (category === "read" && w.writes) category = "write";
  return {
    statement: kind.statement,
    category,
    read: sorted(w.read),
    write: sorted(w.write),
    columns: sorted(w.columns),
    functions: sorted(w.functions),
    calls: byKey(w.calls),
    operators: byKey(w.operators),
    hasWhere: w.hasWhere,
    copy: w.copy,
    paramCount: w.params,
    changesSearchPath: w.changesSearchPath,
    bare: sorted(w.bare),
    computed: sorted(w.computed),
  };
}
