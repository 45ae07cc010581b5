# SSH: one decision per channel and request — session, env, pty, shell, exec, subsystem, sftp (each SFTP
# operation naming a path), x11, agent_forward, port_forward, and channels of unknown types (docs/policy-contract.md).
#
# Messages name programs (and, for destructive commands, the offending path or device), never the command line:
# lines can carry secrets, and the verdict is logged next to the (masked, see policies/system/log.rego) input.
package pamgate.ssh

import data.pamgate.common

cfg := data.config.ssh

request := object.get(input.command, "request", "unknown")

commands := object.get(input.command, "commands", [])

line := object.get(input.command, "line", "")

subsystem := object.get(input.command, "subsystem", "unknown")

# For the default-deny message.
summary := concat("", ["ssh ", request, " request"])

# The program of a simple command without its directory: "/sbin/reboot" -> "reboot".
base(program) := parts[count(parts) - 1] if parts := split(program, "/")

# "/" stays "/"; "/etc/" and "/etc" are the same path.
norm_path(p) := "/" if {
	trim_right(p, "/") == ""
} else := trim_right(p, "/")

# rm flags that make it recursive or forced: -r, -R, -f, -rf, -fr, -Rf, -vrf, --recursive, --force.
# (Plain string tests: regex.match recompiles its pattern on every call in wasm, ~6 µs each.)
rm_forceful(args) if {
	some a in args
	a in {"--recursive", "--force"}
}

rm_forceful(args) if {
	some a in args
	startswith(a, "-")
	not startswith(a, "--")
	some flag in ["r", "R", "f"]
	contains(a, flag)
}

# destructive: one description per destructive thing the command line does.
destructive contains concat("", [name, " ", why]) if {
	some c in commands
	name := base(c.program)
	why := cfg.destructive_programs[split(name, ".")[0]] # mkfs.ext4 is mkfs
}

destructive contains concat("", [name, " ", arg, " ", why]) if {
	some c in commands
	name := base(c.program)
	some arg in c.args
	why := cfg.destructive_subcommands[name][arg]
}

destructive contains concat("", ["a recursive or forced rm of ", target, " deletes a system directory"]) if {
	some c in commands
	base(c.program) == "rm"
	rm_forceful(c.args)
	some target in c.args
	cfg.protected_paths[norm_path(target)]
}

destructive contains concat("", ["dd ", arg, " overwrites a device"]) if {
	some c in commands
	base(c.program) == "dd"
	some arg in c.args
	startswith(arg, "of=/dev/")
	not cfg.dd_safe_targets[arg]
}

destructive contains "a fork bomb exhausts the host's processes" if {
	contains(replace(line, " ", ""), ":(){")
}

# The programs run under sudo, for the approval message.
sudo_programs contains base(c.program) if {
	some c in commands
	c.sudo == true
}

uses_sudo if input.command.sudo == true

uses_sudo if count(sudo_programs) > 0

sudo_desc := concat(", ", sort(sudo_programs)) if {
	count(sudo_programs) > 0
} else := "the command"

# --- block ------------------------------------------------------------------------------------------------------

deny contains common.reason("ssh.destructive", msg) if {
	input.protocol == "ssh"
	some what in destructive
	msg := concat("", [
		"blocked as destructive: ", what, ". Run it through your change process, not through the gateway.",
	])
}

# An exec request the adapter could not split into commands cannot be checked, so it is not run.
deny contains common.reason("ssh.unparsed_command", msg) if {
	input.protocol == "ssh"
	request == "exec"
	count(commands) == 0
	msg := "the command line could not be parsed into commands, so it cannot be checked."
}

# --- transfers: a resource labelled transfer=download-only takes no writes -------------------------------------

download_only if input.resource.labels.transfer == "download-only"

deny contains common.reason("ssh.download_only", msg) if {
	input.protocol == "ssh"
	download_only
	request == "sftp"
	input.command.mutating == true
	msg := concat("", [
		"", input.resource.name, " is download-only: SFTP ", input.command.op, " of ", input.command.path,
		" would change it.",
	])
}

deny contains common.reason("ssh.download_only", msg) if {
	input.protocol == "ssh"
	download_only
	request == "exec"
	input.command.transfer.direction == "upload"
	msg := concat("", ["", input.resource.name, " is download-only: scp uploads are refused."])
}

# Writes into system directories over SFTP (an upload replacing /etc/passwd is as destructive as rm).
deny contains common.reason("ssh.sftp_protected_path", msg) if {
	input.protocol == "ssh"
	request == "sftp"
	input.command.mutating == true
	some p in {input.command.path, object.get(input.command, "target", "")}
	some prefix in cfg.sftp_protected_prefixes
	startswith(p, prefix)
	msg := concat("", ["SFTP ", input.command.op, " under ", prefix, " is refused: it changes the system."])
}

# --- environment, forwarding ------------------------------------------------------------------------------------

env_allowed(name) if cfg.allowed_env[name]

