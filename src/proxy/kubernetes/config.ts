// The Kubernetes adapter's configuration: listeners.kubernetes and resources[].upstream of kind kubernetes. The
// JSON Schemas are the source of truth; the TypeScript types are derived from them (TypeBox).
import { type Static, Type } from "@sinclair/typebox";
import { NonEmpty, Port } from "../../config/kit.js";
import { listenerBaseProperties } from "../adapter.js";
import { listenerLimitProperties } from "../limits.js";

export const KubernetesListenerSchema = Type.Object(
  {
    host: listenerBaseProperties.host,
    port: Port,
    /**
     * The listener's certificate and key. Required: kubectl speaks HTTPS, and the bearer token must never cross a
     * cleartext connection.
     */
    tls: Type.Object({ cert_file: NonEmpty, key_file: NonEmpty }, { additionalProperties: false }),
    /** The URL clients reach the listener at (for `pamgate kubeconfig`); default https://<host>:<port>. */
    public_url: Type.Optional(NonEmpty),
    /** Largest request body pamgate reads to decide a write, in bytes (default 3 MiB, Kubernetes' own limit). */
    max_body_bytes: Type.Optional(Type.Integer({ minimum: 1024, maximum: 64 * 1024 * 1024 })),
    /** Prefix of the Impersonate-User name pamgate sends upstream (default "": the identity's subject as is). */
    user_prefix: Type.Optional(Type.String()),
    /**
     * auth_timeout_s (TLS handshake and the first authenticated request, default 30) and
     * max_unauthenticated_connections (limits.ts).
     */
    ...listenerLimitProperties,
  },
  { additionalProperties: false },
);
export type KubernetesListenerConfig = Static<typeof KubernetesListenerSchema>;

export const KubernetesUpstreamSchema = Type.Object(
  {
    /**
     * A kubeconfig file holding the cluster's URL, its CA and the gateway's own credentials (loaded with
     * @kubernetes/client-node's KubeConfig). The identity in it must be allowed to impersonate users, groups and
     * the userextras pamgate sends; nothing else about it reaches the client.
     */
    kubeconfig: NonEmpty,
    /** The kubeconfig context to use (default: its current-context). */
    context: Type.Optional(NonEmpty),
  },
  { additionalProperties: false },
);
export type KubernetesUpstreamConfig = Static<typeof KubernetesUpstreamSchema>;
