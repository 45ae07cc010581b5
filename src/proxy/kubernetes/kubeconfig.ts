// The kubeconfig a user points kubectl (or any client library) at to reach a cluster through pamgate: the server
// is the gateway's Kubernetes listener with the cluster named in the path, the CA is the listener's, and the
// credential is the user's OIDC access token — read at each kubectl run from an environment variable by a tiny
// exec credential plugin (`sh -c 'printf …'`), so a refreshed token needs no new kubeconfig; or inlined.
import { stringify } from "yaml";

export interface KubeconfigOptions {
  /** The listener's URL, e.g. https://pamgate.example:6443 (listeners.kubernetes.public_url). */
  server: string;
  /** The kubernetes resource (cluster) to reach. */
  cluster: string;
  /** PEM of the CA that signed the listener's certificate (omit when it is publicly trusted). */
  caPem?: string;
  /** Inline the token (it expires; prefer tokenEnv). */
  token?: string;
  /** Environment variable the token is read from at each run (default PAMGATE_TOKEN). */
  tokenEnv?: string;
  /** Default namespace of the context. */
  namespace?: string;
}

export function buildKubeconfig(o: KubeconfigOptions): string {
  const name = `pamgate-${o.cluster}`;
  const server = `${o.server.replace(/\/$/, "")}/clusters/${encodeURIComponent(o.cluster)}`;
  const env = o.tokenEnv ?? "PAMGATE_TOKEN";
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(env)) throw new Error(`"${env}" is not an environment variable name`);
  const user = o.token
    ? { token: o.token }
    : {
        exec: {
          apiVersion: "client.authentication.k8s.io/v1",
          command: "sh",
          args: [
            "-c",
            `test -n "$${env}" || { echo "pamgate: set ${env} to your OIDC access token" >&2; exit 1; }; ` +
              `printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"%s"}}' "$${env}"`,
          ],
          interactiveMode: "Never",
          provideClusterInfo: false,
        },
      };
  return stringify({
    apiVersion: "v1",
    kind: "Config",
    clusters: [
      {
        name,
        cluster: {
          server,
          ...(o.caPem ? { "certificate-authority-data": Buffer.from(o.caPem).toString("base64") } : {}),
        },
      },
    ],
    users: [{ name, user }],
    contexts: [
      { name, context: { cluster: name, user: name, ...(o.namespace ? { namespace: o.namespace } : {}) } },
    ],
    "current-context": name,
  });
}
