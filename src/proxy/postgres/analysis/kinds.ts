// Statement kinds: the parse node type of a top-level statement → the policy contract's `statement` (lower case)
// and `category`. Statements with a sub-kind (TransactionStmt, VariableSetStmt, GrantStmt, ALTER … of an object
// type, …) are resolved from the node's fields; every other node type not listed falls back to its name in
// snake case without "Stmt", categorized `ddl` when it creates, alters, drops, renames or comments on an object
// and `other` otherwise — so a statement type added by a future parser still gets a stable name and fails
// towards the policy's default deny rather than towards `read`.

export type Category = "read" | "write" | "ddl" | "dcl" | "admin" | "transaction" | "session" | "other";

export interface Kind {
  statement: string;
  category: Category;
}

type Body = Record<string, unknown>;

const FIXED: Record<string, readonly [string, Category]> = {
  SelectStmt: ["select", "read"],
  InsertStmt: ["insert", "write"],
  UpdateStmt: ["update", "write"],
  DeleteStmt: ["delete", "write"],
  MergeStmt: ["merge", "write"],
  TruncateStmt: ["truncate", "write"],
  // LOCK TABLE writes no rows but takes locks that block writers (like SELECT … FOR UPDATE): a write.
  LockStmt: ["lock", "write"],
  RefreshMatViewStmt: ["refresh_materialized_view", "write"],
  // A procedure may do anything, including COMMIT; the functions list names it.
  CallStmt: ["call", "write"],
  // NOTIFY delivers a payload to other sessions.
  NotifyStmt: ["notify", "write"],
  // An anonymous code block cannot be analyzed statically: only an explicit policy rule allows it.
  DoStmt: ["do", "other"],
  // EXECUTE runs a statement prepared earlier (PREPARE is analyzed with its statement); on its own it is opaque.
  ExecuteStmt: ["execute", "other"],

  CreateStmt: ["create_table", "ddl"],
  CreateForeignTableStmt: ["create_foreign_table", "ddl"],
  IndexStmt: ["create_index", "ddl"],
  ViewStmt: ["create_view", "ddl"],
  CreateSchemaStmt: ["create_schema", "ddl"],
  CreateSeqStmt: ["create_sequence", "ddl"],
  AlterSeqStmt: ["alter_sequence", "ddl"],
  CreateExtensionStmt: ["create_extension", "ddl"],
  AlterExtensionStmt: ["alter_extension", "ddl"],
  AlterExtensionContentsStmt: ["alter_extension", "ddl"],
  CreatedbStmt: ["create_database", "ddl"],
  AlterDatabaseStmt: ["alter_database", "ddl"],
  AlterDatabaseSetStmt: ["alter_database", "ddl"],
  AlterDatabaseRefreshCollStmt: ["alter_database", "ddl"],
  CreateTrigStmt: ["create_trigger", "ddl"],
  CreateEventTrigStmt: ["create_event_trigger", "ddl"],
  AlterEventTrigStmt: ["alter_event_trigger", "ddl"],
  RuleStmt: ["create_rule", "ddl"],
  CreatePolicyStmt: ["create_policy", "ddl"],
  AlterPolicyStmt: ["alter_policy", "ddl"],
  CreateDomainStmt: ["create_domain", "ddl"],
  AlterDomainStmt: ["alter_domain", "ddl"],
  CompositeTypeStmt: ["create_type", "ddl"],
  CreateEnumStmt: ["create_type", "ddl"],
  CreateRangeStmt: ["create_type", "ddl"],
  AlterEnumStmt: ["alter_type", "ddl"],
  AlterTypeStmt: ["alter_type", "ddl"],
  CreateCastStmt: ["create_cast", "ddl"],
  CreatePLangStmt: ["create_language", "ddl"],
  CreateForeignServerStmt: ["create_server", "ddl"],
  AlterForeignServerStmt: ["alter_server", "ddl"],
  CreateFdwStmt: ["create_foreign_data_wrapper", "ddl"],
  AlterFdwStmt: ["alter_foreign_data_wrapper", "ddl"],
  CreateUserMappingStmt: ["create_user_mapping", "ddl"],
  AlterUserMappingStmt: ["alter_user_mapping", "ddl"],
  ImportForeignSchemaStmt: ["import_foreign_schema", "ddl"],
  CreateTableSpaceStmt: ["create_tablespace", "ddl"],
  AlterTableSpaceOptionsStmt: ["alter_tablespace", "ddl"],
  AlterTableMoveAllStmt: ["alter_table", "ddl"],
  CreateStatsStmt: ["create_statistics", "ddl"],
  AlterStatsStmt: ["alter_statistics", "ddl"],
  CreatePublicationStmt: ["create_publication", "ddl"],
  AlterPublicationStmt: ["alter_publication", "ddl"],
  CreateSubscriptionStmt: ["create_subscription", "ddl"],
  AlterSubscriptionStmt: ["alter_subscription", "ddl"],
  CommentStmt: ["comment", "ddl"],
  SecLabelStmt: ["security_label", "ddl"],
  // Every DROP is `drop`, whatever it drops (a table, a database, everything a role owns): the statement kind
  // the example policy's destructive-statement rule keys on.
  DropStmt: ["drop", "ddl"],
  DropdbStmt: ["drop", "ddl"],
  DropTableSpaceStmt: ["drop", "ddl"],
  DropOwnedStmt: ["drop", "ddl"],
  DropSubscriptionStmt: ["drop", "ddl"],
  DropUserMappingStmt: ["drop", "ddl"],
  DropRoleStmt: ["drop", "dcl"],

  CreateRoleStmt: ["create_role", "dcl"],
  AlterRoleStmt: ["alter_role", "dcl"],
  AlterRoleSetStmt: ["alter_role", "dcl"],
  AlterDefaultPrivilegesStmt: ["alter_default_privileges", "dcl"],
  ReassignOwnedStmt: ["reassign_owned", "dcl"],

  AlterSystemStmt: ["alter_system", "admin"],
  ClusterStmt: ["cluster", "admin"],
  ReindexStmt: ["reindex", "admin"],
  CheckPointStmt: ["checkpoint", "admin"],
  // LOAD loads a shared library into the server process.
  LoadStmt: ["load", "admin"],

  VariableShowStmt: ["show", "session"],
  DiscardStmt: ["discard", "session"],
  ListenStmt: ["listen", "session"],
  UnlistenStmt: ["unlisten", "session"],
  DeallocateStmt: ["deallocate", "session"],
  ClosePortalStmt: ["close", "session"],
  ConstraintsSetStmt: ["set_constraints", "transaction"],
};

