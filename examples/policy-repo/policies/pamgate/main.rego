# The entrypoint pamgate evaluates for every command: pamgate/main/verdict. The input and the verdict are
# specified in pamgate's docs/policy-contract.md; this is a small policy to start a repository from:
#
#   - PostgreSQL reads are allowed, with the columns in data.config.masked_columns masked for everyone outside
#     data.config.pii_readers;
#   - writes are allowed, except on resources labelled env=production, where only data.config.writers may write;
#   - everything else (other statement kinds, SSH, Kubernetes) is blocked: pamgate's policy is default-deny.
#
# Build it with the restricted capabilities.json: a builtin the wasm target lacks then fails in CI, not at run
# time. Arrays in the verdict are sorted (wasm builds sets in no particular order).
package pamgate.main

cfg := data.config

category := object.get(input.command, "category", "unknown")

member_of(groups) if {
	some g in input.identity.groups
	groups[g]
}

# --- block ------------------------------------------------------------------------------------------------------

deny contains {
	"code": "example.production_write",
	"message": concat("", [
		"writes to production database ", input.resource.name,
		" are reserved to the groups ", concat(", ", sort({g | cfg.writers[g]})),
	]),
} if {
	input.protocol == "postgres"
	category == "write"
	input.resource.labels.env == "production"
	not member_of(cfg.writers)
}

# --- mask -------------------------------------------------------------------------------------------------------

mask contains {"field": column, "strategy": strategy} if {
	input.protocol == "postgres"
	some column in object.get(input.command, "columns", [])
	strategy := cfg.masked_columns[column]
	not member_of(cfg.pii_readers)
}

# --- allow ------------------------------------------------------------------------------------------------------

allowed_categories := {"read", "write", "transaction", "session"}

allow contains {"code": "example.allowed", "message": concat("", [category, " statements are allowed"])} if {
	input.protocol == "postgres"
	allowed_categories[category]
}

# --- verdict: block > mask > allow > default deny -----------------------------------------------------------

default verdict := {
	"action": "block",
	"reasons": [{"code": "policy.default_deny", "message": "no rule of this policy allows this command"}],
	"mask": [],
	"approval": null,
}

verdict := {
	"action": "block",
	"reasons": sort(deny),
	"mask": [],
	"approval": null,
} if {
	count(deny) > 0
} else := {
	"action": "mask",
	"reasons": sort({{"code": "example.masked", "message": concat("", [m.field, " is masked"])} | some m in mask}),
	"mask": sort(mask),
	"approval": null,
} if {
	count(mask) > 0
	count(allow) > 0
} else := {
	"action": "allow",
	"reasons": sort(allow),
	"mask": [],
	"approval": null,
} if {
	count(allow) > 0
}
