// Built-in functions that the statement's text alone cannot judge, by name (lower case, schema dropped — a name
// here is treated this way wherever it is called from, which errs on the side of reporting).
//
// - SIDE_EFFECTS: functions that change state although the statement calling them looks like a read: a
//   `SELECT nextval('s')` is a write. PostgreSQL marks them volatile, but so it marks random() and
//   clock_timestamp(); volatility alone does not tell a write, so this is a curated list (PostgreSQL 18's
//   functions reference, "System Administration Functions", sequences, advisory locks, large objects, NOTIFY,
//   and the common extensions' writers).
// - DYNAMIC_SQL: functions that run SQL handed to them as a string, or read tables named by an argument: what they
//   read is invisible to the analysis, so masking and read-only rules cannot be enforced on it.

export const SIDE_EFFECTS: ReadonlySet<string> = new Set([
  // sequences
  "nextval",
  "setval",
  // settings (set_config is also refused for search_path, see scope.ts)
  "set_config",
  "setseed",
  // advisory locks: held across statements, visible to other sessions
  "pg_advisory_lock",
  "pg_advisory_lock_shared",
  "pg_advisory_unlock",
  "pg_advisory_unlock_shared",
  "pg_advisory_unlock_all",
  "pg_advisory_xact_lock",
  "pg_advisory_xact_lock_shared",
  "pg_try_advisory_lock",
  "pg_try_advisory_lock_shared",
  "pg_try_advisory_xact_lock",
  "pg_try_advisory_xact_lock_shared",
  // notifications
  "pg_notify",
  // large objects
  "lo_creat",
  "lo_create",
  "lo_import",
  "lo_export",
  "lo_unlink",
  "lo_put",
  "lo_from_bytea",
  "lo_open",
  "lowrite",
  "lo_truncate",
  "lo_truncate64",
  // other sessions and the server
  "pg_cancel_backend",
  "pg_terminate_backend",
  "pg_reload_conf",
  "pg_rotate_logfile",
  "pg_log_backend_memory_contexts",
  "pg_switch_wal",
  "pg_create_restore_point",
  "pg_backup_start",
  "pg_backup_stop",
  "pg_promote",
  "pg_wal_replay_pause",
  "pg_wal_replay_resume",
  "pg_import_system_collations",
  // statistics
  "pg_stat_reset",
  "pg_stat_reset_shared",
  "pg_stat_reset_single_table_counters",
  "pg_stat_reset_single_function_counters",
  "pg_stat_reset_slru",
  "pg_stat_reset_replication_slot",
  "pg_stat_reset_subscription_stats",
  "pg_stat_reset_backend_stats",
  "pg_stat_clear_snapshot",
  // replication
  "pg_create_physical_replication_slot",
  "pg_create_logical_replication_slot",
  "pg_drop_replication_slot",
  "pg_copy_physical_replication_slot",
  "pg_copy_logical_replication_slot",
  "pg_replication_slot_advance",
  "pg_logical_slot_get_changes",
  "pg_logical_slot_get_binary_changes",
  "pg_logical_emit_message",
  "pg_replication_origin_create",
  "pg_replication_origin_drop",
  "pg_replication_origin_advance",
  "pg_replication_origin_session_setup",
  "pg_replication_origin_session_reset",
  "pg_replication_origin_xact_setup",
  "pg_replication_origin_xact_reset",
  // extensions (adminpack, dblink); an extension's functions are user-defined objects to the gateway as well
  "pg_file_write",
  "pg_file_rename",
  "pg_file_unlink",
  "pg_file_sync",
  "dblink_exec",
]);

export const DYNAMIC_SQL: ReadonlySet<string> = new Set([
  "query_to_xml",
  "query_to_xmlschema",
  "query_to_xml_and_xmlschema",
  "cursor_to_xml",
  "cursor_to_xmlschema",
  "table_to_xml",
  "table_to_xmlschema",
  "table_to_xml_and_xmlschema",
  "schema_to_xml",
  "schema_to_xmlschema",
  "schema_to_xml_and_xmlschema",
  "database_to_xml",
  "database_to_xmlschema",
  "database_to_xml_and_xmlschema",
  "ts_stat",
  "ts_rewrite",
  "dblink",
  "dblink_exec",
  "dblink_open",
  "dblink_fetch",
  "dblink_send_query",
  "dblink_get_result",
  "dblink_build_sql_insert",
  "dblink_build_sql_update",
  "dblink_build_sql_delete",
]);
