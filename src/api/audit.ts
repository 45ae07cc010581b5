// /v1/audit/decisions and /v1/sessions/…: the audit trail for the web console and anyone with an auditor's token
// — decisions searched newest first, a session's transcript and terminal recordings, a recording exported in its
// open format (asciicast v2, or the transcript's JSON lines). Reading the audit trail needs listeners.api.
// audit_groups (default approvals.admin_groups).
//
// Where it reads (AuditSource, built by the gateway): the PostgreSQL sink's table when one is configured — every
// replica's records, up to the shipping delay — else this gateway's own spool (every worker's). The answer says
// which ("source").
import type { FastifyPluginAsync } from "fastify";
import type { SpoolRecord } from "../audit/record.js";
import { loadRecording, recordingFile } from "../audit/replay.js";
import {
  type DecisionQuery,
  type DecisionSearch,
  InvalidSearchError,
  loadCast,
  loadSessionView,
  MAX_LIMIT,
} from "../audit/search.js";
import type { TokenVerifier } from "../identity/verifier.js";
import { authenticate, identityOf, type Rights } from "./auth.js";
import { ApiError } from "./errors.js";
import { bearerAuth, errorResponses } from "./schemas.js";

export interface AuditSource {
  search: DecisionSearch;
  /** The records holding a session's recordings (a fresh pass each call). */
  sessionRecords(sessionId: string): () => AsyncIterable<SpoolRecord>;
  /** For the answer's `source`. */
  kind: "spool" | "postgres";
  close?(): Promise<void>;
}

export interface AuditRoutesOptions {
  verifier: TokenVerifier;
  rights: Rights;
  source: AuditSource;
}

/** Session ids are UUIDs here, but anything printable and short is looked up as given. */
const SESSION_ID = "^[A-Za-z0-9._:-]{1,200}$";

const sessionParams = {
  type: "object",
  required: ["id"],
  additionalProperties: false,
  properties: { id: { type: "string", pattern: SESSION_ID, description: "The session id." } },
} as const;

interface SearchQuerystring {
  identity?: string;
  resource?: string;
  protocol?: string;
  action?: string;
  reason?: string;
  since?: string;
  until?: string;
  q?: string;
  session?: string;
  limit: number;
  before?: string;
}

function date(name: string, value: string | undefined): Date | undefined {
  if (value === undefined || value === "") return undefined;
  const d = new Date(value);
  if (Number.isNaN(d.getTime()))
    throw new ApiError(
      400,
      "invalid_request",
      `${name} must be a date and time (ISO 8601), not ${JSON.stringify(value)}`,
    );
  return d;
}

const nonEmpty = (v: string | undefined) => (v === undefined || v === "" ? undefined : v);

