// Forwarding a decided request to the cluster as the gateway, impersonating the requester, and the response back:
// as it came, or through the Secret masker (mask.ts) when the outcome masks. Streamed both ways (a watch is a
// response that never ends), with backpressure.
//
// What pamgate changes on the way up: the client's Authorization goes (the gateway's own credentials replace it),
// Impersonate-* headers are set (the client's were refused before), hop-by-hop headers go, and for a masked request
// the Accept header loses protobuf (the masker reads JSON) and Accept-Encoding is dropped (it reads plain bytes).
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from "node:http";
import { request } from "node:https";
import { pipeline } from "node:stream";
import { errorText } from "../../util/errors.js";
import type { Logger } from "../../util/log.js";
import type { ValueMasker } from "../../util/mask-strategies.js";
import { createMaskStream, maskableContentEncoding, maskableContentType } from "./mask.js";
import { kubeReason } from "./reasons.js";
import type { Decided } from "./server.js";
import { sendStatus } from "./status.js";

/** Headers that describe one connection, not the request (RFC 9110 §7.6.1), and those pamgate replaces. */
const DROPPED_REQUEST_HEADERS = new Set([
  "authorization",
  "connection",
  "keep-alive",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "host",
]);
const DROPPED_RESPONSE_HEADERS = new Set(["connection", "keep-alive", "transfer-encoding", "trailer"]);

/** The headers for the cluster: the client's, less what pamgate replaces, plus credentials and impersonation. */
export function upstreamHeaders(
  req: IncomingMessage,
  d: Decided,
  credentials: OutgoingHttpHeaders | undefined,
  masking: boolean,
): OutgoingHttpHeaders {
  const h: OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(req.headers)) {
    if (v === undefined || DROPPED_REQUEST_HEADERS.has(k)) continue;
    h[k] = v;
  }
  if (masking) {
    h.accept = jsonOnly(req.headers.accept);
    delete h["accept-encoding"];
  }
  if (d.body) h["content-length"] = d.body.length;
  return { ...h, ...credentials, ...d.impersonation };
}

/** An Accept header without protobuf: the JSON alternatives the client offered, or plain JSON. */
export function jsonOnly(accept: string | undefined): string {
  if (!accept) return "application/json";
  const kept = accept
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s && !s.toLowerCase().startsWith("application/vnd.kubernetes.protobuf"));
  return kept.length > 0 ? kept.join(", ") : "application/json";
}

export async function forward(
  req: IncomingMessage,
  res: ServerResponse,
  d: Decided,
  masker: ValueMasker,
  log: Logger,
): Promise<void> {
  const masking = d.outcome.action === "mask";
  const opts = await d.cluster.upstream.requestOptions();
  const headers = upstreamHeaders(req, d, opts.headers as OutgoingHttpHeaders, masking);
  const started = performance.now();
  await new Promise<void>((resolve) => {
    const up = request(
      { ...opts, method: req.method, path: d.cluster.upstream.path(d.url), headers },
      (upRes) => {
        const code = upRes.statusCode ?? 502;
        const out: OutgoingHttpHeaders = {};
        for (const [k, v] of Object.entries(upRes.headers))
          if (v !== undefined && !DROPPED_RESPONSE_HEADERS.has(k)) out[k] = v;
        if (d.outcome.approvalId)
          out.warning = `299 pamgate "allowed under approval ${d.outcome.approvalId}"`;
        const finish = (bytes: number, error?: string) => {
          d.session.transcript({
            event: "response",
            decision_id: d.outcome.decision.decision_id,
            code,
            bytes,
            ms: Math.round(performance.now() - started),
            ...(masking ? { masked: true } : {}),
            ...(error ? { error } : {}),
          });
          resolve();
        };
        let bytes = 0;
        upRes.on("data", (c: Buffer) => {
          bytes += c.length;
        });
        if (!masking) {
          res.writeHead(code, out);
          pipeline(upRes, res, (err) => finish(bytes, err ? errorText(err) : undefined));
          return;
        }
        const type = upRes.headers["content-type"];
        if (!maskableContentType(type) || !maskableContentEncoding(upRes.headers["content-encoding"])) {
          // Fail closed: what cannot be masked is not passed.
          upRes.resume();
          sendStatus(res, 502, [
            kubeReason(
              "k8s.unmaskable_response",
              `the cluster answered with ${type ?? "no content type"}${upRes.headers["content-encoding"] ? ` (${upRes.headers["content-encoding"]})` : ""}, which pamgate cannot mask; the response is withheld`,
            ),
          ]);
          finish(0, "unmaskable response withheld");
          return;
        }
        delete out["content-length"]; // masked values change the length
        res.writeHead(code, out);
        const mask = createMaskStream(d.outcome.mask, {
          masker,
          resourceIsSecrets: d.info.resource === "secrets" && d.info.api_group === "",
        });
        pipeline(upRes, mask, res, (err) => {
          if (err) log.warn({ session: d.session.ctx.id }, `masked response cut: ${errorText(err)}`);
          finish(bytes, err ? errorText(err) : undefined);
        });
      },
    );
    up.on("error", (err) => {
      log.warn({ session: d.session.ctx.id }, `cluster ${d.cluster.entry.resource.name}: ${errorText(err)}`);
      if (!res.headersSent)
        sendStatus(res, 502, [
          kubeReason(
            "k8s.upstream_error",
            `pamgate cannot reach cluster ${d.cluster.entry.resource.name}: ${errorText(err)}`,
          ),
        ]);
      else res.destroy();
      resolve();
    });
    // The client going away ends the upstream request too (a watch kubectl stopped).
    res.on("close", () => up.destroy());
    if (d.body) up.end(d.body);
    else req.pipe(up);
  });
}
