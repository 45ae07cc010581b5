package system.log_test

import data.pamgate.testing as t

marker := "[redacted by pamgate: secret]"

event(inp) := {"decision_id": "d1", "path": "pamgate/main/verdict", "input": inp, "result": {"action": "allow"}}

ssh_line(line) := event(t.ssh(t.alice, "staging", t.exec(line, [t.cmd("x", [])])))

test_email_always_erased if {
	m := data.system.log.mask with input as event(t.pg(t.alice, "", {}))
	m == {"/input/identity/email"}
}

test_null_email_left_alone if {
	m := data.system.log.mask with input as event(t.pg(t.bot, "", {}))
	m == set()
}

test_secret_command_line_replaced if {
	every line in [
		"PGPASSWORD=hunter2 psql -h db",
		"mysql --password=hunter2",
		"curl -H 'Authorization: Bearer abc' https://x",
		"export API_KEY=abc",
		"sshpass -p hunter2 ssh host",
	] {
		m := data.system.log.mask with input as ssh_line(line)
		m == {
			"/input/identity/email",
			"/input/command/commands",
			{"op": "upsert", "path": "/input/command/line", "value": marker},
		}
	}
}

test_plain_command_line_kept if {
	m := data.system.log.mask with input as ssh_line("systemctl status app")
	m == {"/input/identity/email"}
}

test_only_ssh_lines_are_inspected if {
	inp := object.union(t.k8s(t.bot, "", {}), {"command": {"line": "password=x"}})
	m := data.system.log.mask with input as event(inp)
	m == set()
}
