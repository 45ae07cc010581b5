// `pamgate kubeconfig`: prints a kubeconfig that points kubectl at a cluster through pamgate's Kubernetes listener,
// with the user's OIDC token as the bearer credential (read from $PAMGATE_TOKEN at each kubectl run by default).
import { readFile } from "node:fs/promises";
import { buildKubeconfig } from "../proxy/kubernetes/kubeconfig.js";
import { CliError, parse } from "./args.js";

export const KUBECONFIG_USAGE = `usage: pamgate kubeconfig --server URL --cluster NAME [--ca-file PEM] [--namespace NS]
                          [--token-env VAR | --token TOKEN]
  --server URL      the gateway's Kubernetes listener (listeners.kubernetes.public_url), e.g. https://pamgate:6443
  --cluster NAME    the kubernetes resource to reach
  --ca-file PEM     the CA of the listener's certificate, embedded (omit if it is publicly trusted)
  --token-env VAR   read the access token from this variable at each kubectl run (default PAMGATE_TOKEN)
  --token TOKEN     embed the token instead (it expires with the token)
example: pamgate kubeconfig --server https://127.0.0.1:6443 --cluster main-cluster --ca-file ca.pem > kubeconfig
         PAMGATE_TOKEN=$(…) kubectl --kubeconfig kubeconfig get pods`;

export async function kubeconfigCommand(
  argv: string[],
  out = (s: string) => process.stdout.write(s),
): Promise<number> {
  const { values } = parse("kubeconfig", argv, {
    server: { type: "string" },
    cluster: { type: "string" },
    "ca-file": { type: "string" },
    namespace: { type: "string" },
    "token-env": { type: "string" },
    token: { type: "string" },
  });
  if (!values.server || !values.cluster) throw new CliError(KUBECONFIG_USAGE);
  if (values.token && values["token-env"])
    throw new CliError("kubeconfig: give --token or --token-env, not both");
  let server: URL;
  try {
    server = new URL(values.server);
  } catch {
    throw new CliError(`kubeconfig: --server "${values.server}" is not a URL`);
  }
  if (server.protocol !== "https:")
    throw new CliError("kubeconfig: --server must be https:// (the token is a bearer credential)");
  let caPem: string | undefined;
  if (values["ca-file"]) {
    try {
      caPem = await readFile(values["ca-file"], "utf8");
    } catch (err) {
      throw new CliError(`kubeconfig: cannot read --ca-file: ${(err as Error).message}`);
    }
    if (!caPem.includes("-----BEGIN CERTIFICATE-----"))
      throw new CliError(`kubeconfig: --ca-file ${values["ca-file"]} holds no PEM certificate`);
  }
  try {
    out(
      buildKubeconfig({
        server: values.server,
        cluster: values.cluster,
        ...(caPem ? { caPem } : {}),
        ...(values.token ? { token: values.token } : {}),
        ...(values["token-env"] ? { tokenEnv: values["token-env"] } : {}),
        ...(values.namespace ? { namespace: values.namespace } : {}),
      }),
    );
  } catch (err) {
    throw new CliError(`kubeconfig: ${(err as Error).message}`);
  }
  return 0;
}
