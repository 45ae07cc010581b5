// The control-plane API: a fastify instance with one plugin per route group.
//
//   GET  /v1/approvals[?status=&limit=&offset=]   list (bearer token)
//   GET  /v1/approvals/events                      live changes, Server-Sent Events (bearer token)
//   GET  /v1/approvals/:id                         one request with its votes (bearer token)
//   POST /v1/approvals/:id/approve | /deny         vote as the token's identity, optional {"comment"}
//   GET  /v1/status                                every component's status (bearer token)
//   GET  /v1/status/bundle                         the policy bundle in use (bearer token)
//   GET  /healthz, /readyz                         liveness, readiness (no token)
//   GET  /metrics                                  Prometheus text (no token)
//   GET  /openapi.json                             the OpenAPI 3.1 document (no token)
//   GET  /v1/me                                    the caller's identity and rights (bearer token)
//   GET  /console/…                                the web console and its OIDC sign-in (docs/console.md)
//
// "bearer token" also accepts the console's session cookie (src/api/auth.ts).
//
// buildApi returns the instance unstarted: `await api.listen({ host, port })`, or `api.inject(…)` in tests;
// `api.close()` also stops the webhook notifier. docs/api.md describes the API for its users.
import fastifyCookie from "@fastify/cookie";
import Fastify, { type FastifyInstance, LogController } from "fastify";
import type { ApprovalService } from "../approvals/service.js";
import type { DecisionEngine } from "../decision/engine.js";
import type { TokenVerifier } from "../identity/verifier.js";
import { registry as sharedRegistry } from "../metrics.js";
import type { StatusRegistry } from "../status/status.js";
import type { Queryable } from "../store/store.js";
import { type Logger, silentLogger } from "../util/log.js";
import { approvalEventRoutes } from "./approval-events.js";
import { approvalRoutes } from "./approvals.js";
import { type AuditSource, auditRoutes } from "./audit.js";
import { Rights } from "./auth.js";
import { type ConsoleLoginOptions, consoleRoutes } from "./console.js";
import type { ConsoleAssets } from "./console-assets.js";
import { errorHandler, notFoundHandler } from "./errors.js";
import { metricsRoutes } from "./metrics.js";
import { isObservable } from "./observable.js";
import { openApiRoute, registerOpenApi } from "./openapi.js";
import { SHARED_SCHEMAS } from "./schemas.js";
import { type ReadinessCheck, statusRoutes } from "./status.js";
import { installBodyParsers, schemaErrorFormatter, validatorCompiler } from "./validation.js";
import { type WebhookConfig, WebhookNotifier } from "./webhook.js";

export { ObservableApprovalService } from "./observable.js";
export type { ReadinessCheck } from "./status.js";
export { slackMessage, type WebhookConfig, WebhookNotifier } from "./webhook.js";

export interface ApiDeps {
  verifier: TokenVerifier;
  /**
   * The gateway's approval service. For the webhook it must report new requests: pass an
   * ObservableApprovalService (the gateway constructs that class instead of ApprovalService).
   */
  approvals: ApprovalService;
  /** For GET /v1/status/bundle and readiness. */
  engine: DecisionEngine;
  /**
   * Who may approve or deny through the API at all, in addition to each request's own rule.groups. Omitted or
   * empty: anyone in a request's rule.groups.
   */
  approverGroups?: string[];
  /** Members may list and read every request. */
  adminGroups: string[];
  /** POST a Slack-compatible message for each new approval request. */
  webhook?: WebhookConfig;
  log?: Logger;
  /**
   * The gateway's components, for /readyz and /v1/status (register the engine in it as `engine`). Default: a
   * registry with the engine alone.
   */
  status?: StatusRegistry;
  /** Further readiness conditions, merged with the components' and "the store answers". */
  ready?: () => ReadinessCheck | Promise<ReadinessCheck>;
  /** The store, for readiness (`SELECT 1`); without it readiness reads through the approval service. */
  store?: Pick<Queryable, "query">;
  /** Largest request body, bytes. Default 64 KiB. */
  bodyLimit?: number;
  /** Who may search the audit trail and replay sessions (default: adminGroups). */
  auditGroups?: string[];
  /**
   * The rights object itself, instead of adminGroups/approverGroups/auditGroups: a gateway keeps it to change
   * the groups at a configuration reload (Rights.update).
   */
  rights?: Rights;
  /** The audit trail to search and replay (/v1/audit, /v1/sessions); absent: those routes are not served. */
  audit?: AuditSource;
  /** The web console: its built app and its OIDC sign-in. */
  console?: { assets?: () => Promise<ConsoleAssets>; login?: ConsoleLoginOptions };
}

const VERSION = "1";

export function buildApi(deps: ApiDeps): FastifyInstance {
  if (!Array.isArray(deps.adminGroups)) throw new Error("api: adminGroups must be a list of group names");
  const app = Fastify({
    ...(deps.log ? { loggerInstance: deps.log } : { logger: false }),
    bodyLimit: deps.bodyLimit ?? 64 * 1024,
    // fastify logs every request at info by default; /metrics and probe traffic would drown the log.
    logController: new LogController({ disableRequestLogging: true }),
    schemaErrorFormatter,
    return503OnClosing: true,
  }) as unknown as FastifyInstance;

  app.setValidatorCompiler(validatorCompiler);
  app.setErrorHandler(errorHandler);
  app.setNotFoundHandler(notFoundHandler);
  installBodyParsers(app);
  app.register(fastifyCookie);
  for (const schema of SHARED_SCHEMAS) app.addSchema(schema);
  app.addHook("onResponse", async (request, reply) => {
    const quiet = !request.url.startsWith("/v1/");
    request.log[quiet ? "debug" : "info"](
      {
        method: request.method,
        url: request.url,
        status: reply.statusCode,
        ms: Math.round(reply.elapsedTime),
      },
      "api: request",
    );
  });

  const rights =
    deps.rights ??
    new Rights({
      adminGroups: deps.adminGroups,
      approverGroups: deps.approverGroups,
      auditGroups: deps.auditGroups,
    });
  const log = deps.log ?? silentLogger;

  // @fastify/swagger first: it collects the routes registered after it.
  registerOpenApi(app, VERSION);
  app.register(approvalEventRoutes, { verifier: deps.verifier, approvals: deps.approvals, rights, log });
  app.register(approvalRoutes, { verifier: deps.verifier, approvals: deps.approvals, rights });
  if (deps.audit) app.register(auditRoutes, { verifier: deps.verifier, rights, source: deps.audit });
  app.register(consoleRoutes, {
    verifier: deps.verifier,
    rights,
    assets: deps.console?.assets,
    login: deps.console?.login,
    log,
  });
  app.register(statusRoutes, {
    verifier: deps.verifier,
    engine: deps.engine,
    approvals: deps.approvals,
    store: deps.store,
    ready: deps.ready,
    status: deps.status,
  });
  app.register(metricsRoutes, { registry: sharedRegistry });
  app.register(openApiRoute);

  if (deps.webhook) {
    const { approvals } = deps;
    if (!isObservable(approvals)) {
      throw new Error(
        "api: a webhook needs to hear of new approval requests: construct the approval service as an " +
          "ObservableApprovalService (src/api/observable.ts)",
      );
    }
    const notifier = new WebhookNotifier(deps.webhook, { log: deps.log });
    const unsubscribe = approvals.onCreated((request) => notifier.notify(request));
    app.addHook("onClose", async () => {
      unsubscribe();
      await notifier.close();
    });
  }
  return app;
}
