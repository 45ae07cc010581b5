package pamgate.kubernetes_test

import data.pamgate.testing as t

verdict(inp) := v if {
	v := data.pamgate.main.verdict with input as inp
}

platform_admin := t.with_groups(t.alice, ["platform-admins"])

# --- reads ------------------------------------------------------------------------------------------------------

test_read_verbs_allowed if {
	every v in ["get", "list", "watch"] {
		verdict(t.k8s(t.alice, "", {"verb": v, "namespace": "prod"})).action == "allow"
	}
}

test_read_message if {
	v := verdict(t.k8s(t.bot, "", {"verb": "list", "namespace": "prod"}))
	v.reasons == [{"code": "k8s.read_allowed", "message": "list of pods in namespace prod is allowed."}]
}

test_pod_log_allowed_in_production if {
	v := verdict(t.k8s(t.delegated, "production", {"name": "web-0", "subresource": "log", "namespace": "web"}))
	v.reasons == [{"code": "k8s.read_allowed", "message": "get of pods/web-0/log in namespace web is allowed."}]
}

test_cluster_scoped_read_allowed if {
	v := verdict(t.k8s(t.alice, "", {"verb": "list", "resource": "nodes", "namespace": ""}))
	v.reasons == [{"code": "k8s.read_allowed", "message": "list of nodes (cluster scope) is allowed."}]
}

test_unlisted_subresource_default_deny if {
	v := verdict(t.k8s(platform_admin, "", {"resource": "nodes", "name": "node-1", "subresource": "proxy", "namespace": ""}))
	v.action == "block"
	t.codes(v) == {"policy.default_deny"}
}

test_unknown_verb_default_deny if {
	v := verdict(t.k8s(t.alice, "", {"verb": "impersonate", "resource": "users", "name": "admin", "namespace": ""}))
	v.reasons == [{
		"code": "policy.default_deny",
		"message": "no policy rule allows this kubernetes impersonate of users/admin (cluster scope), so it is blocked; ask your security team for an allow rule.",
	}]
}

# --- secrets ----------------------------------------------------------------------------------------------------

test_secret_read_masked if {
	v := verdict(t.k8s(t.alice, "", {"resource": "secrets", "name": "db-creds"}))
	v == {
		"action": "mask",
		"reasons": [{
			"code": "k8s.secret_masked",
			"message": "secret values (data, stringData) are redacted outside group platform-admins.",
		}],
		"mask": [{"field": "data", "strategy": "redact"}, {"field": "stringData", "strategy": "redact"}],
		"approval": null,
	}
}

test_secret_list_masked_for_delegated_bot if {
	v := verdict(t.k8s(t.delegated, "production", {"verb": "watch", "resource": "secrets"}))
	v.action == "mask"
	count(v.mask) == 2
}

test_secret_read_unmasked_for_platform_admins if {
	v := verdict(t.k8s(platform_admin, "", {"resource": "secrets", "name": "db-creds"}))
	v.action == "allow"
	v.mask == []
}

test_custom_secrets_resource_not_masked if {
	v := verdict(t.k8s(t.alice, "", {"resource": "secrets", "api_group": "vault.example.com"}))
	v.action == "allow"
}

test_secret_write_not_masked if {
	v := verdict(t.k8s(t.alice, "", {"verb": "create", "resource": "secrets"}))
	v.action == "allow"
}

# --- deletes ----------------------------------------------------------------------------------------------------

test_delete_in_production_namespace_needs_approval if {
	v := verdict(t.k8s(t.alice, "", {
		"verb": "delete", "api_group": "apps", "resource": "deployments",
		"name": "web", "namespace": "prod",
	}))
	v == {
		"action": "approve",
		"reasons": [{
			"code": "k8s.prod_delete_needs_approval",
			"message": "delete of deployments/web in namespace prod deletes production objects and needs approval from sre.",
		}],
		"mask": [],
		"approval": {"groups": ["sre"], "min_approvals": 1, "ttl_s": 900},
	}
}

test_deletecollection_on_production_cluster_needs_approval if {
	v := verdict(t.k8s(t.alice, "production", {"verb": "deletecollection", "namespace": "web"}))
	t.codes(v) == {"k8s.prod_delete_needs_approval"}
}

