# Kubernetes: one decision per API request (the attributes of a SubjectAccessReview).
package pamgate.kubernetes

import data.pamgate.common
import data.pamgate.ssh

cfg := data.config.kubernetes

verb := object.get(input.command, "verb", "unknown")

api_group := object.get(input.command, "api_group", "")

resource := object.get(input.command, "resource", "unknown")

subresource := object.get(input.command, "subresource", "")

namespace := object.get(input.command, "namespace", "")

name := object.get(input.command, "name", "")

# Production: a resource labelled env=production, a namespace listed in data.config.kubernetes.production_namespaces,
# or cluster scope (nodes, cluster roles, CRDs, ... affect every namespace, so they count as production).
production if common.production_resource

production if cfg.production_namespaces[namespace]

production if namespace == ""

production if not is_string(namespace) # a malformed namespace fails safe

read if cfg.read_verbs[verb]

write if cfg.write_verbs[verb]

# Plain object access ("", log, status, scale) versus tunnels into a pod (exec, attach, portforward). Any other
# subresource (proxy, token, eviction, ephemeralcontainers, ...) is allowed by no rule.
plain if cfg.plain_subresources[subresource]

tunnel if cfg.tunnel_subresources[subresource]

secrets_privileged if common.member_of_any(cfg.privileged_groups)

# For messages: "deployments/web in namespace prod", "nodes/node-1/status (cluster scope)", "pods/web-0 in ...".
scope_desc := concat("", ["in namespace ", namespace]) if {
	namespace != ""
} else := "(cluster scope)"

target := concat("", [concat("/", [x | some x in [resource, name, subresource]; x != ""]), " ", scope_desc])

pod_target := concat("", [resource, "/", name, " ", scope_desc])

# For the default-deny message.
summary := concat("", ["kubernetes ", verb, " of ", target])

# --- block ------------------------------------------------------------------------------------------------------

# Machines change only non-production namespaces. (A tunnel is a create too; k8s.machine_exec covers it.)
deny contains common.reason("k8s.machine_prod_write", msg) if {
	input.protocol == "kubernetes"
	common.is_machine
	write
	not tunnel
	production
	msg := concat("", [
		common.who, " is a machine identity and may not ", verb, " ", target,
		": it is production. Ship the change through the deployment pipeline.",
	])
}

# Machines never open exec/attach/port-forward tunnels.
deny contains common.reason("k8s.machine_exec", msg) if {
	input.protocol == "kubernetes"
	common.is_machine
	tunnel
	msg := concat("", [
		common.who, " is a machine identity and may not open an interactive session (", subresource,
		") into ", pod_target, "; use the API instead.",
	])
}

# Some ports are never forwarded into a pod, whoever asks (data.config.kubernetes.never_forwarded_ports: port →
# why). pamgate decides each port a port-forward stream names with `ports: [port]`, so this holds for kubectl too
# (which names its ports only in the streams); a request naming such a port in ?ports= is blocked outright.
deny contains common.reason("k8s.portforward_port_blocked", msg) if {
	input.protocol == "kubernetes"
	subresource == "portforward"
	some port in object.get(input.command, "ports", [])
	is_number(port)
	why := cfg.never_forwarded_ports[format_int(port, 10)]
	msg := concat("", ["port-forward to port ", format_int(port, 10), " of ", pod_target, " is not allowed: ", why, "."])
}

# exec runs a command in a container: its argv (sh -c "…" looked into, as for an SSH exec) gets the same checks.
deny contains common.reason("k8s.exec_destructive", msg) if {
	input.protocol == "kubernetes"
	subresource == "exec"
	some what in ssh.destructive
	msg := concat("", [
		"blocked as destructive: ", what, ". Run it through your change process, not through the gateway.",
	])
}

# An exec whose command could not be split into commands cannot be checked, so it is not run.
deny contains common.reason("k8s.exec_unchecked", msg) if {
	input.protocol == "kubernetes"
	subresource == "exec"
	count(object.get(input.command, "commands", [])) == 0
	msg := concat("", ["the exec into ", pod_target, " has no command pamgate could check, so it is not run."])
}

# --- approve ----------------------------------------------------------------------------------------------------

approve contains common.approval("k8s.prod_delete_needs_approval", msg, approval) if {
	input.protocol == "kubernetes"
	cfg.delete_verbs[verb]
	production
	approval := cfg.approvals.production_delete
	msg := concat("", [
		verb, " of ", target, " deletes production objects and needs approval from ",
		common.approvers(approval), ".",
	])
}

approve contains common.approval("k8s.prod_exec_needs_approval", msg, approval) if {
	input.protocol == "kubernetes"
	common.is_human
	tunnel
	production
	approval := cfg.approvals.production_exec
	msg := concat("", [
		subresource, " into ", pod_target, " opens a session in production and needs approval from ",
		common.approvers(approval), ".",
	])
}

# Changing Roles and RoleBindings changes who may do what, anywhere.
approve contains common.approval("k8s.rbac_change_needs_approval", msg, approval) if {
	input.protocol == "kubernetes"
	write
	cfg.rbac_api_groups[api_group]
	approval := cfg.approvals.rbac_change
	msg := concat("", [
		verb, " of ", target, " changes who may do what and needs ", format_int(approval.min_approvals, 10),
		" approvals from ", common.approvers(approval), ".",
	])
}

# --- mask -------------------------------------------------------------------------------------------------------

# Secret values are masked for everyone outside the privileged groups; one reason covers all masked fields.
mask contains common.masking(field, strategy, "k8s.secret_masked", secret_mask_message) if {
	input.protocol == "kubernetes"
	read
	resource == "secrets"
	api_group == ""
	not secrets_privileged
	some field, strategy in cfg.secret_fields
}

secret_mask_message := concat("", [
	"secret values (", concat(", ", sort([f | some f, _ in cfg.secret_fields])), ") are redacted outside group ",
	common.group_names(cfg.privileged_groups), ".",
])

# --- allow ------------------------------------------------------------------------------------------------------

allow contains common.reason("k8s.read_allowed", concat("", [verb, " of ", target, " is allowed."])) if {
	input.protocol == "kubernetes"
	read
	plain
}

# Machine writes in production are blocked by k8s.machine_prod_write.
allow contains common.reason("k8s.write_allowed", concat("", [verb, " of ", target, " is allowed."])) if {
	input.protocol == "kubernetes"
	write
	plain
}

allow contains common.reason("k8s.exec_allowed", concat("", [
	subresource, " into ", pod_target, " is allowed.",
])) if {
	input.protocol == "kubernetes"
	common.is_human
	tunnel
}
