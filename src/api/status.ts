// Status of the gateway: the policy bundle in use (authenticated), liveness and readiness (not authenticated:
// orchestrators probe them without a token, and they reveal nothing but "up" and the reasons it is not ready).
import type { FastifyPluginAsync } from "fastify";
import { ApprovalError } from "../approvals/errors.js";
import type { ApprovalService } from "../approvals/service.js";
import type { DecisionEngine } from "../decision/engine.js";
import type { TokenVerifier } from "../identity/verifier.js";
import type { Queryable } from "../store/store.js";
import { authenticate } from "./auth.js";
import { bearerAuth, errorResponses } from "./schemas.js";

export interface ReadinessCheck {
  ok: boolean;
  reasons: string[];
}

export interface StatusRoutesOptions {
  verifier: TokenVerifier;
  engine: DecisionEngine;
  approvals: ApprovalService;
  /** When given, readiness runs `SELECT 1` on it; otherwise it reads a request id that cannot exist. */
  store?: Pick<Queryable, "query">;
  /** Further readiness conditions of the gateway (listeners up, …), merged with the built-in ones. */
  ready?: () => ReadinessCheck | Promise<ReadinessCheck>;
  /** How long the store may take to answer the readiness probe. Default 2 s. */
  storeTimeoutMs?: number;
}

/** The nil UUID: a well-formed id no request ever has. */
const NO_SUCH_REQUEST = "00000000-0000-0000-0000-000000000000";

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export const statusRoutes: FastifyPluginAsync<StatusRoutesOptions> = async (app, options) => {
  const { engine, approvals } = options;
  const storeTimeoutMs = options.storeTimeoutMs ?? 2000;

  async function storeAnswers(): Promise<string | null> {
    try {
      if (options.store) {
        await withTimeout(options.store.query("SELECT 1"), storeTimeoutMs, "the store");
      } else {
        await withTimeout(approvals.get(NO_SUCH_REQUEST), storeTimeoutMs, "the store");
      }
      return null;
    } catch (err) {
      if (err instanceof ApprovalError && err.code === "not_found") return null; // it answered: no such row
      return `the store does not answer: ${(err as Error).message}`;
    }
  }

  app.get(
    "/v1/status/bundle",
    {
      onRequest: authenticate(options.verifier),
      schema: {
        tags: ["status"],
        summary: "The policy bundle in use",
        security: bearerAuth,
        response: {
          200: {
            type: "object",
            required: ["revision", "loaded_at", "source", "last_error", "activations"],
            properties: {
              revision: {
                type: ["string", "null"],
                description: "null: no bundle loaded (every command is blocked)",
              },
              loaded_at: { type: ["string", "null"], format: "date-time" },
              source: { type: ["string", "null"], description: "The file, directory or URL it came from." },
              last_error: {
                description:
                  "Why the last candidate bundle was rejected (the active one stayed); null after a load.",
                anyOf: [
                  { type: "null" },
                  {
                    type: "object",
                    required: ["message", "at"],
                    properties: { message: { type: "string" }, at: { type: "string", format: "date-time" } },
                  },
                ],
              },
              activations: { type: "integer", description: "Bundles activated since start." },
            },
          },
          ...errorResponses(401),
        },
      },
    },
    async () => engine.status(),
  );

  app.get(
    "/healthz",
    {
      schema: {
        tags: ["status"],
        summary: "Liveness: the process answers (no authentication)",
        response: {
          200: {
            type: "object",
            required: ["status"],
            properties: { status: { type: "string", enum: ["ok"] } },
          },
        },
      },
    },
    async () => ({ status: "ok" }),
  );

  const readiness = {
    type: "object",
    required: ["status", "reasons"],
    properties: {
      status: { type: "string", enum: ["ready", "not_ready"] },
      reasons: {
        type: "array",
        items: { type: "string" },
        description: "Why it is not ready; empty when ready.",
      },
      revision: { type: ["string", "null"] },
    },
  } as const;

  app.get(
    "/readyz",
    {
      schema: {
        tags: ["status"],
        summary: "Readiness: a policy bundle is loaded and the store answers (no authentication)",
        response: { 200: readiness, 503: readiness },
      },
    },
    async (request, reply) => {
      const reasons: string[] = [];
      const bundle = engine.status();
      if (bundle.revision === null) {
        reasons.push(
          bundle.last_error
            ? `no policy bundle is loaded (the last one was rejected: ${bundle.last_error.message})`
            : "no policy bundle is loaded yet",
        );
      }
      const store = await storeAnswers();
      if (store) reasons.push(store);
      if (options.ready) {
        try {
          const extra = await options.ready();
          if (!extra.ok) reasons.push(...(extra.reasons.length > 0 ? extra.reasons : ["not ready"]));
        } catch (err) {
          reasons.push(`readiness check failed: ${(err as Error).message}`);
        }
      }
      if (reasons.length > 0) request.log.debug({ reasons }, "api: not ready");
      return reply
        .code(reasons.length === 0 ? 200 : 503)
        .send({ status: reasons.length === 0 ? "ready" : "not_ready", reasons, revision: bundle.revision });
    },
  );
};