const TRANSACTION: Record<string, string> = {
  TRANS_STMT_BEGIN: "begin",
  TRANS_STMT_START: "begin",
  TRANS_STMT_COMMIT: "commit",
  TRANS_STMT_ROLLBACK: "rollback",
  TRANS_STMT_SAVEPOINT: "savepoint",
  TRANS_STMT_RELEASE: "release",
  TRANS_STMT_ROLLBACK_TO: "rollback_to_savepoint",
  TRANS_STMT_PREPARE: "prepare_transaction",
  TRANS_STMT_COMMIT_PREPARED: "commit_prepared",
  TRANS_STMT_ROLLBACK_PREPARED: "rollback_prepared",
};

/** OBJECT_MATVIEW → "materialized_view", OBJECT_FOREIGN_TABLE → "foreign_table". */
export function objectName(objtype: unknown): string {
  if (typeof objtype !== "string" || !objtype.startsWith("OBJECT_")) return "object";
  const name = objtype.slice(7).toLowerCase();
  return name === "matview" ? "materialized_view" : name;
}

function snake(type: string): string {
  return type
    .replace(/Stmt$/, "")
    .replace(/([a-z0-9])([A-Z])/g, "$1_$2")
    .toLowerCase();
}

/** The statement kind and category of a top-level parse node (before looking inside it). */
export function kindOf(type: string, body: Body): Kind {
  const fixed = FIXED[type];
  if (fixed) return { statement: fixed[0], category: fixed[1] };
  switch (type) {
    case "TransactionStmt":
      return { statement: TRANSACTION[body.kind as string] ?? "transaction", category: "transaction" };
    case "VariableSetStmt": {
      const kind = body.kind as string;
      if (kind === "VAR_RESET" || kind === "VAR_RESET_ALL")
        return { statement: "reset", category: "session" };
      // SET ROLE / SET SESSION AUTHORIZATION change the privileges every later statement runs with.
      if (body.name === "role") return { statement: "set_role", category: "dcl" };
      if (body.name === "session_authorization")
        return { statement: "set_session_authorization", category: "dcl" };
      return { statement: "set", category: "session" };
    }
    case "GrantStmt":
    case "GrantRoleStmt":
      return { statement: body.is_grant ? "grant" : "revoke", category: "dcl" };
    case "VacuumStmt":
      return { statement: body.is_vacuumcmd ? "vacuum" : "analyze", category: "admin" };
    case "AlterTableStmt":
      return { statement: `alter_${objectName(body.objtype)}`, category: "ddl" };
    case "RenameStmt":
      return { statement: `alter_${objectName(body.renameType)}`, category: "ddl" };
    case "AlterObjectSchemaStmt":
    case "AlterOwnerStmt":
    case "AlterObjectDependsStmt":
      return { statement: `alter_${objectName(body.objectType)}`, category: "ddl" };
    case "AlterFunctionStmt":
      return { statement: `alter_${objectName(body.objtype)}`, category: "ddl" };
    case "AlterCollationStmt":
      return { statement: "alter_collation", category: "ddl" };
    case "AlterOperatorStmt":
      return { statement: "alter_operator", category: "ddl" };
    case "AlterOpFamilyStmt":
      return { statement: "alter_operator_family", category: "ddl" };
    case "CreateOpClassStmt":
      return { statement: "create_operator_class", category: "ddl" };
    case "CreateOpFamilyStmt":
      return { statement: "create_operator_family", category: "ddl" };
    case "DefineStmt":
      return { statement: `create_${objectName(body.kind)}`, category: "ddl" };
    case "CreateFunctionStmt":
      return { statement: body.is_procedure ? "create_procedure" : "create_function", category: "ddl" };
    case "CreateTableAsStmt":
      return {
        statement: body.objtype === "OBJECT_MATVIEW" ? "create_materialized_view" : "create_table_as",
        category: "ddl",
      };
    case "FetchStmt":
      return { statement: body.ismove ? "move" : "fetch", category: "read" };
    // Statements around another statement: the caller analyzes the inner one and adjusts the category.
    case "ExplainStmt":
      return { statement: "explain", category: "read" };
    case "PrepareStmt":
      return { statement: "prepare", category: "read" };
    case "DeclareCursorStmt":
      return { statement: "declare_cursor", category: "read" };
    case "CopyStmt":
      return { statement: "copy", category: body.is_from ? "write" : "read" };
  }
  const statement = snake(type);
  const ddl = /^(create|alter|drop|define|rename|comment)_/.test(`${statement}_`);
  return { statement, category: ddl ? "ddl" : "other" };
}
