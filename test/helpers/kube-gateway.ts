// A gateway with a Kubernetes listener in front of a real kube-apiserver (test/helpers/kube-apiserver.ts: etcd and
// kube-apiserver built from the pinned release, RBAC on, an audit log), for the Kubernetes adapter's tests and
// bench:kubernetes. The gateway reaches the cluster as the apiserver's admin (a client certificate in
// system:masters, which may impersonate); users reach the gateway with kubectl and a kubeconfig from
// `pamgate kubeconfig` (buildKubeconfig), their OIDC token read from $PAMGATE_TOKEN.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { GatewayConfig } from "../../src/config/schema.js";
import type { GatewayExtras } from "../../src/gateway/gateway.js";
import { buildKubeconfig } from "../../src/proxy/kubernetes/kubeconfig.js";
import { type RunResult, run, startTestGateway, type TestGateway } from "./gateway.js";
import { type KubeApiServer, kubectlBin, startKubeApiServer } from "./kube-apiserver.js";

export interface KubeTestGateway extends TestGateway {
  api: KubeApiServer;
  /** https://127.0.0.1:<port> of the gateway's Kubernetes listener. */
  kubeUrl: string;
  cluster: string;
  /** A kubeconfig for the gateway (token from $PAMGATE_TOKEN). */
  kubeconfigPath: string;
  /** Runs the real kubectl through the gateway with `token`. */
  kubectl(token: string, args: string[], opts?: { input?: string }): Promise<RunResult>;
  /** Environment for kubectl through the gateway with `token`. */
  kubectlEnv(token: string): NodeJS.ProcessEnv;
}

export async function startKubeTestGateway(
  overrides: (base: GatewayConfig) => Partial<GatewayConfig> = () => ({}),
  extras: GatewayExtras = {},
): Promise<KubeTestGateway> {
  const api = await startKubeApiServer();
  try {
    const serving = api.issueServingCert("pamgate-gateway");
    const cluster = "main-cluster";
    const tg = await startTestGateway((_db, base) => {
      const kube: GatewayConfig = {
        ...base,
        listeners: {
          ...base.listeners,
          kubernetes: {
            host: "127.0.0.1",
            port: 0,
            tls: { cert_file: serving.certPath, key_file: serving.keyPath },
          },
        },
        resources: [
          ...base.resources,
          {
            name: cluster,
            kind: "kubernetes",
            labels: { env: "staging" },
            upstream: { kubeconfig: api.adminKubeconfigPath },
          },
        ],
      };
      return { ...kube, ...overrides(kube) };
    }, extras);
    const port = tg.gw.listeners.kubernetes?.port as number;
    const kubeUrl = `https://127.0.0.1:${port}`;
    const kubeconfigPath = join(tg.dir, "kubeconfig");
    writeFileSync(kubeconfigPath, buildKubeconfig({ server: kubeUrl, cluster, caPem: api.caPem }));
    const kubectlEnv = (token: string): NodeJS.ProcessEnv => ({
      ...process.env,
      KUBECONFIG: kubeconfigPath,
      // kubectl's discovery cache, per gateway (not the user's ~/.kube/cache).
      KUBECACHEDIR: join(tg.dir, "kube-cache"),
      PAMGATE_TOKEN: token,
    });
    return {
      ...tg,
      api,
      kubeUrl,
      cluster,
      kubeconfigPath,
      kubectlEnv,
      kubectl: (token, args, opts = {}) => run(kubectlBin(), args, opts.input, kubectlEnv(token)),
      async stop() {
        await tg.stop();
        await api.stop();
      },
    };
  } catch (err) {
    await api.stop();
    throw err;
  }
}
