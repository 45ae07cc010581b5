# Input builders shared by the policy tests (not part of the bundle: only test/policies loads it).
package pamgate.testing

now := {"rfc3339": "2026-11-26T08:00:01.5Z", "ns": 1795680001500000000}

session := {"id": "test-session", "client_addr": "127.0.0.1", "started_at": "2026-11-26T08:00:00Z", "approval_id": null}

# --- identities -------------------------------------------------------------------------------------------------

alice := {
	"sub": "alice", "iss": "https://idp.example.com", "email": "alice@example.com",
	"groups": ["engineering"], "client_id": null,
	"actors": [{"sub": "alice", "iss": "https://idp.example.com"}],
}

# A bot with its own token (client credentials): identity.client_id is the machine client.
bot := {
	"sub": "deploy-agent", "iss": "https://idp.example.com", "email": null,
	"groups": [], "client_id": "deploy-agent",
	"actors": [{"sub": "deploy-agent", "client_id": "deploy-agent"}],
}

# ci-bot acting for alice (RFC 8693 token exchange): alice's subject, the bot in the chain.
delegated := {
	"sub": "alice", "iss": "https://idp.example.com", "email": "alice@example.com",
	"groups": ["engineering"], "client_id": "ci-bot",
	"actors": [{"sub": "alice"}, {"sub": "ci-bot", "client_id": "ci-bot"}],
}

# The machine is only visible in the chain: identity.client_id is some non-machine relay.
delegated_via_relay := {
	"sub": "alice", "iss": "https://idp.example.com", "email": "alice@example.com",
	"groups": ["engineering"], "client_id": "relay",
	"actors": [{"sub": "alice"}, {"sub": "ops-agent", "client_id": "ops-agent"}, {"sub": "relay", "client_id": "relay"}],
}

with_groups(identity, groups) := object.union(identity, {"groups": groups})

# --- inputs -----------------------------------------------------------------------------------------------------

make(protocol, name, env, identity, command) := {
	"protocol": protocol,
	"resource": {"name": name, "kind": protocol, "labels": labels(env)},
	"identity": identity,
	"command": command,
	"session": session,
	"now": now,
}

labels(env) := {} if env == ""

labels(env) := {"env": env} if env != ""

pg_defaults := {
	"statement": "select", "category": "read",
	"tables": {"read": ["public.orders"], "write": []},
	"columns": [], "functions": [], "has_where": true, "fingerprint": "fp", "param_count": 0,
	"side_effects": [], "dynamic_sql": [], "views": [], "user_functions": [],
}

pg(identity, env, command) := make("postgres", "orders-db", env, identity, object.union(pg_defaults, command))

ssh(identity, env, command) := make("ssh", "web-1", env, identity, command)

# An exec request for a list of [program, args..., sudo] simple commands.
exec(line, commands) := {"request": "exec", "line": line, "commands": commands, "sudo": any_sudo(commands)}

any_sudo(commands) := count([c | some c in commands; c.sudo]) > 0

cmd(program, args) := {"program": program, "args": args, "sudo": false}

sudo_cmd(program, args) := {"program": program, "args": args, "sudo": true}

k8s_defaults := {
	"verb": "get", "api_group": "", "api_version": "v1", "resource": "pods", "subresource": "",
	"namespace": "staging", "name": "", "path": "/api/v1",
}

k8s(identity, env, command) := make("kubernetes", "main-cluster", env, identity, object.union(k8s_defaults, command))

# --- verdict helpers --------------------------------------------------------------------------------------------

codes(verdict) := {r.code | some r in verdict.reasons}
