# PostgreSQL: one decision per SQL statement. input.command is described in docs/policy-contract.md.
#
# Every rule starts with `input.protocol == "postgres"`: the wasm target evaluates every rule of the bundle for
# every input (it has no rule indexing), so that first test is what keeps the other protocols cheap.
package pamgate.postgres

import data.pamgate.common

cfg := data.config.postgres

# Command fields with defaults, so a missing field never makes a deny rule silently undefined.
statement := object.get(input.command, "statement", "unknown")

category := object.get(input.command, "category", "unknown")

columns := object.get(input.command, "columns", [])

functions := object.get(input.command, "functions", [])

side_effects := object.get(input.command, "side_effects", [])

dynamic_sql := object.get(input.command, "dynamic_sql", [])

user_functions := object.get(input.command, "user_functions", [])

written_tables := object.get(input.command, ["tables", "write"], [])

read_tables := object.get(input.command, ["tables", "read"], [])

# For messages: "CREATE TABLE", and the tables a statement writes.
stmt := upper(replace(statement, "_", " "))

written_desc := concat(", ", sort(written_tables)) if {
	count(written_tables) > 0
} else := "its table"

# The identity may see PII columns unmasked.
pii_privileged if common.member_of_any(cfg.privileged_groups)

pii_groups := common.group_names(cfg.privileged_groups)

production if common.production_resource

# For the default-deny message.
summary := concat("", ["postgres ", statement, " statement (category ", category, ")"])

# --- block ------------------------------------------------------------------------------------------------------

# Machines (any bot in the delegation chain) only read; transaction and session statements keep clients working.
# A SELECT that calls a function with side effects (nextval, pg_advisory_lock, a volatile user function …) has
# category write, and the message names the functions.
deny contains common.reason("pg.read_only_machine", msg) if {
	input.protocol == "postgres"
	common.is_machine
	not cfg.read_only_categories[category]
	msg := concat("", [
		common.who, " is a machine identity and may only read; ", stmt, " (category ", category, ")",
		side_effect_note, " is not allowed. Ask a human to run it.",
	])
}

side_effect_note := concat("", [", which changes state through ", concat(", ", sort(side_effects)), ","]) if {
	count(side_effects) > 0
} else := ""

# Identities whose reads are restricted (masked data, read-only machines): code the gateway cannot see into must
# be allowed by name first.
restricted if not pii_privileged

restricted if common.is_machine

# User-defined functions (called directly or by a view) are opaque: their bodies may read masked columns or
# change data while the statement looks like a plain read. data.config.postgres.allowed_functions lists the
# reviewed ones.
deny contains common.reason("pg.opaque_function", msg) if {
	input.protocol == "postgres"
	restricted
	some fn in user_functions
	not cfg.allowed_functions[fn.name]
	msg := concat("", [
		"function ", fn.name, " (", fn.language, ", ", fn.volatility, ") is user-defined code pamgate cannot see ",
		"into, so it may read masked data or change state; ask for it to be reviewed and added to ",
		"allowed_functions, or query the tables directly.",
	])
}

# Functions that run SQL given as a string (query_to_xml, dblink …) read what the analysis cannot see.
deny contains common.reason("pg.dynamic_sql", msg) if {
	input.protocol == "postgres"
	restricted
	some fn in dynamic_sql
	msg := concat("", [
		"function ", fn, " runs SQL given to it as a string (or reads a table named by an argument), which ",
		"pamgate cannot check or mask; run that query itself instead.",
	])
}

# DO blocks run procedural code (EXECUTE of any string included) that the gateway cannot inspect.
deny contains common.reason("pg.do_block", msg) if {
	input.protocol == "postgres"
	statement == "do"
	msg := "DO runs procedural code pamgate cannot inspect (EXECUTE can run any statement) and is blocked; run the statements themselves, or call a reviewed function."
}

# UPDATE/DELETE without WHERE changes every row: blocked for everyone.
deny contains common.reason("pg.no_where", msg) if {
	input.protocol == "postgres"
	input.command.has_where == false
	msg := concat("", [
		stmt, " without a WHERE clause would change every row of ", written_desc,
		"; add a WHERE clause that selects the rows you mean.",
	])
}