test_cluster_scoped_delete_needs_approval if {
	v := verdict(t.k8s(t.alice, "", {"verb": "delete", "resource": "nodes", "name": "node-1", "namespace": ""}))
	v.action == "approve"
}

test_delete_in_staging_allowed if {
	v := verdict(t.k8s(t.alice, "", {"verb": "delete", "name": "web-0"}))
	v.reasons == [{"code": "k8s.write_allowed", "message": "delete of pods/web-0 in namespace staging is allowed."}]
}

# --- exec / attach / port-forward -------------------------------------------------------------------------------

test_exec_in_production_needs_approval if {
	v := verdict(t.k8s(t.alice, "production", {"verb": "exec", "name": "web-0", "subresource": "exec", "namespace": "web", "commands": [{"program": "sh", "args": []}]}))
	v == {
		"action": "approve",
		"reasons": [{
			"code": "k8s.prod_exec_needs_approval",
			"message": "exec into pods/web-0 in namespace web opens a session in production and needs approval from sre.",
		}],
		"mask": [],
		"approval": {"groups": ["sre"], "min_approvals": 1, "ttl_s": 1800},
	}
}

test_attach_in_production_namespace_needs_approval if {
	v := verdict(t.k8s(t.alice, "", {"verb": "get", "name": "web-0", "subresource": "attach", "namespace": "payments"}))
	t.codes(v) == {"k8s.prod_exec_needs_approval"}
}

test_exec_in_staging_allowed_for_humans if {
	v := verdict(t.k8s(t.alice, "", {"verb": "exec", "name": "web-0", "subresource": "exec", "commands": [{"program": "sh", "args": []}]}))
	v.reasons == [{"code": "k8s.exec_allowed", "message": "exec into pods/web-0 in namespace staging is allowed."}]
}

test_machine_tunnels_blocked_everywhere if {
	every ns in ["staging", "prod"] {
		every sub in ["exec", "attach", "portforward"] {
			v := verdict(t.k8s(t.delegated, "", {"verb": sub, "name": "web-0", "subresource": sub, "namespace": ns, "commands": [{"program": "sh", "args": []}]}))
			v.action == "block"
			t.codes(v) == {"k8s.machine_exec"}
		}
	}
}

test_machine_exec_message if {
	v := verdict(t.k8s(t.delegated, "", {"verb": "exec", "name": "web-0", "subresource": "exec", "commands": [{"program": "sh", "args": []}]}))
	v.reasons[0].message == "ci-bot on behalf of alice is a machine identity and may not open an interactive session (exec) into pods/web-0 in namespace staging; use the API instead."
}

# Port-forward: pamgate decides each port a stream names as the request with ports: [port] (kubectl names none in
# the request itself, so the request is decided with ports: []).
portforward(ns, ports) := {"verb": "portforward", "name": "web-0", "subresource": "portforward", "namespace": ns, "ports": ports}

test_portforward_in_staging_allowed_for_humans if {
	every ports in [[], [8080], [5432]] {
		v := verdict(t.k8s(t.alice, "", portforward("staging", ports)))
		v.reasons == [{"code": "k8s.exec_allowed", "message": "portforward into pods/web-0 in namespace staging is allowed."}]
	}
}

test_portforward_in_production_needs_approval_per_port if {
	every ports in [[], [8080]] {
		v := verdict(t.k8s(t.alice, "", portforward("prod", ports)))
		v.action == "approve"
		t.codes(v) == {"k8s.prod_exec_needs_approval"}
	}
}

test_portforward_port_22_never if {
	every ns in ["staging", "prod"] {
		every ports in [[22], [8080, 22]] {
			v := verdict(t.k8s(t.alice, "", portforward(ns, ports)))
			v.action == "block"
			t.codes(v) == {"k8s.portforward_port_blocked"}
		}
	}
	v := verdict(t.k8s(t.alice, "", portforward("staging", [22])))
	v.reasons == [{
		"code": "k8s.portforward_port_blocked",
		"message": "port-forward to port 22 of pods/web-0 in namespace staging is not allowed: SSH goes through pamgate's SSH listener, where each command is decided and recorded.",
	}]
}

test_portforward_port_22_blocked_for_machines_too if {
	v := verdict(t.k8s(t.delegated, "", portforward("staging", [22])))
	t.codes(v) == {"k8s.machine_exec", "k8s.portforward_port_blocked"}
}

