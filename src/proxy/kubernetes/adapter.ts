// The Kubernetes adapter as the gateway sees it (src/proxy/adapter.ts): its configuration schemas, that it masks
// Secret values in responses, and its listener.
import { defineAdapter } from "../adapter.js";
import { KubernetesListenerSchema, KubernetesUpstreamSchema } from "./config.js";
import { KUBERNETES_REASONS } from "./reasons.js";
import { KubernetesListener } from "./server.js";

export const kubernetesAdapter = defineAdapter({
  protocol: "kubernetes",
  listenerSchema: KubernetesListenerSchema,
  upstreamSchema: KubernetesUpstreamSchema,
  // The kubeconfig holds the gateway's credentials for the cluster.
  credentials: "optional",
  canMask: true,
  reasons: KUBERNETES_REASONS,
  createListener: (ctx) => new KubernetesListener(ctx),
});
