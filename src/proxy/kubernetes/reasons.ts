// The reason codes the Kubernetes adapter gives itself (policy reasons are k8s.* too, from policies/pamgate/
// kubernetes.rego). Each refusal is sent to the client as a Kubernetes Status object naming the code — except
// k8s.portforward_port, found once the tunnel is open: the connection is closed and the transcript names it.
import { REQUEST_INFO_REASONS } from "./request-info.js";

export const KUBERNETES_REASONS = {
  ...REQUEST_INFO_REASONS,
  "k8s.unknown_cluster": "the request names a cluster (/clusters/<name>/…) that is not a kubernetes resource",
  "k8s.impersonation_refused":
    "the client sent Impersonate-* headers; pamgate impersonates the verified requester itself and refuses others",
  "k8s.body_too_large": "the request body is larger than listeners.kubernetes.max_body_bytes",
  "k8s.bad_json": "the request body of a write is not valid JSON",
  "k8s.unsupported_content_type":
    "the request body's content type is not one pamgate can inspect (JSON, JSON patch, merge patch, apply patch)",
  "k8s.protobuf_body": "a protobuf request body on a write; pamgate inspects JSON only",
  "k8s.mask_unsupported": "the policy masks a field pamgate cannot mask in this response",
  "k8s.unmaskable_response":
    "the response to a masked request is not JSON, so it cannot be masked and is cut",
  "k8s.upstream_error": "the cluster's API server could not be reached or failed mid-response",
  "k8s.auth_timeout":
    "the connection did not finish its TLS handshake and an authenticated request within listeners.kubernetes.auth_timeout_s (HTTP 408); it is closed",
  "k8s.portforward_port":
    "a port-forward stream (SPDY) named a port that was refused (each port is decided when a stream first names it: blocked, or its approval denied), or none: the tunnel was closed before the stream went on",
} as const satisfies Record<string, string>;

export type KubernetesReasonCode = keyof typeof KUBERNETES_REASONS;

export function kubeReason(code: KubernetesReasonCode, message: string) {
  return { code, message };
}