test_portforward_port_rule_only_for_portforward if {
	v := verdict(t.k8s(t.alice, "", {"verb": "exec", "name": "web-0", "subresource": "exec", "ports": [22], "commands": [{"program": "sh", "args": []}]}))
	v.action == "allow"
	not verdict(t.k8s(t.alice, "", portforward("staging", ["22"]))).action == "block"
}

# --- writes by machines -----------------------------------------------------------------------------------------

test_machine_write_in_staging_allowed if {
	every verb in ["create", "update", "patch", "delete"] {
		v := verdict(t.k8s(t.bot, "", {"verb": verb, "api_group": "apps", "resource": "deployments", "name": "web"}))
		v.action == "allow"
		t.codes(v) == {"k8s.write_allowed"}
	}
}

test_machine_write_in_production_blocked if {
	v := verdict(t.k8s(t.bot, "", {"verb": "patch", "api_group": "apps", "resource": "deployments", "name": "web", "namespace": "prod"}))
	v.reasons == [{
		"code": "k8s.machine_prod_write",
		"message": "deploy-agent is a machine identity and may not patch deployments/web in namespace prod: it is production. Ship the change through the deployment pipeline.",
	}]
}

test_machine_delete_in_production_blocked_not_approved if {
	inp := t.k8s(t.bot, "production", {"verb": "delete", "name": "web-0", "namespace": "web"})
	count(data.pamgate.kubernetes.approve) == 1 with input as inp
	v := verdict(inp)
	v.action == "block"
	t.codes(v) == {"k8s.machine_prod_write"}
}

test_human_write_in_production_allowed if {
	v := verdict(t.k8s(t.alice, "", {"verb": "patch", "api_group": "apps", "resource": "deployments", "name": "web", "namespace": "prod"}))
	v.action == "allow"
}

# --- RBAC -------------------------------------------------------------------------------------------------------

test_rbac_change_needs_two_security_approvals if {
	v := verdict(t.k8s(t.alice, "", {"verb": "create", "api_group": "rbac.authorization.k8s.io", "resource": "rolebindings", "name": "x"}))
	v.action == "approve"
	v.reasons == [{
		"code": "k8s.rbac_change_needs_approval",
		"message": "create of rolebindings/x in namespace staging changes who may do what and needs 2 approvals from security.",
	}]
	v.approval == {"groups": ["security"], "min_approvals": 2, "ttl_s": 3600}
}

test_rbac_delete_in_production_merges_approvals if {
	v := verdict(t.k8s(t.alice, "", {
		"verb": "delete", "api_group": "rbac.authorization.k8s.io", "resource": "rolebindings",
		"name": "x", "namespace": "prod",
	}))
	v.action == "approve"
	t.codes(v) == {"k8s.prod_delete_needs_approval", "k8s.rbac_change_needs_approval"}
	v.approval == {"groups": ["security", "sre"], "min_approvals": 2, "ttl_s": 900}
}

test_rbac_read_allowed if {
	v := verdict(t.k8s(t.alice, "", {"verb": "list", "api_group": "rbac.authorization.k8s.io", "resource": "roles"}))
	v.action == "allow"
}

test_malformed_namespace_counts_as_production if {
	v := verdict(t.k8s(t.alice, "", {"verb": "delete", "name": "web-0", "namespace": null}))
	v.action == "approve"
}

# --- exec commands ----------------------------------------------------------------------------------------------

exec_cmd(commands) := {"verb": "exec", "subresource": "exec", "name": "web-0", "command": ["sh"], "commands": commands}

test_exec_destructive_blocked if {
	v := verdict(t.k8s(t.alice, "", exec_cmd([{"program": "rm", "args": ["-rf", "/"], "sudo": false}])))
	v.action == "block"
	t.codes(v) == {"k8s.exec_destructive"}
}

test_exec_without_commands_blocked if {
	v := verdict(t.k8s(t.alice, "", exec_cmd([])))
	v.action == "block"
	t.codes(v) == {"k8s.exec_unchecked"}
}

test_exec_plain_command_allowed_for_people if {
	v := verdict(t.k8s(t.alice, "", exec_cmd([{"program": "echo", "args": ["hi"], "sudo": false}])))
	v.action == "allow"
	t.codes(v) == {"k8s.exec_allowed"}
}
