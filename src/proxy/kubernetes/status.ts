// Refusals as the Kubernetes API itself answers them: a `Status` object (meta/v1) with the HTTP code, a reason
// kubectl understands (Forbidden, BadRequest, …) and the message it prints ("Error from server (Forbidden): …").
// pamgate's own reason codes ride in details.causes, so a client can tell a policy block from a cluster's RBAC.
import type { ServerResponse } from "node:http";
import type { Reason } from "../../decision/contract.js";

const REASON_BY_CODE: Record<number, string> = {
  400: "BadRequest",
  401: "Unauthorized",
  403: "Forbidden",
  404: "NotFound",
  408: "Timeout",
  413: "RequestEntityTooLarge",
  415: "UnsupportedMediaType",
  502: "InternalError",
  503: "ServiceUnavailable",
  504: "Timeout",
};

export function statusObject(code: number, reasons: readonly Reason[]): string {
  const message = `pamgate: ${reasons.map((r) => `${r.message} [${r.code}]`).join("; ")}`;
  return JSON.stringify({
    kind: "Status",
    apiVersion: "v1",
    metadata: {},
    status: "Failure",
    message,
    reason: REASON_BY_CODE[code] ?? "InternalError",
    details: { causes: reasons.map((r) => ({ reason: r.code, message: r.message })) },
    code,
  });
}

/** Sends a Status refusal (nothing else may have been written yet). */
export function sendStatus(res: ServerResponse, code: number, reasons: readonly Reason[]): void {
  const body = statusObject(code, reasons);
  res.writeHead(code, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(body),
    "cache-control": "no-store",
  });
  res.end(body);
}

/** The raw HTTP/1.1 response for a refused upgrade (exec, attach, port-forward), written on the socket. */
export function statusResponseText(code: number, reasons: readonly Reason[]): string {
  const body = statusObject(code, reasons);
  return [
    `HTTP/1.1 ${code} ${REASON_BY_CODE[code] ?? "Error"}`,
    "Content-Type: application/json",
    `Content-Length: ${Buffer.byteLength(body)}`,
    "Connection: close",
    "",
    body,
  ].join("\r\n");
}
