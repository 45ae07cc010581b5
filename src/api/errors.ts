// Every error the control-plane API answers has the same shape, {"error": {"code", "message"}}: a stable code
// clients can key on and one line a person can act on. Token problems are 401 with the TokenError code,
// approval refusals carry the ApprovalError code and its status, bad input fastify refused is 400 naming the
// field, and anything unexpected is a 500 that says only where to look — the details, never a stack trace in
// the answer, go to the gateway log with the request id.
import type { FastifyError, FastifyReply, FastifyRequest } from "fastify";
import { APPROVAL_ERROR_STATUS, ApprovalError } from "../approvals/errors.js";
import { TokenError } from "../identity/errors.js";

export interface ErrorBody {
  error: { code: string; message: string };
}

/** A refusal of the API itself (rights, input it checks by hand). */
export class ApiError extends Error {
  override readonly name = "ApiError";
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** fastify's own error codes for bad requests, and what we call them. */
const FASTIFY_CODES: Record<string, string> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: "unsupported_media_type",
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: "invalid_request",
  FST_ERR_CTP_BODY_TOO_LARGE: "payload_too_large",
  FST_ERR_CTP_EMPTY_JSON_BODY: "invalid_json",
  FST_ERR_CTP_INVALID_JSON_BODY: "invalid_json",
  FST_ERR_VALIDATION: "invalid_request",
};

/** Quotes a value for an RFC 7235 auth-param: no quotes, backslashes or control characters inside. */
function authParam(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: stripping them is the point
  return text.replace(/["\\\u0000-\u001f\u007f]/g, "'").slice(0, 300);
}

export function sendError(reply: FastifyReply, status: number, code: string, message: string): FastifyReply {
  const body: ErrorBody = { error: { code, message } };
  return reply.code(status).type("application/json; charset=utf-8").send(body);
}

export function errorHandler(err: FastifyError | Error, request: FastifyRequest, reply: FastifyReply): void {
  if (err instanceof TokenError) {
    // RFC 6750: a request without a token gets the bare challenge, a bad token "invalid_token".
    const challenge =
      err.code === "malformed" && request.headers.authorization === undefined
        ? 'Bearer realm="pamgate"'
        : `Bearer realm="pamgate", error="invalid_token", error_description="${authParam(err.toString())}"`;
    reply.header("www-authenticate", challenge);
    sendError(reply, 401, err.code, err.message);
    return;
  }
  if (err instanceof ApprovalError) {
    sendError(reply, APPROVAL_ERROR_STATUS[err.code] ?? 400, err.code, err.message);
    return;
  }
  if (err instanceof ApiError) {
    sendError(reply, err.statusCode, err.code, err.message);
    return;
  }
  const fastifyError = err as FastifyError;
  const status = fastifyError.statusCode;
  if (typeof status === "number" && status >= 400 && status < 500) {
    // A bad request fastify itself refused: validation, content type, size, JSON. Its message is readable.
    const code = FASTIFY_CODES[fastifyError.code] ?? "invalid_request";
    const message =
      code === "unsupported_media_type"
        ? `the body must be JSON (content-type: application/json), not ${JSON.stringify(request.headers["content-type"] ?? "")}`
        : err.message;
    sendError(reply, status, code, message);
    return;
  }
  request.log.error(
    { err: { message: err.message, stack: err.stack, code: fastifyError.code }, reqId: request.id },
    "api: request failed unexpectedly",
  );
  sendError(
    reply,
    500,
    "internal_error",
    `the request failed unexpectedly; the gateway log has the details (request id ${request.id})`,
  );
}

export function notFoundHandler(request: FastifyRequest, reply: FastifyReply): void {
  sendError(
    reply,
    404,
    "no_such_route",
    `no route ${request.method} ${request.url.split("?")[0]}; GET /openapi.json lists the API`,
  );
}