export const auditRoutes: FastifyPluginAsync<AuditRoutesOptions> = async (app, options) => {
  const { rights, source } = options;
  app.addHook("onClose", async () => source.close?.());
  app.addHook("onRequest", authenticate(options.verifier));
  app.addHook("preHandler", async (request) => rights.assertAuditor(identityOf(request)));

  const search = async (query: DecisionQuery) => {
    try {
      return await source.search.searchDecisions(query);
    } catch (err) {
      if (err instanceof InvalidSearchError) throw new ApiError(400, "invalid_request", err.message);
      throw err;
    }
  };

  app.get<{ Querystring: SearchQuerystring }>(
    "/v1/audit/decisions",
    {
      schema: {
        tags: ["audit"],
        summary: "Search decisions, newest first",
        description:
          "Every filter is optional and they combine. `identity` matches the requester or any link of the " +
          "delegation chain; `q` is a case-insensitive substring of the command; `since` is inclusive, `until` " +
          "exclusive. Page with `before` = the previous answer's `next_cursor`.",
        security: bearerAuth,
        querystring: {
          type: "object",
          additionalProperties: false,
          properties: {
            identity: { type: "string", maxLength: 512 },
            resource: { type: "string", maxLength: 512 },
            protocol: { type: "string", maxLength: 64 },
            action: { type: "string", enum: ["", "allow", "mask", "block", "approve"] },
            reason: { type: "string", maxLength: 256 },
            since: { type: "string", maxLength: 64 },
            until: { type: "string", maxLength: 64 },
            q: { type: "string", maxLength: 4096 },
            session: { type: "string", maxLength: 200 },
            limit: { type: "integer", minimum: 1, maximum: MAX_LIMIT, default: 100 },
            before: { type: "string", maxLength: 4096 },
          },
        },
        response: errorResponses(400, 401, 403),
      },
    },
    async (request) => {
      const q = request.query;
      return search({
        identity: nonEmpty(q.identity),
        resource: nonEmpty(q.resource),
        protocol: nonEmpty(q.protocol),
        action: nonEmpty(q.action),
        reason: nonEmpty(q.reason),
        since: date("since", q.since),
        until: date("until", q.until),
        q: nonEmpty(q.q),
        sessionId: nonEmpty(q.session),
        limit: q.limit,
        before: nonEmpty(q.before),
      });
    },
  );

  app.get<{ Params: { id: string } }>(
    "/v1/sessions/:id",
    {
      schema: {
        tags: ["audit"],
        summary: "A session: its transcript, its terminal recordings with their command index, its decisions",
        security: bearerAuth,
        params: sessionParams,
        response: errorResponses(400, 401, 403, 404),
      },
    },
    async (request) => {
      const { id } = request.params;
      const [view, decisions] = await Promise.all([
        loadSessionView(source.sessionRecords(id), id),
        search({ sessionId: id, limit: MAX_LIMIT }),
      ]);
      if (!view && decisions.decisions.length === 0)
        throw new ApiError(
          404,
          "not_found",
          `no recording and no decision of session ${id} in the ${source.kind}`,
        );
      return {
        session_id: id,
        transcript: view?.transcript ?? null,
        terminals: view?.terminals ?? [],
        decisions: decisions.decisions,
        source: source.kind,
      };
    },
  );

  app.get<{ Params: { id: string }; Querystring: { terminal: number; download?: string } }>(
    "/v1/sessions/:id/cast",
    {
      schema: {
        tags: ["audit"],
        summary: "A terminal recording as an asciicast v2 file",
        security: bearerAuth,
        params: sessionParams,
        querystring: {
          type: "object",
          required: ["terminal"],
          additionalProperties: false,
          properties: {
            terminal: { type: "integer", minimum: 0, description: "The n of the recording <session>/<n>." },
            download: { type: "string", enum: ["0", "1"] },
          },
        },
        produces: ["application/x-asciicast"],
        response: errorResponses(400, 401, 403, 404),
      },
    },
    async (request, reply) => {
      const terminal = `${request.params.id}/${request.query.terminal}`;
      const cast = await loadCast(source.sessionRecords(request.params.id), terminal);
      if (cast === null) throw new ApiError(404, "not_found", `no terminal recording ${terminal}`);
      if (request.query.download === "1")
        reply.header("content-disposition", `attachment; filename="${terminal.replace("/", "-")}.cast"`);
      return reply
        .type("application/x-asciicast; charset=utf-8")
        .header("cache-control", "no-store")
        .send(cast);
    },
  );

  app.get<{ Params: { id: string } }>(
    "/v1/sessions/:id/transcript.jsonl",
    {
      schema: {
        tags: ["audit"],
        summary: "A session's transcript in its JSON-lines format (header, then one entry per line)",
        security: bearerAuth,
        params: sessionParams,
        produces: ["application/x-ndjson"],
        response: errorResponses(400, 401, 403, 404),
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      const rec = await loadRecording(source.sessionRecords(id)(), id);
      if (!rec || rec.format === "asciicast-v2")
        throw new ApiError(404, "not_found", `no transcript of session ${id}`);
      return reply
        .type("application/x-ndjson; charset=utf-8")
        .header("content-disposition", `attachment; filename="${id}.transcript.jsonl"`)
        .header("cache-control", "no-store")
        .send(recordingFile(rec));
    },
  );
};
