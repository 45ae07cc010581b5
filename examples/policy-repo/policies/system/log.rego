# Decision-log masking (entrypoint system/log/mask, as in OPA): pamgate applies it to every decision it records.
# The requester's email is personal data; sub and iss already say who asked.
package system.log

mask contains "/input/identity/email" if is_string(input.input.identity.email)