# Functions that reach the server's file system, other servers or other sessions.
deny contains common.reason("pg.blocked_function", msg) if {
	input.protocol == "postgres"
	some fn in functions
	why := cfg.blocked_functions[lower(fn)]
	msg := concat("", [
		"function ", lower(fn), " is blocked because it ", why, "; remove it from the statement.",
	])
}

# COPY ... PROGRAM runs a shell command as the postgres OS user.
deny contains common.reason("pg.copy_program", msg) if {
	input.protocol == "postgres"
	input.command.copy.program == true
	msg := "COPY ... PROGRAM runs a shell command on the database server and is blocked; use COPY ... TO STDOUT or FROM STDIN."
}

# ALTER SYSTEM rewrites postgresql.auto.conf.
deny contains common.reason("pg.alter_system", msg) if {
	input.protocol == "postgres"
	statement == "alter_system"
	msg := "ALTER SYSTEM changes the server configuration and is blocked; change it through configuration management."
}

# A wildcard (SELECT *) is expanded to the table's columns from the catalog, so masks apply column by column; one
# left in `columns` names a relation the catalog does not know, whose columns cannot be masked one by one.
deny contains common.reason("pg.pii_wildcard", msg) if {
	input.protocol == "postgres"
	not pii_privileged
	some col in columns
	endswith(col, "*")
	some table in read_tables
	cfg.pii_tables[table]
	msg := concat("", [
		table, " holds personal data, so * cannot be masked column by column; list the columns you need ",
		"(PII stays masked outside group ", pii_groups, ").",
	])
}

# --- approve ----------------------------------------------------------------------------------------------------

# DDL, GRANT/REVOKE and administration statements by humans: a machine asking is blocked by pg.read_only_machine.
approval_by_category := {
	"ddl": {"code": "pg.ddl_needs_approval", "what": "a schema change (DDL)"},
	"dcl": {"code": "pg.dcl_needs_approval", "what": "a privilege change (GRANT/REVOKE)"},
	"admin": {"code": "pg.admin_needs_approval", "what": "a server administration statement"},
}

approve contains common.approval(kind.code, msg, cfg.approvals[category]) if {
	input.protocol == "postgres"
	common.is_human
	kind := approval_by_category[category]
	msg := concat("", [
		stmt, " is ", kind.what, " and needs approval from ", common.approvers(cfg.approvals[category]), ".",
	])
}

# DROP and TRUNCATE on a production database need more eyes, on top of any DDL approval.
approve contains common.approval("pg.prod_destructive_needs_approval", msg, approval) if {
	input.protocol == "postgres"
	production
	cfg.destructive_statements[statement]
	approval := cfg.approvals.production_destructive
	msg := concat("", [
		stmt, " destroys data on production database ", input.resource.name, " and needs ",
		format_int(approval.min_approvals, 10), " approvals from ", common.approvers(approval), ".",
	])
}

# --- mask -------------------------------------------------------------------------------------------------------

# Columns named in data.config.postgres.masked_columns (matched on the column name, the last path element) are
# masked outside the privileged groups. The field is the column exactly as the adapter reported it.
mask contains common.masking(col, strategy, "pg.pii_masked", msg) if {
	input.protocol == "postgres"
	not pii_privileged
	some col in columns
	parts := split(col, ".")
	strategy := cfg.masked_columns[lower(parts[count(parts) - 1])]
	msg := concat("", [
		col, " is masked (", strategy, ") outside group ", pii_groups, ".",
	])
}

# --- allow ------------------------------------------------------------------------------------------------------

# Reads, by anyone (machines included).
allow contains common.reason("pg.read_allowed", concat("", [stmt, " reads are allowed."])) if {
	input.protocol == "postgres"
	category == "read"
}

# BEGIN/COMMIT/ROLLBACK and SET/SHOW/RESET, by anyone.
allow contains common.reason("pg.session_allowed", msg) if {
	input.protocol == "postgres"
	category in {"transaction", "session"}
	msg := concat("", [stmt, " (", category, " control) is allowed."])
}

# Writes by humans, production included (pg.no_where and pg.prod_destructive_needs_approval still apply).
allow contains common.reason("pg.write_allowed", concat("", [stmt, " by ", common.who, " is allowed."])) if {
	input.protocol == "postgres"
	category == "write"
	common.is_human
}