env_allowed(name) if {
	some prefix in cfg.allowed_env_prefixes
	startswith(name, prefix)
}

deny contains common.reason("ssh.env_not_allowed", msg) if {
	input.protocol == "ssh"
	request == "env"
	not env_allowed(input.command.name)
	msg := concat("", [
		"environment variable ", input.command.name,
		" is not passed to the target (only locale and terminal settings are).",
	])
}

forward_allowed if {
	input.command.direction == "local"
	cfg.allowed_local_forwards[concat(":", [input.command.host, format_int(input.command.port, 10)])]
	common.is_human
}

deny contains common.reason("ssh.port_forward", msg) if {
	input.protocol == "ssh"
	request == "port_forward"
	not forward_allowed
	msg := "port forwarding is disabled: it would tunnel around the gateway. Register the target as its own resource."
}

deny contains common.reason("ssh.x11_forwarding", msg) if {
	input.protocol == "ssh"
	request == "x11"
	msg := "X11 forwarding is disabled: the target would reach into your display."
}

deny contains common.reason("ssh.agent_forwarding", msg) if {
	input.protocol == "ssh"
	request == "agent_forward"
	msg := "agent forwarding is disabled: the target could use your keys. pamgate logs in to targets itself."
}

deny contains common.reason("ssh.channel_not_allowed", msg) if {
	input.protocol == "ssh"
	request == "channel"
	msg := concat("", ["channels of type ", input.command.channel_type, " are not allowed."])
}

deny contains common.reason("ssh.shell_machine", msg) if {
	input.protocol == "ssh"
	request == "shell"
	common.is_machine
	msg := concat("", [
		common.who,
		" is a machine identity and may not open an interactive shell; send explicit commands (exec) instead.",
	])
}

deny contains common.reason("ssh.subsystem_not_allowed", msg) if {
	input.protocol == "ssh"
	request == "subsystem"
	not cfg.allowed_subsystems[subsystem]
	msg := concat("", [
		"the ", subsystem, " subsystem is not allowed; only ", common.group_names(cfg.allowed_subsystems),
		" is.",
	])
}

# --- approve ----------------------------------------------------------------------------------------------------

# sudo, by humans and machines alike: an agent may wait for a human's approval.
approve contains common.approval("ssh.sudo_needs_approval", msg, cfg.sudo_approval) if {
	input.protocol == "ssh"
	uses_sudo
	msg := concat("", [
		"running ", sudo_desc, " under sudo needs approval from ", common.approvers(cfg.sudo_approval), ".",
	])
}

# --- mask -------------------------------------------------------------------------------------------------------

# Reading a secret file: the client sees it, the recording keeps only how many bytes it was (recording.output is
# the one field SSH can mask).
secret_read contains a if {
	some c in commands
	cfg.file_readers[base(c.program)]
	some a in c.args
	some pattern in cfg.secret_file_patterns
	contains(a, pattern)
}

mask contains common.masking("recording.output", "redact", "ssh.secret_output", msg) if {
	input.protocol == "ssh"
	request == "exec"
	count(secret_read) > 0
	msg := concat("", ["the output of reading ", concat(", ", sort(secret_read)), " is not kept in the recording."])
}

# --- allow ------------------------------------------------------------------------------------------------------

allow contains common.reason("ssh.session_allowed", "a session channel is allowed.") if {
	input.protocol == "ssh"
	request == "session"
}

allow contains common.reason("ssh.env_allowed", msg) if {
	input.protocol == "ssh"
	request == "env"
	env_allowed(input.command.name)
	msg := concat("", ["environment variable ", input.command.name, " is passed."])
}

allow contains common.reason("ssh.pty_allowed", "a terminal is allowed.") if {
	input.protocol == "ssh"
	request == "pty"
}

allow contains common.reason("ssh.sftp_allowed", msg) if {
	input.protocol == "ssh"
	request == "sftp"
	msg := concat("", ["SFTP ", input.command.op, " is allowed."])
}

allow contains common.reason("ssh.port_forward_allowed", msg) if {
	input.protocol == "ssh"
	request == "port_forward"
	forward_allowed
	msg := concat("", ["forwarding to ", input.command.host, ":", format_int(input.command.port, 10), " is allowed."])
}

allow contains common.reason("ssh.exec_allowed", msg) if {
	input.protocol == "ssh"
	request == "exec"
	count(commands) > 0
	msg := concat("", [
		"running ", concat(", ", sort({base(c.program) | some c in commands})), " is allowed.",
	])
}

allow contains common.reason("ssh.shell_allowed", msg) if {
	input.protocol == "ssh"
	request == "shell"
	common.is_human
	msg := concat("", ["an interactive shell for ", common.who, " is allowed."])
}

allow contains common.reason("ssh.subsystem_allowed", msg) if {
	input.protocol == "ssh"
	request == "subsystem"
	cfg.allowed_subsystems[subsystem]
	msg := concat("", ["the ", subsystem, " subsystem is allowed."])
}
