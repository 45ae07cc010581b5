# Helpers shared by the protocol packages: who is asking, where, and how a rule's output is shaped.
#
# Everything here must stay wasm-safe (see policies/README.md): look things up in data by key, never scan
# large collections, and only call builtins listed in policies/capabilities.json.
package pamgate.common

# --- identity -------------------------------------------------------------------------------------------------

# A machine identity is any party in the delegation chain (or the OAuth client that obtained the token) whose
# client_id is a key of data.config.machine_clients. A bot acting on behalf of a human is a machine.
is_machine if data.config.machine_clients[input.identity.client_id]

is_machine if {
	some actor in input.identity.actors
	data.config.machine_clients[actor.client_id]
}

is_human if not is_machine

# Who is asking, for messages: "alice", or "ci-bot on behalf of alice" for a delegation chain (actors[0] is
# the original requester, the last actor presented the token).
default who := "the requester"

who := w if {
	n := count(input.identity.actors)
	n > 1
	w := concat("", [input.identity.actors[n - 1].sub, " on behalf of ", input.identity.actors[0].sub])
} else := input.identity.sub

# member_of_any(gmap) is true when one of the identity's groups is a key of gmap (an object used as a set).
member_of_any(gmap) if {
	some g in input.identity.groups
	gmap[g]
}

# group_names(gmap) names the groups of gmap (an object used as a set) for a message: "a or b".
group_names(gmap) := concat(" or ", sort([g | some g, _ in gmap]))

# --- resource ---------------------------------------------------------------------------------------------------

# The gateway config labels the target; `env: production` makes everything on it production.
production_resource if input.resource.labels.env == "production"

# --- rule output ------------------------------------------------------------------------------------------------

# reason(code, message) is the shape of deny and allow entries.
reason(code, message) := {"code": code, "message": message}

# approval(code, message, cfg) is the shape of approve entries; cfg is {groups, min_approvals, ttl_s} from data.
approval(code, message, cfg) := {
	"code": code,
	"message": message,
	"groups": cfg.groups,
	"min_approvals": cfg.min_approvals,
	"ttl_s": cfg.ttl_s,
}

# masking(field, strategy, code, message) is the shape of mask entries.
masking(field, strategy, code, message) := {
	"field": field,
	"strategy": strategy,
	"code": code,
	"message": message,
}

# approvers(cfg) names the approver groups of an approval config for a message.
approvers(cfg) := concat(" or ", sort(cfg.groups))
