# The aggregator on its own: precedence, merging and the default, with the protocol rules mocked out.
package pamgate.main_test

import data.pamgate.testing as t

deny_a := {"code": "x.deny_a", "message": "deny a"}

deny_b := {"code": "x.deny_b", "message": "deny b"}

allow_a := {"code": "x.allow_a", "message": "allow a"}

approve_a := {"code": "x.approve_a", "message": "approve a", "groups": ["sre", "dba"], "min_approvals": 1, "ttl_s": 3600}

approve_b := {"code": "x.approve_b", "message": "approve b", "groups": ["security", "sre"], "min_approvals": 2, "ttl_s": 600}

mask_ssn := {"field": "t.ssn", "strategy": "partial", "code": "x.pii", "message": "pii"}

mask_email := {"field": "t.email", "strategy": "hash", "code": "x.pii", "message": "pii"}

mask_email_redact := {"field": "t.email", "strategy": "redact", "code": "x.other", "message": "other"}

pg_input := t.pg(t.alice, "staging", {})

test_block_beats_everything if {
	v := data.pamgate.main.verdict with input as pg_input
		with data.pamgate.postgres.deny as {deny_b, deny_a}
		with data.pamgate.postgres.approve as {approve_a}
		with data.pamgate.postgres.mask as {mask_ssn}
		with data.pamgate.postgres.allow as {allow_a}

	v == {
		"action": "block",
		"reasons": [{"code": "x.deny_a", "message": "deny a"}, {"code": "x.deny_b", "message": "deny b"}],
		"mask": [],
		"approval": null,
	}
}

test_approve_beats_mask_and_allow_and_keeps_the_masks if {
	v := data.pamgate.main.verdict with input as pg_input
		with data.pamgate.postgres.approve as {approve_a, approve_b}
		with data.pamgate.postgres.mask as {mask_ssn}
		with data.pamgate.postgres.allow as {allow_a}

	v == {
		"action": "approve",
		"reasons": [{"code": "x.approve_a", "message": "approve a"}, {"code": "x.approve_b", "message": "approve b"}],
		"mask": [{"field": "t.ssn", "strategy": "partial"}],
		"approval": {"groups": ["dba", "security", "sre"], "min_approvals": 2, "ttl_s": 600},
	}
}

test_mask_beats_allow_and_dedups_reasons if {
	v := data.pamgate.main.verdict with input as pg_input
		with data.pamgate.postgres.mask as {mask_ssn, mask_email}
		with data.pamgate.postgres.allow as {allow_a}

	v == {
		"action": "mask",
		"reasons": [{"code": "x.pii", "message": "pii"}],
		"mask": [{"field": "t.email", "strategy": "hash"}, {"field": "t.ssn", "strategy": "partial"}],
		"approval": null,
	}
}

test_conflicting_mask_strategies_redact if {
	v := data.pamgate.main.verdict with input as pg_input
		with data.pamgate.postgres.mask as {mask_email, mask_email_redact}

	v.mask == [{"field": "t.email", "strategy": "redact"}]
	v.reasons == [{"code": "x.other", "message": "other"}, {"code": "x.pii", "message": "pii"}]
}

test_allow if {
	v := data.pamgate.main.verdict with input as pg_input
		with data.pamgate.postgres.allow as {allow_a}

	v == {"action": "allow", "reasons": [allow_a], "mask": [], "approval": null}
}

test_only_the_input_protocol_package_counts if {
	v := data.pamgate.main.verdict with input as t.ssh(t.alice, "", {"request": "shell"})
		with data.pamgate.postgres.deny as {deny_a}
		with data.pamgate.kubernetes.deny as {deny_b}

	t.codes(v) == {"ssh.shell_allowed"}
}

test_each_protocol_package_is_selected if {
	every protocol in ["postgres", "ssh", "kubernetes"] {
		v := data.pamgate.main.verdict with input as {"protocol": protocol}
			with data.pamgate.postgres.deny as {{"code": "x.postgres", "message": "p"}}
			with data.pamgate.ssh.deny as {{"code": "x.ssh", "message": "s"}}
			with data.pamgate.kubernetes.deny as {{"code": "x.kubernetes", "message": "k"}}

		t.codes(v) == {concat(".", ["x", protocol])}
	}
}

test_a_package_without_a_set_counts_as_empty if {
	v := data.pamgate.main.verdict with input as t.ssh(t.alice, "", {"request": "shell"})
	v.mask == []
	v.action == "allow"
}

test_nothing_matched_is_default_deny_naming_the_command if {
	v := data.pamgate.main.verdict with input as pg_input
		with data.pamgate.postgres.allow as set()

	v == {
		"action": "block",
		"reasons": [{
			"code": "policy.default_deny",
			"message": "no policy rule allows this postgres select statement (category read), so it is blocked; ask your security team for an allow rule.",
		}],
		"mask": [],
		"approval": null,
	}
}

default_verdict := {
	"action": "block",
	"reasons": [{
		"code": "policy.default_deny",
		"message": "no policy rule allows this command, so it is blocked; ask your security team for an allow rule.",
	}],
	"mask": [],
	"approval": null,
}

test_unknown_protocol_is_default_deny if {
	v := data.pamgate.main.verdict with input as object.union(pg_input, {"protocol": "rdp"})
	v == default_verdict
}

test_empty_input_is_default_deny if {
	v := data.pamgate.main.verdict with input as {}
	v == default_verdict
}

test_every_fixture_shape_has_four_keys if {
	every inp in [pg_input, t.ssh(t.alice, "", {"request": "shell"}), t.k8s(t.alice, "", {}), {}] {
		v := data.pamgate.main.verdict with input as inp
		{k | some k, _ in v} == {"action", "reasons", "mask", "approval"}
	}
}

test_a_future_ssh_mask_rule_would_count if {
	v := data.pamgate.main.verdict with input as t.ssh(t.alice, "", {"request": "shell"})
		with data.pamgate.ssh.mask as {mask_ssn}

	v.action == "mask"
	v.mask == [{"field": "t.ssn", "strategy": "partial"}]
}

test_incomplete_approval_config_fails_closed if {
	every broken in [
		object.union(approve_a, {"groups": []}),
		object.union(approve_a, {"min_approvals": 0}),
		json.remove(approve_a, ["ttl_s"]),
	] {
		v := data.pamgate.main.verdict with input as pg_input
			with data.pamgate.postgres.approve as {approve_b, broken}
			with data.pamgate.postgres.allow as {allow_a}

		v.action == "block"
		t.codes(v) == {"policy.invalid_approval"}
	}
}
