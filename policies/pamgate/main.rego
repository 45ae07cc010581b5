# The aggregator: the bundle's entrypoint `pamgate/main/verdict` (docs/policy-contract.md).
#
# The protocol packages each contribute four partial sets, every rule guarded by input.protocol:
#   deny    {code, message}                                  -> action "block"
#   approve {code, message, groups, min_approvals, ttl_s}    -> action "approve"
#   mask    {field, strategy, code, message}                 -> action "mask"
#   allow   {code, message}                                  -> action "allow"
# Precedence: block > approve > mask > allow; nothing matched is a block (policy.default_deny). The verdict always
# has all four keys, and every array in it is sorted (wasm emits sets in no particular order), so OPA and the wasm
# build give equal answers.
package pamgate.main

import data.pamgate.kubernetes
import data.pamgate.postgres
import data.pamgate.ssh

# The four sets of the input's protocol package. A package without one of them (ssh has no mask rules), or an
# unknown protocol, gives the empty set: `else := set()` catches the undefined reference. (Selecting one package
# rather than unioning all three is also what keeps the wasm evaluation cheap: no set copies.)
deny := postgres.deny if {
	input.protocol == "postgres"
} else := ssh.deny if {
	input.protocol == "ssh"
} else := kubernetes.deny if {
	input.protocol == "kubernetes"
} else := set()

approve := postgres.approve if {
	input.protocol == "postgres"
} else := ssh.approve if {
	input.protocol == "ssh"
} else := kubernetes.approve if {
	input.protocol == "kubernetes"
} else := set()

mask := postgres.mask if {
	input.protocol == "postgres"
} else := ssh.mask if {
	input.protocol == "ssh"
} else := kubernetes.mask if {
	input.protocol == "kubernetes"
} else := set()

allow := postgres.allow if {
	input.protocol == "postgres"
} else := ssh.allow if {
	input.protocol == "ssh"
} else := kubernetes.allow if {
	input.protocol == "kubernetes"
} else := set()

# --- verdict ----------------------------------------------------------------------------------------------------

# Only reached when even the default-deny message below cannot be built (no or an unknown protocol).
default verdict := {
	"action": "block",
	"reasons": [{
		"code": "policy.default_deny",
		"message": "no policy rule allows this command, so it is blocked; ask your security team for an allow rule.",
	}],
	"mask": [],
	"approval": null,
}

verdict := {
	"action": "block",
	"reasons": sort({reason_of(r) | some r in deny}),
	"mask": [],
	"approval": null,
} if {
	count(deny) > 0
} else := {
	"action": "approve",
	"reasons": sort({reason_of(a) | some a in approve}),
	# Kept on an approval so the command runs masked once it is approved.
	"mask": masks,
	"approval": merged_approval,
} if {
	count(approve) > 0
} else := {
	# An approval rule fired, but its approver config is incomplete (merged_approval is undefined): fail closed.
	"action": "block",
	"reasons": [{
		"code": "policy.invalid_approval",
		"message": "this command needs approval, but the approver configuration (groups, min_approvals, ttl_s) is incomplete; ask your security team to fix it.",
	}],
	"mask": [],
	"approval": null,
} if {
	count(approve) > 0
} else := {
	"action": "mask",
	"reasons": sort({reason_of(m) | some m in mask}),
	"mask": masks,
	"approval": null,
} if {
	count(mask) > 0
} else := {
	"action": "allow",
	"reasons": sort({reason_of(r) | some r in allow}),
	"mask": [],
	"approval": null,
} if {
	count(allow) > 0
} else := {
	"action": "block",
	"reasons": [{
		"code": "policy.default_deny",
		"message": concat("", [
			"no policy rule allows this ", summary,
			", so it is blocked; ask your security team for an allow rule.",
		]),
	}],
	"mask": [],
	"approval": null,
}

reason_of(x) := {"code": x.code, "message": x.message}

# Several approvals merge into one: any of their groups may approve, the strictest count and the shortest grant win.
# Undefined unless every approval is complete.
merged_approval := {
	"groups": sort({g | some a in approve; some g in a.groups}),
	"min_approvals": max({a.min_approvals | some a in approve}),
	"ttl_s": min({a.ttl_s | some a in approve}),
} if {
	every a in approve {
		count(a.groups) > 0
		a.min_approvals >= 1
		a.ttl_s >= 1
	}
}

# One entry per field. Two rules asking different strategies for the same field get "redact", the strictest.
mask_strategies := {f: {m.strategy | some m in mask; m.field == f} | some m0 in mask; f := m0.field}

masks := sort([{"field": f, "strategy": strictest(strategies)} | some f, strategies in mask_strategies])

strictest(strategies) := s if {
	count(strategies) == 1
	some s in strategies
} else := "redact"

# The default-deny message names the command; one of these is defined for each protocol.
summary := postgres.summary if {
	input.protocol == "postgres"
} else := ssh.summary if {
	input.protocol == "ssh"
} else := kubernetes.summary if {
	input.protocol == "kubernetes"
}
