// The SSH adapter's configuration: listeners.ssh and resources[].upstream of kind ssh. The JSON Schemas are the
// source of truth; the TypeScript types are derived from them (TypeBox).
import { type Static, Type } from "@sinclair/typebox";
import { NonEmpty, Port } from "../../config/kit.js";
import { listenerBaseProperties } from "../adapter.js";
import { listenerLimitProperties } from "../limits.js";
import { MAX_VALID_SECONDS } from "./certificate.js";

export const SshListenerSchema = Type.Object(
  {
    // SSH encrypts its own transport, so the listener has no `tls`: the token travels inside the SSH
    // connection, and the opener is told the transport is secure.
    host: listenerBaseProperties.host,
    port: Port,
    /** The gateway's host key (OpenSSH private key file); clients pin it in known_hosts. */
    host_key_file: NonEmpty,
    /**
     * The certificate authority pamgate signs upstream user certificates with (an OpenSSH ed25519 or RSA private
     * key file). Targets trust its public key with sshd's TrustedUserCAKeys. Without it every resource needs a
     * `credentials.key_file`.
     */
    ca_key_file: Type.Optional(NonEmpty),
    /** Validity of each upstream certificate in seconds (default 120, at most 300). */
    certificate_ttl_s: Type.Optional(Type.Integer({ minimum: 10, maximum: MAX_VALID_SECONDS })),
    /** SSH user names that select a resource directly (otherwise `login@resource` or `resource`). */
    users: Type.Optional(Type.Record(Type.String({ minLength: 1 }), NonEmpty)),
    /** Largest exec command line accepted, in bytes (default 16 KiB; SSH packets above ~35 kB are refused by the transport). */
    max_command_bytes: Type.Optional(Type.Integer({ minimum: 256, maximum: 32 * 1024 })),
    /**
     * Syntax nesting of an exec command line (subshells, $(…), groups, chained && and ||) walked at most; deeper
     * lines are refused (ssh.command_too_deep). Default 500.
     */
    max_command_nesting: Type.Optional(Type.Integer({ minimum: 16, maximum: 1000 })),
    /** auth_timeout_s (seconds to authenticate, default 30) and max_unauthenticated_connections (limits.ts). */
    ...listenerLimitProperties,
    /**
     * Bind public keys to identities (default false): a client that signs with a key and then presents its token
     * has the key bound to the token's identity until the token expires; until then the key alone logs in as
     * that identity. See key-bindings.ts.
     */
    bind_keys: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type SshListenerConfig = Static<typeof SshListenerSchema>;

export const SshUpstreamSchema = Type.Object(
  {
    host: NonEmpty,
    port: Type.Optional(Port),
    /** The account pamgate logs in as (the certificate's principal). */
    user: NonEmpty,
    /**
     * The target's host keys, pinned: public key lines ("ssh-ed25519 AAAA…", as in known_hosts) or SHA256
     * fingerprints. Never trusted on first use.
     */
    host_keys: Type.Array(NonEmpty, { minItems: 1 }),
    /** "certificate" (default when listeners.ssh.ca_key_file is set) or "key" (credentials.key_file). */
    auth: Type.Optional(Type.Union([Type.Literal("certificate"), Type.Literal("key")])),
  },
  { additionalProperties: false },
);
export type SshUpstreamConfig = Static<typeof SshUpstreamSchema>;
