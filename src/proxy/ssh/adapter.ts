// The SSH adapter as the gateway sees it (src/proxy/adapter.ts): its configuration schemas, that it can mask only
// its own recordings (recording.output; what the client sees is never rewritten), and its listener.
import { defineAdapter } from "../adapter.js";
import { SshListenerSchema, SshUpstreamSchema } from "./config.js";
import { SSH_REASONS } from "./reasons.js";
import { SshListener } from "./server.js";

export const sshAdapter = defineAdapter({
  protocol: "ssh",
  listenerSchema: SshListenerSchema,
  upstreamSchema: SshUpstreamSchema,
  credentials: "optional",
  listenerFiles: ["host_key_file", "ca_key_file"],
  canMask: true,
  reasons: SSH_REASONS,
  createListener: (ctx) => new SshListener(ctx),
});
