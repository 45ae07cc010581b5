// Every SSH request pamgate decides, as the policy's `command` (docs/policy-contract.md, "command for ssh") and
// the text approvers see. Approval grants are keyed by the fingerprint: a hash of exactly what was asked (for an
// exec, the command line byte for byte), so approving `rm -rf /srv/a` never approves `rm -rf /srv/b`.
import { createHash } from "node:crypto";
import type { CommandRequest } from "../../pipeline/pipeline.js";
import type { ParsedLine } from "./command-line.js";
import type { SftpOperation } from "./sftp.js";

function request(command: Record<string, unknown>, text: string): CommandRequest {
  const fingerprint = `ssh:${createHash("sha256").update(text).digest("hex")}`;
  return { command, text, fingerprint };
}

export const sshRequest = {
  session: () => request({ request: "session" }, "open a session channel"),

  env: (name: string) => request({ request: "env", name }, `set environment variable ${name}`),

  pty: (term: string, cols: number, rows: number) =>
    request({ request: "pty", term, cols, rows }, `allocate a terminal (${term})`),

  shell: (pty: boolean, term: string | null) =>
    request({ request: "shell", pty, term }, pty ? "interactive shell" : "shell without a terminal"),

  /** An exec the shell parser understood. */
  exec: (line: string, parsed: ParsedLine, pty: boolean) =>
    request(
      {
        request: "exec",
        line,
        commands: parsed.commands,
        redirects: parsed.redirects,
        sudo: parsed.sudo,
        features: parsed.features,
        transfer: parsed.transfer,
        pty,
      },
      line,
    ),

  /** An exec the parser refused: policy sees no commands (and the adapter blocks it whatever policy says). */
  unparsedExec: (line: string, pty: boolean) =>
    request(
      { request: "exec", line, commands: [], redirects: [], sudo: false, features: [], transfer: null, pty },
      line,
    ),

  subsystem: (name: string) => request({ request: "subsystem", subsystem: name }, `subsystem ${name}`),

  sftp: (op: SftpOperation) => {
    const command: Record<string, unknown> = {
      request: "sftp",
      op: op.op,
      path: op.path,
      direction: op.direction,
      mutating: op.mutating,
    };
    if (op.target !== undefined) command.target = op.target;
    if (op.flags !== undefined) command.flags = op.flags;
    if (op.extension !== undefined) command.extension = op.extension;
    const flags = op.flags?.length ? ` (${op.flags.join(",")})` : "";
    const target = op.target !== undefined ? ` → ${op.target}` : "";
    return request(command, `sftp ${op.extension ?? op.op} ${op.path}${target}${flags}`);
  },

  x11: (singleConnection: boolean) =>
    request({ request: "x11", single_connection: singleConnection }, "X11 forwarding"),

  agentForward: () => request({ request: "agent_forward" }, "SSH agent forwarding"),

  /** local: a direct-tcpip / direct-streamlocal channel; remote: a tcpip-forward / streamlocal-forward request. */
  portForward: (
    direction: "local" | "remote",
    where: { host?: string; port?: number; socket_path?: string },
  ) =>
    request(
      { request: "port_forward", direction, ...where },
      `${direction} port forwarding to ${where.socket_path ?? `${where.host}:${where.port}`}`,
    ),

  channel: (type: string) =>
    request({ request: "channel", channel_type: type }, `open a channel of type ${type}`),
};
