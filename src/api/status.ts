// Status of the gateway: every component's status and the policy bundle in use (authenticated), liveness and
// readiness (not authenticated: orchestrators probe them without a token, and they reveal nothing but "up", each
// component's state and the reasons it is not ready — the components' details are only in /v1/status).
//
// Readiness is the status model's (src/status/status.ts): ready when no component is not_ready or error. The
// gateway's components come from its StatusRegistry; the API adds two checks of its own, `store` (the store
// answers a query) and `gateway` (the optional ready() callback).
import type { FastifyPluginAsync } from "fastify";
import { ApprovalError } from "../approvals/errors.js";
import type { ApprovalService } from "../approvals/service.js";
import type { DecisionEngine } from "../decision/engine.js";
import type { TokenVerifier } from "../identity/verifier.js";
import {
  type ComponentStatus,
  notReadyReasons,
  StatusRegistry,
  type StatusSnapshot,
  summarize,
} from "../status/status.js";
import type { Queryable } from "../store/store.js";
import { authenticate } from "./auth.js";
import { bearerAuth, errorResponses, statusSnapshotSchema } from "./schemas.js";

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
  /** The gateway's components (engine, bundle sources, audit, verifier, listeners…). Default: the engine alone. */
  status?: StatusRegistry;
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

/** A registry holding only the engine, for an API built without the gateway's registry (tests, tools). */
function engineOnly(engine: DecisionEngine): StatusRegistry {
  const registry = new StatusRegistry();
  registry.register("engine", () => engine.componentStatus());
  return registry;
}

export const statusRoutes: FastifyPluginAsync<StatusRoutesOptions> = async (app, options) => {
  const { engine, approvals } = options;
  const storeTimeoutMs = options.storeTimeoutMs ?? 2000;
  const registry = options.status ?? engineOnly(engine);

  /**
   * The registry's snapshot with the API's own checks added, and the reasons it is not ready: each blocking
   * component's message, the gateway's own reasons one by one.
   */
  async function currentStatus(): Promise<{ snapshot: StatusSnapshot; reasons: string[] }> {
    const components: Record<string, ComponentStatus> = { ...registry.snapshot().components };
    const store = await storeAnswers();
    components.store = store ? { state: "error", message: store } : { state: "ok" };
    const reasons = notReadyReasons(summarize(components));
    let extraReasons: string[] = [];
    if (options.ready) {
      try {
        const extra = await options.ready();
        if (!extra.ok) extraReasons = extra.reasons.length > 0 ? extra.reasons : ["not ready"];
      } catch (err) {
        extraReasons = [`readiness check failed: ${(err as Error).message}`];
      }
      components.gateway =
        extraReasons.length === 0
          ? { state: "ok" }
          : { state: "not_ready", message: extraReasons.join("; ") };
      reasons.push(...extraReasons); // one by one, as the check gave them
    }
    return { snapshot: summarize(components), reasons };
  }

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
    "/v1/status",
    {
      onRequest: authenticate(options.verifier),
      schema: {
        tags: ["status"],
        summary: "Every component's status, with details",
        security: bearerAuth,
        response: { 200: { $ref: "StatusSnapshot#" }, ...errorResponses(401) },
      },
    },
    async () => (await currentStatus()).snapshot,
  );

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
    required: ["status", "reasons", "state", "ready", "components"],
    properties: {
      status: { type: "string", enum: ["ready", "not_ready"] },
      reasons: {
        type: "array",
        items: { type: "string" },
        description:
          "Why it is not ready (the message of each not_ready or error component); empty when ready.",
      },
      revision: { type: ["string", "null"] },
      state: statusSnapshotSchema.properties.state,
      ready: statusSnapshotSchema.properties.ready,
      components: {
        ...statusSnapshotSchema.properties.components,
        description: "Each component's state and message (the details are in GET /v1/status).",
      },
    },
  } as const;

  app.get(
    "/readyz",
    {
      schema: {
        tags: ["status"],
        summary: "Readiness: no component is not_ready or error (no authentication)",
        response: { 200: readiness, 503: readiness },
      },
    },
    async (request, reply) => {
      const { snapshot, reasons } = await currentStatus();
      if (!snapshot.ready) request.log.debug({ reasons }, "api: not ready");
      // Without the details: this answer needs no token.
      const components = Object.fromEntries(
        Object.entries(snapshot.components).map(([name, { state, message }]) => [name, { state, message }]),
      );
      return reply.code(snapshot.ready ? 200 : 503).send({
        status: snapshot.ready ? "ready" : "not_ready",
        reasons,
        revision: engine.revision,
        state: snapshot.state,
        ready: snapshot.ready,
        components,
      });
    },
  );
};
