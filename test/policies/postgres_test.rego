package pamgate.postgres_test

import data.pamgate.testing as t

verdict(inp) := v if {
	v := data.pamgate.main.verdict with input as inp
}

# --- allow ------------------------------------------------------------------------------------------------------

test_human_read_allowed if {
	v := verdict(t.pg(t.alice, "staging", {"columns": ["public.orders.id"]}))
	v == {
		"action": "allow",
		"reasons": [{"code": "pg.read_allowed", "message": "SELECT reads are allowed."}],
		"mask": [],
		"approval": null,
	}
}

test_machine_read_allowed if {
	v := verdict(t.pg(t.bot, "production", {}))
	v.action == "allow"
	t.codes(v) == {"pg.read_allowed"}
}

test_machine_transaction_and_session_allowed if {
	every stmt in [["begin", "transaction"], ["commit", "transaction"], ["set", "session"], ["show", "session"]] {
		v := verdict(t.pg(t.delegated, "production", {"statement": stmt[0], "category": stmt[1]}))
		v.action == "allow"
		t.codes(v) == {"pg.session_allowed"}
	}
}

test_session_allowed_message if {
	v := verdict(t.pg(t.alice, "", {"statement": "set", "category": "session"}))
	v.reasons == [{"code": "pg.session_allowed", "message": "SET (session control) is allowed."}]
}

test_human_write_allowed_in_production if {
	v := verdict(t.pg(t.alice, "production", {
		"statement": "update", "category": "write",
		"tables": {"read": [], "write": ["public.orders"]},
	}))
	v.action == "allow"
	v.reasons == [{"code": "pg.write_allowed", "message": "UPDATE by alice is allowed."}]
}

test_truncate_outside_production_is_a_plain_write if {
	v := verdict(t.pg(t.alice, "staging", {"statement": "truncate", "category": "write"}))
	v.action == "allow"
}

# --- block: machines are read-only ------------------------------------------------------------------------------

test_machine_write_blocked if {
	v := verdict(t.pg(t.bot, "staging", {"statement": "insert", "category": "write"}))
	v.action == "block"
	v.reasons == [{
		"code": "pg.read_only_machine",
		"message": "deploy-agent is a machine identity and may only read; INSERT (category write) is not allowed. Ask a human to run it.",
	}]
}

test_delegated_bot_write_blocked if {
	v := verdict(t.pg(t.delegated, "staging", {"statement": "update", "category": "write"}))
	v.action == "block"
	v.reasons[0].message == "ci-bot on behalf of alice is a machine identity and may only read; UPDATE (category write) is not allowed. Ask a human to run it."
}

test_machine_in_middle_of_chain_blocked if {
	v := verdict(t.pg(t.delegated_via_relay, "staging", {"statement": "insert", "category": "write"}))
	t.codes(v) == {"pg.read_only_machine"}
	startswith(v.reasons[0].message, "relay on behalf of alice ")
}

test_machine_ddl_blocked_not_approved if {
	inp := t.pg(t.bot, "staging", {"statement": "create_table", "category": "ddl"})
	v := verdict(inp)
	v.action == "block"
	t.codes(v) == {"pg.read_only_machine"}
	count(data.pamgate.postgres.approve) == 0 with input as inp
}

test_missing_category_blocked_for_machines if {
	v := verdict(t.pg(t.bot, "staging", {"category": null}))
	v.action == "block"
}

# --- block: statement shapes ------------------------------------------------------------------------------------

test_update_without_where_blocked if {
	v := verdict(t.pg(t.alice, "staging", {
		"statement": "update", "category": "write", "has_where": false,
		"tables": {"read": [], "write": ["public.orders"]},
	}))
	v == {
		"action": "block",
		"reasons": [{
			"code": "pg.no_where",
			"message": "UPDATE without a WHERE clause would change every row of public.orders; add a WHERE clause that selects the rows you mean.",
		}],
		"mask": [],
		"approval": null,
	}
}

test_delete_without_where_and_without_tables if {
	inp := t.pg(t.alice, "staging", {"statement": "delete", "category": "write", "has_where": false})
	v := verdict(json.remove(inp, ["command/tables"]))
	t.codes(v) == {"pg.no_where"}
	contains(v.reasons[0].message, "every row of its table")
}

test_update_with_where_not_blocked if {
	inp := t.pg(t.alice, "staging", {"statement": "update", "category": "write", "has_where": true})
	count(data.pamgate.postgres.deny) == 0 with input as inp
}

