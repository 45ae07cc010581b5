package pamgate.main_test

import data.pamgate.main
import data.system.log

alice := {"sub": "alice", "iss": "https://idp.example.com", "email": "alice@example.com", "groups": ["engineering"], "actors": []}

dba := object.union(alice, {"sub": "bob", "groups": ["dba"]})

pii_reader := object.union(alice, {"groups": ["pii-readers"]})

staging := {"name": "orders-staging", "kind": "postgres", "labels": {"env": "staging"}}

production := {"name": "orders-db", "kind": "postgres", "labels": {"env": "production"}}

pg(identity, resource, command) := {
	"protocol": "postgres",
	"resource": resource,
	"identity": identity,
	"command": command,
}

select_users := {"statement": "select", "category": "read", "columns": ["users.name", "users.ssn", "users.email"]}

update_orders := {"statement": "update", "category": "write", "columns": ["orders.status"]}

test_read_is_allowed if {
	v := main.verdict with input as pg(alice, production, {"statement": "select", "category": "read", "columns": ["orders.id"]})
	v.action == "allow"
	v.reasons == [{"code": "example.allowed", "message": "read statements are allowed"}]
}

test_pii_is_masked_for_others if {
	v := main.verdict with input as pg(alice, production, select_users)
	v.action == "mask"
	v.mask == [{"field": "users.email", "strategy": "hash"}, {"field": "users.ssn", "strategy": "partial"}]
}

test_pii_readers_see_pii if {
	v := main.verdict with input as pg(pii_reader, production, select_users)
	v.action == "allow"
}

test_production_write_is_blocked if {
	v := main.verdict with input as pg(alice, production, update_orders)
	v.action == "block"
	v.reasons[0].code == "example.production_write"
}

test_dba_may_write_to_production if {
	v := main.verdict with input as pg(dba, production, update_orders)
	v.action == "allow"
}

test_staging_write_is_allowed if {
	v := main.verdict with input as pg(alice, staging, update_orders)
	v.action == "allow"
}

test_ddl_is_blocked_by_default if {
	v := main.verdict with input as pg(dba, staging, {"statement": "drop_table", "category": "ddl"})
	v.action == "block"
	v.reasons[0].code == "policy.default_deny"
}

test_other_protocols_are_blocked if {
	v := main.verdict with input as {"protocol": "ssh", "resource": staging, "identity": alice, "command": {}}
	v.action == "block"
}

test_email_is_erased_from_decision_logs if {
	log.mask == {"/input/identity/email"} with input as {"input": pg(alice, staging, update_orders)}
}
