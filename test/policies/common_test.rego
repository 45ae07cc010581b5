package pamgate.common_test

import data.pamgate.common
import data.pamgate.testing as t

test_human if {
	common.is_human with input as {"identity": t.alice}
	not common.is_machine with input as {"identity": t.alice}
}

test_machine_by_client_id if {
	common.is_machine with input as {"identity": object.union(t.alice, {"client_id": "ci-bot"})}
}

test_machine_by_actor if {
	common.is_machine with input as {"identity": t.delegated_via_relay}
}

test_who if {
	common.who == "alice" with input as {"identity": t.alice}
	common.who == "ci-bot on behalf of alice" with input as {"identity": t.delegated}
	common.who == "relay on behalf of alice" with input as {"identity": t.delegated_via_relay}
	common.who == "the requester" with input as {}
}

test_group_names_sorted if {
	common.group_names({"b": true, "a": true}) == "a or b"
	common.approvers({"groups": ["sre", "dba"]}) == "dba or sre"
}

# data.json lint: an incomplete approver config would turn every approval it backs into a block.
approval_configs contains [name, c] if some name, c in data.config.postgres.approvals

approval_configs contains [name, c] if some name, c in data.config.kubernetes.approvals

approval_configs contains ["ssh.sudo_approval", data.config.ssh.sudo_approval]

test_approval_configs_complete if {
	count(approval_configs) == 8
	every entry in approval_configs {
		c := entry[1]
		count(c.groups) > 0
		is_number(c.min_approvals)
		c.min_approvals >= 1
		c.ttl_s >= 60
	}
}

test_masking_strategies_valid if {
	every s in array.concat([s | some s in data.config.postgres.masked_columns], [s | some s in data.config.kubernetes.secret_fields]) {
		s in {"redact", "partial", "hash"}
	}
}