test_blocked_function if {
	v := verdict(t.pg(t.alice, "staging", {"functions": ["lower", "PG_READ_FILE"]}))
	v.action == "block"
	v.reasons == [{
		"code": "pg.blocked_function",
		"message": "function pg_read_file is blocked because it reads files on the database server; remove it from the statement.",
	}]
}

test_two_blocked_functions_give_two_reasons if {
	v := verdict(t.pg(t.alice, "staging", {"functions": ["lo_export", "dblink"]}))
	[r.message | some r in v.reasons] == [
		"function dblink is blocked because it opens connections to other databases; remove it from the statement.",
		"function lo_export is blocked because it writes large objects to server files; remove it from the statement.",
	]
}

test_harmless_functions_allowed if {
	v := verdict(t.pg(t.alice, "staging", {"functions": ["lower", "now", "count"]}))
	v.action == "allow"
}

test_copy_program_blocked if {
	v := verdict(t.pg(t.alice, "staging", {
		"statement": "copy", "category": "write",
		"copy": {"direction": "from", "program": true},
	}))
	t.codes(v) == {"pg.copy_program"}
}

test_copy_stdin_allowed if {
	v := verdict(t.pg(t.alice, "staging", {
		"statement": "copy", "category": "write",
		"copy": {"direction": "from", "program": false},
	}))
	v.action == "allow"
}

test_alter_system_blocked_even_though_admin_is_approvable if {
	inp := t.pg(t.with_groups(t.alice, ["dba"]), "production", {"statement": "alter_system", "category": "admin"})
	count(data.pamgate.postgres.approve) == 1 with input as inp
	v := verdict(inp)
	v.action == "block"
	t.codes(v) == {"pg.alter_system"}
	v.approval == null
}

test_wildcard_on_pii_table_blocked if {
	v := verdict(t.pg(t.alice, "production", {
		"tables": {"read": ["public.users"], "write": []},
		"columns": ["public.users.*"],
	}))
	v.action == "block"
	t.codes(v) == {"pg.pii_wildcard"}
}

test_wildcard_on_pii_table_allowed_for_pii_readers if {
	v := verdict(t.pg(t.with_groups(t.alice, ["pii-readers"]), "production", {
		"tables": {"read": ["public.users"], "write": []},
		"columns": ["*"],
	}))
	v.action == "allow"
}

test_wildcard_on_other_table_allowed if {
	v := verdict(t.pg(t.alice, "production", {"columns": ["public.orders.*"]}))
	v.action == "allow"
}

# --- approve ----------------------------------------------------------------------------------------------------

test_ddl_needs_dba_approval if {
	v := verdict(t.pg(t.alice, "staging", {"statement": "create_table", "category": "ddl"}))
	v == {
		"action": "approve",
		"reasons": [{
			"code": "pg.ddl_needs_approval",
			"message": "CREATE TABLE is a schema change (DDL) and needs approval from dba.",
		}],
		"mask": [],
		"approval": {"groups": ["dba"], "min_approvals": 1, "ttl_s": 3600},
	}
}

test_grant_needs_two_approvals if {
	v := verdict(t.pg(t.alice, "staging", {"statement": "grant", "category": "dcl"}))
	v.action == "approve"
	t.codes(v) == {"pg.dcl_needs_approval"}
	v.approval == {"groups": ["dba", "security"], "min_approvals": 2, "ttl_s": 1800}
}

test_admin_needs_approval if {
	v := verdict(t.pg(t.alice, "staging", {"statement": "vacuum", "category": "admin"}))
	t.codes(v) == {"pg.admin_needs_approval"}
}

test_drop_in_production_merges_approvals if {
	v := verdict(t.pg(t.alice, "production", {"statement": "drop", "category": "ddl"}))
	v.action == "approve"
	t.codes(v) == {"pg.ddl_needs_approval", "pg.prod_destructive_needs_approval"}
	v.approval == {"groups": ["dba", "sre"], "min_approvals": 2, "ttl_s": 900}
}

test_truncate_in_production_needs_approval if {
	v := verdict(t.pg(t.alice, "production", {"statement": "truncate", "category": "write"}))
	v.reasons == [{
		"code": "pg.prod_destructive_needs_approval",
		"message": "TRUNCATE destroys data on production database orders-db and needs 2 approvals from dba or sre.",
	}]
}

# --- mask -------------------------------------------------------------------------------------------------------

