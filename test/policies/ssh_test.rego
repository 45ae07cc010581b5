package pamgate.ssh_test

import data.pamgate.testing as t

verdict(inp) := v if {
	v := data.pamgate.main.verdict with input as inp
}

exec_verdict(identity, line, commands) := verdict(t.ssh(identity, "staging", t.exec(line, commands)))

destructive_codes := {"ssh.destructive"}

# --- exec -------------------------------------------------------------------------------------------------------

test_exec_allowed if {
	v := exec_verdict(t.alice, "journalctl -u app | tail", [t.cmd("tail", []), t.cmd("/bin/journalctl", ["-u", "app"])])
	v == {
		"action": "allow",
		"reasons": [{"code": "ssh.exec_allowed", "message": "running journalctl, tail is allowed."}],
		"mask": [],
		"approval": null,
	}
}

test_machine_exec_allowed if {
	v := exec_verdict(t.bot, "ls /srv", [t.cmd("ls", ["/srv"])])
	v.action == "allow"
}

test_unparsed_exec_blocked if {
	v := exec_verdict(t.alice, "cat <<EOF | sh", [])
	v.action == "block"
	t.codes(v) == {"ssh.unparsed_command"}
}

test_exec_without_commands_field_blocked if {
	v := verdict(t.ssh(t.alice, "staging", {"request": "exec", "line": "ls"}))
	t.codes(v) == {"ssh.unparsed_command"}
}

# --- destructive ------------------------------------------------------------------------------------------------

test_rm_rf_root_blocked if {
	v := exec_verdict(t.alice, "rm -rf /", [t.cmd("rm", ["-rf", "/"])])
	v == {
		"action": "block",
		"reasons": [{
			"code": "ssh.destructive",
			"message": "blocked as destructive: a recursive or forced rm of / deletes a system directory. Run it through your change process, not through the gateway.",
		}],
		"mask": [],
		"approval": null,
	}
}

test_rm_variants_blocked if {
	every args in [["-r", "/*"], ["-f", "//"], ["-Rf", "/etc/"], ["--recursive", "/usr"], ["-v", "--force", "/home"]] {
		v := exec_verdict(t.alice, "rm", [t.cmd("/bin/rm", args)])
		t.codes(v) == destructive_codes
	}
}

test_rm_harmless_allowed if {
	every args in [["-rf", "/tmp/build"], ["/etc"], ["-v", "/"], ["-rf", "./"]] {
		v := exec_verdict(t.alice, "rm", [t.cmd("rm", args)])
		v.action == "allow"
	}
}

test_destructive_programs_blocked if {
	every program in ["shutdown", "/sbin/reboot", "halt", "poweroff", "mkfs.ext4", "mkfs", "wipefs", "shred"] {
		v := exec_verdict(t.alice, program, [t.cmd(program, ["now"])])
		t.codes(v) == destructive_codes
	}
}

test_destructive_program_message if {
	v := exec_verdict(t.alice, "mkfs.xfs /dev/sdb1", [t.cmd("mkfs.xfs", ["/dev/sdb1"])])
	v.reasons[0].message == "blocked as destructive: mkfs.xfs formats a file system. Run it through your change process, not through the gateway."
}

test_destructive_subcommands_blocked if {
	every c in [t.cmd("systemctl", ["reboot"]), t.cmd("systemctl", ["--force", "poweroff"]), t.cmd("/sbin/init", ["0"])] {
		v := exec_verdict(t.alice, "x", [c])
		t.codes(v) == destructive_codes
	}
}

test_systemctl_restart_allowed if {
	v := exec_verdict(t.alice, "systemctl restart app", [t.cmd("systemctl", ["restart", "app"])])
	v.action == "allow"
}

test_dd_to_device_blocked if {
	v := exec_verdict(t.alice, "dd if=/dev/zero of=/dev/nvme0n1", [t.cmd("dd", ["if=/dev/zero", "of=/dev/nvme0n1"])])
	v.reasons == [{
		"code": "ssh.destructive",
		"message": "blocked as destructive: dd of=/dev/nvme0n1 overwrites a device. Run it through your change process, not through the gateway.",
	}]
}

test_dd_to_dev_null_allowed if {
	v := exec_verdict(t.alice, "dd if=/dev/sda of=/dev/null", [t.cmd("dd", ["if=/dev/sda", "of=/dev/null"])])
	v.action == "allow"
}

test_fork_bomb_blocked if {
	v := exec_verdict(t.alice, ":() { :|:& };:", [t.cmd(":", [])])
	t.codes(v) == destructive_codes
	contains(v.reasons[0].message, "fork bomb")
}

