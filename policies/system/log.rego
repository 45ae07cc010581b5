# Decision-log masking, the way OPA's own `system.log.mask` works (entrypoint `system/log/mask`).
#
# input is the decision-log event: input.input is the policy input, input.result the verdict. The rule yields
# JSON pointers to erase ("/input/identity/email") or {"op": "upsert", "path": ..., "value": ...} edits.
#
# What is masked, and why:
#   - /input/identity/email is always erased when present: it is personal data, and sub + iss already attribute
#     the decision to a person.
#   - an SSH command line containing a secret marker (data.config.log.secret_markers, matched case-insensitively:
#     "password=", "--password", "token=", ...) is replaced by data.config.log.redacted_marker, and its parsed
#     /input/command/commands are erased, since their args repeat the secret. The verdict stays: SSH reason
#     messages name programs, never arguments.
# PostgreSQL inputs need nothing here: they carry columns, functions and a fingerprint, never literal values.
package system.log

mask contains "/input/identity/email" if is_string(input.input.identity.email)

mask contains {
	"op": "upsert",
	"path": "/input/command/line",
	"value": data.config.log.redacted_marker,
} if secret_line

mask contains "/input/command/commands" if secret_line

secret_line if {
	input.input.protocol == "ssh"
	line := lower(input.input.command.line)
	some marker in data.config.log.secret_markers
	contains(line, marker)
}