test_pii_columns_masked if {
	v := verdict(t.pg(t.alice, "production", {
		"tables": {"read": ["public.users"], "write": []},
		"columns": ["public.users.id", "public.users.ssn", "users.email", "CARD_NUMBER"],
	}))
	v.action == "mask"
	v.mask == [
		{"field": "CARD_NUMBER", "strategy": "partial"},
		{"field": "public.users.ssn", "strategy": "partial"},
		{"field": "users.email", "strategy": "hash"},
	]
	v.approval == null
	t.codes(v) == {"pg.pii_masked"}
	count(v.reasons) == 3
	v.reasons[1].message == "public.users.ssn is masked (partial) outside group pii-readers."
}

test_pii_columns_masked_for_delegated_bot if {
	v := verdict(t.pg(t.delegated, "production", {"columns": ["public.users.date_of_birth"]}))
	v.action == "mask"
	v.mask == [{"field": "public.users.date_of_birth", "strategy": "redact"}]
}

test_pii_readers_see_pii if {
	v := verdict(t.pg(t.with_groups(t.alice, ["engineering", "pii-readers"]), "production", {
		"columns": ["public.users.ssn", "public.users.email"],
	}))
	v.action == "allow"
	v.mask == []
}

test_pii_masked_on_human_write if {
	v := verdict(t.pg(t.alice, "staging", {"statement": "update", "category": "write", "columns": ["public.users.phone"]}))
	v.action == "mask"
	v.mask == [{"field": "public.users.phone", "strategy": "partial"}]
}

# --- default deny -----------------------------------------------------------------------------------------------

test_unknown_category_default_deny if {
	v := verdict(t.pg(t.alice, "staging", {"statement": "listen", "category": "other"}))
	v == {
		"action": "block",
		"reasons": [{
			"code": "policy.default_deny",
			"message": "no policy rule allows this postgres listen statement (category other), so it is blocked; ask your security team for an allow rule.",
		}],
		"mask": [],
		"approval": null,
	}
}

test_missing_fields_default_deny if {
	v := verdict(t.make("postgres", "orders-db", "staging", t.alice, {}))
	v.action == "block"
	v.reasons[0].message == "no policy rule allows this postgres unknown statement (category unknown), so it is blocked; ask your security team for an allow rule."
}

# --- server-side objects (catalog resolution) ---------------------------------------------------------------------

plpgsql_fn := {
	"name": "public.lookup", "volatility": "stable", "language": "plpgsql", "kind": "function",
	"security_definer": false,
}

test_user_function_opaque_for_restricted_identities if {
	every who in [t.alice, t.bot, t.delegated] {
		v := verdict(t.pg(who, "staging", {"functions": ["lookup"], "user_functions": [plpgsql_fn]}))
		v.action == "block"
		"pg.opaque_function" in t.codes(v)
	}
	v := verdict(t.pg(t.alice, "staging", {"functions": ["lookup"], "user_functions": [plpgsql_fn]}))
	v.reasons[0].message == "function public.lookup (plpgsql, stable) is user-defined code pamgate cannot see into, so it may read masked data or change state; ask for it to be reviewed and added to allowed_functions, or query the tables directly."
}

test_user_function_allowed_for_pii_reader_humans if {
	v := verdict(t.pg(t.with_groups(t.alice, ["pii-readers"]), "staging", {"user_functions": [plpgsql_fn]}))
	v.action == "allow"
}

test_allowed_function_passes if {
	v := verdict(t.pg(t.alice, "staging", {"user_functions": [plpgsql_fn]})) with data.config.postgres.allowed_functions as {"public.lookup": "reviewed in PR 12"}
	v.action == "allow"
}

test_dynamic_sql_blocked if {
	v := verdict(t.pg(t.alice, "staging", {"functions": ["query_to_xml"], "dynamic_sql": ["query_to_xml"]}))
	v.action == "block"
	t.codes(v) == {"pg.dynamic_sql"}
	startswith(v.reasons[0].message, "function query_to_xml runs SQL given to it as a string")
}

test_do_block_blocked_with_reason if {
	v := verdict(t.pg(t.with_groups(t.alice, ["pii-readers", "dba"]), "staging", {"statement": "do", "category": "other"}))
	v.action == "block"
	t.codes(v) == {"pg.do_block"}
}

test_select_with_side_effect_is_a_write_for_machines if {
	v := verdict(t.pg(t.bot, "staging", {"category": "write", "functions": ["nextval"], "side_effects": ["nextval"]}))
	v.action == "block"
	v.reasons[0].message == "deploy-agent is a machine identity and may only read; SELECT (category write), which changes state through nextval, is not allowed. Ask a human to run it."
	h := verdict(t.pg(t.alice, "staging", {"category": "write", "functions": ["nextval"], "side_effects": ["nextval"]}))
	h.action == "allow"
}