test_two_destructive_commands_two_reasons if {
	v := exec_verdict(t.alice, "reboot; halt", [t.cmd("reboot", []), t.cmd("halt", [])])
	count(v.reasons) == 2
}

# --- sudo -------------------------------------------------------------------------------------------------------

test_sudo_needs_approval if {
	v := exec_verdict(t.alice, "sudo systemctl restart app", [t.sudo_cmd("systemctl", ["restart", "app"])])
	v == {
		"action": "approve",
		"reasons": [{
			"code": "ssh.sudo_needs_approval",
			"message": "running systemctl under sudo needs approval from sre.",
		}],
		"mask": [],
		"approval": {"groups": ["sre"], "min_approvals": 1, "ttl_s": 900},
	}
}

test_sudo_flag_only_on_request if {
	v := verdict(t.ssh(t.alice, "staging", {
		"request": "exec", "line": "sudo -i", "sudo": true,
		"commands": [t.cmd("sudo", ["-i"])],
	}))
	v.action == "approve"
	v.reasons[0].message == "running the command under sudo needs approval from sre."
}

test_sudo_flag_only_on_command if {
	v := verdict(t.ssh(t.alice, "staging", {"request": "exec", "line": "sudo ls", "commands": [t.sudo_cmd("ls", [])]}))
	v.action == "approve"
}

test_machine_sudo_via_chain_needs_approval if {
	v := verdict(t.ssh(t.delegated_via_relay, "production", t.exec("sudo ls", [t.sudo_cmd("ls", [])])))
	v.action == "approve"
}

test_sudo_reboot_blocked_not_approved if {
	inp := t.ssh(t.alice, "production", t.exec("sudo reboot", [t.sudo_cmd("reboot", [])]))
	count(data.pamgate.ssh.approve) == 1 with input as inp
	v := verdict(inp)
	v.action == "block"
	t.codes(v) == destructive_codes
	v.approval == null
}

# --- shell, subsystem, port forwarding --------------------------------------------------------------------------

test_human_shell_allowed if {
	v := verdict(t.ssh(t.alice, "production", {"request": "shell"}))
	v.reasons == [{"code": "ssh.shell_allowed", "message": "an interactive shell for alice is allowed."}]
}

test_machine_shell_blocked if {
	every identity in [t.bot, t.delegated, t.delegated_via_relay] {
		v := verdict(t.ssh(identity, "staging", {"request": "shell"}))
		v.action == "block"
		t.codes(v) == {"ssh.shell_machine"}
	}
}

test_sftp_allowed if {
	every identity in [t.alice, t.bot] {
		v := verdict(t.ssh(identity, "staging", {"request": "subsystem", "subsystem": "sftp"}))
		v.reasons == [{"code": "ssh.subsystem_allowed", "message": "the sftp subsystem is allowed."}]
	}
}

test_other_subsystem_blocked if {
	v := verdict(t.ssh(t.alice, "staging", {"request": "subsystem", "subsystem": "netconf"}))
	v.reasons == [{"code": "ssh.subsystem_not_allowed", "message": "the netconf subsystem is not allowed; only sftp is."}]
}

test_port_forward_blocked if {
	v := verdict(t.ssh(t.alice, "staging", {"request": "port_forward"}))
	t.codes(v) == {"ssh.port_forward"}
}

test_unknown_request_default_deny if {
	v := verdict(t.ssh(t.alice, "staging", {"request": "teleport"}))
	v.reasons == [{
		"code": "policy.default_deny",
		"message": "no policy rule allows this ssh teleport request, so it is blocked; ask your security team for an allow rule.",
	}]
}

# --- channels and requests --------------------------------------------------------------------------------------

test_session_pty_allowed if {
	every req in [{"request": "session"}, {"request": "pty", "term": "xterm", "cols": 80, "rows": 24}] {
		verdict(t.ssh(t.bot, "production", req)).action == "allow"
	}
}

test_env_locale_allowed_others_blocked if {
	every name in ["LANG", "LC_ALL", "LC_CTYPE", "TERM"] {
		verdict(t.ssh(t.alice, "staging", {"request": "env", "name": name})).action == "allow"
	}
	every name in ["LD_PRELOAD", "PATH", "BASH_ENV"] {
		v := verdict(t.ssh(t.alice, "staging", {"request": "env", "name": name}))
		t.codes(v) == {"ssh.env_not_allowed"}
	}
}

