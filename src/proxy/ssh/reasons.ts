// The reason codes the SSH adapter gives itself (before or besides policy), in the form of
// src/decision/reasons.ts. The example policy's own ssh.* codes are documented in policies/README.md.
import type { Reason } from "../../decision/contract.js";

export const SSH_REASONS = {
  "ssh.command_unparsable":
    "the shell parser rejected the exec command line (a syntax error or a control character); nothing was run",
  "ssh.command_dynamic":
    'a program name in the command line is computed at run time ($CMD, $(…), bash -c "$X"), so what would run cannot be checked',
  "ssh.command_too_deep":
    "the command line nests shells (bash -c, eval, here-documents) deeper than pamgate follows, or its syntax (subshells, $(…), groups, && chains) deeper than listeners.ssh.max_command_nesting",
  "ssh.command_too_large": "the exec command line is longer than listeners.ssh.max_command_bytes",
  "ssh.command_not_utf8":
    "the exec command line is not valid UTF-8, so it cannot be parsed as the shell would read it",
  "ssh.channel_unknown": "the client opened a channel type pamgate does not relay",
  "ssh.not_relayed":
    "policy allowed it, but pamgate does not relay it (X11, agent forwarding, remote forwarding of Unix sockets)",
  "ssh.mask_unsupported":
    "SSH can mask only what is recorded (field recording.output), not what the client sees",
  "ssh.sftp_unknown_handle": "an SFTP request named a file handle that was not opened through pamgate",
} as const satisfies Record<string, string>;

export type SshReasonCode = keyof typeof SSH_REASONS;

export function sshReason(code: SshReasonCode, message: string): Reason {
  return { code, message };
}