test_x11_agent_forwarding_blocked if {
	t.codes(verdict(t.ssh(t.alice, "staging", {"request": "x11", "single_connection": false}))) == {"ssh.x11_forwarding"}
	t.codes(verdict(t.ssh(t.alice, "staging", {"request": "agent_forward"}))) == {"ssh.agent_forwarding"}
}

test_unknown_channel_blocked if {
	v := verdict(t.ssh(t.alice, "staging", {"request": "channel", "channel_type": "x-custom@example.com"}))
	v.reasons == [{"code": "ssh.channel_not_allowed", "message": "channels of type x-custom@example.com are not allowed."}]
}

fwd(direction, host, port) := {"request": "port_forward", "direction": direction, "host": host, "port": port}

test_forward_allowed_by_config if {
	v := verdict(t.ssh(t.alice, "staging", fwd("local", "127.0.0.1", 8080))) with data.config.ssh.allowed_local_forwards as {"127.0.0.1:8080": true}
	v.action == "allow"
	t.codes(v) == {"ssh.port_forward_allowed"}

	# not for another port, not remote, not for a machine
	t.codes(verdict(t.ssh(t.alice, "staging", fwd("local", "127.0.0.1", 22)))) == {"ssh.port_forward"} with data.config.ssh.allowed_local_forwards as {"127.0.0.1:8080": true}
	t.codes(verdict(t.ssh(t.alice, "staging", fwd("remote", "127.0.0.1", 8080)))) == {"ssh.port_forward"} with data.config.ssh.allowed_local_forwards as {"127.0.0.1:8080": true}
	t.codes(verdict(t.ssh(t.bot, "staging", fwd("local", "127.0.0.1", 8080)))) == {"ssh.port_forward"} with data.config.ssh.allowed_local_forwards as {"127.0.0.1:8080": true}
}

# --- sftp and scp -----------------------------------------------------------------------------------------------

sftp(op, path, mutating) := {"request": "sftp", "op": op, "path": path, "direction": "none", "mutating": mutating}

download_only_input(command) := object.union(t.ssh(t.alice, "staging", command), {"resource": {"name": "archive", "kind": "ssh", "labels": {"transfer": "download-only"}}})

test_sftp_allowed if {
	every cmd in [sftp("open", "/srv/app/log.txt", false), sftp("open", "/tmp/upload.bin", true), sftp("mkdir", "/tmp/x", true)] {
		verdict(t.ssh(t.alice, "staging", cmd)).action == "allow"
	}
}

test_sftp_download_only if {
	verdict(download_only_input(sftp("open", "/srv/data.csv", false))).action == "allow"
	every op in ["open", "remove", "mkdir", "rename", "setstat"] {
		v := verdict(download_only_input(sftp(op, "/srv/data.csv", true)))
		t.codes(v) == {"ssh.download_only"}
	}
	v := verdict(download_only_input(sftp("remove", "/srv/data.csv", true)))
	v.reasons[0].message == "archive is download-only: SFTP remove of /srv/data.csv would change it."
}

test_scp_upload_download_only if {
	up := object.union(t.exec("scp -t /srv", [t.cmd("scp", ["-t", "/srv"])]), {"transfer": {"direction": "upload", "paths": ["/srv"]}})
	t.codes(verdict(download_only_input(up))) == {"ssh.download_only"}
	down := object.union(t.exec("scp -f /srv/a", [t.cmd("scp", ["-f", "/srv/a"])]), {"transfer": {"direction": "download", "paths": ["/srv/a"]}})
	verdict(download_only_input(down)).action == "allow"
	verdict(t.ssh(t.alice, "staging", up)).action == "allow"
}

test_sftp_protected_paths if {
	t.codes(verdict(t.ssh(t.alice, "staging", sftp("open", "/etc/passwd", true)))) == {"ssh.sftp_protected_path"}
	rename := object.union(sftp("rename", "/tmp/x", true), {"target": "/usr/bin/ls"})
	t.codes(verdict(t.ssh(t.alice, "staging", rename))) == {"ssh.sftp_protected_path"}
	verdict(t.ssh(t.alice, "staging", sftp("open", "/etc/passwd", false))).action == "allow"
}

# --- masking the recording --------------------------------------------------------------------------------------

test_secret_file_output_masked_in_recording if {
	v := exec_verdict(t.alice, "cat /srv/app/.env", [t.cmd("cat", ["/srv/app/.env"])])
	v.action == "mask"
	v.mask == [{"field": "recording.output", "strategy": "redact"}]
	t.codes(v) == {"ssh.secret_output"}
	exec_verdict(t.alice, "cat /srv/app/README", [t.cmd("cat", ["/srv/app/README"])]).action == "allow"
}
