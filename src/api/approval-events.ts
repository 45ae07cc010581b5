// GET /v1/approvals/events: Server-Sent Events, one `approval` event with the request (as GET /v1/approvals/:id
// answers it, without votes) each time one is created or changes — on any replica sharing the store, because
// the source is the store's NOTIFY channel that also releases waiters. Each subscriber gets only what it may
// see (the same rule as the list). A `ping` comment every 25 s keeps proxies from closing an idle stream, and
// the stream ends with an `expired` event when the caller's token does (the console then signs in again).
import type { FastifyPluginAsync } from "fastify";
import type { ApprovalService } from "../approvals/service.js";
import type { TokenVerifier } from "../identity/verifier.js";
import type { Logger } from "../util/log.js";
import { authenticate, type Rights, tokenOf } from "./auth.js";
import { ApiError } from "./errors.js";
import { bearerAuth, errorResponses } from "./schemas.js";

export interface ApprovalEventsOptions {
  verifier: TokenVerifier;
  approvals: ApprovalService;
  rights: Rights;
  log: Logger;
  /** Most concurrent streams (default 500): each holds a socket and a listener. */
  maxStreams?: number;
  /** Default 25 s. */
  pingMs?: number;
}

const MAX_TIMER_MS = 2 ** 31 - 1;

export const approvalEventRoutes: FastifyPluginAsync<ApprovalEventsOptions> = async (app, options) => {
  const { approvals, rights, log } = options;
  const maxStreams = options.maxStreams ?? 500;
  let streams = 0;
  // A hijacked stream would keep app.close() waiting forever: closing the API ends them.
  const open = new Set<() => void>();
  app.addHook("onClose", async () => {
    for (const end of [...open]) end();
  });

  app.get(
    "/v1/approvals/events",
    {
      onRequest: authenticate(options.verifier),
      schema: {
        tags: ["approvals"],
        summary: "Live changes of approval requests (text/event-stream)",
        description:
          "Server-Sent Events: `event: approval` with the request as JSON each time one the caller may see is " +
          "created, voted on, decided or expires, on any replica; `event: expired` when the caller's token " +
          "expires (the stream then ends).",
        security: bearerAuth,
        produces: ["text/event-stream"],
        response: errorResponses(401, 503),
      },
    },
    async (request, reply) => {
      const token = tokenOf(request);
      if (streams >= maxStreams)
        throw new ApiError(
          503,
          "too_many_streams",
          `this gateway already serves ${maxStreams} event streams`,
        );
      streams++;
      const raw = reply.raw;
      let live = true;
      const send = (text: string) => {
        if (live) raw.write(text);
      };
      let unsubscribe: () => void = () => {};
      const timers: NodeJS.Timeout[] = [];
      const end = () => {
        if (!live) return;
        live = false;
        open.delete(end);
        streams--;
        unsubscribe();
        for (const t of timers) clearTimeout(t);
        raw.end();
      };
      try {
        unsubscribe = await approvals.onChange((change) => {
          approvals
            .get(change.id)
            .then((found) => {
              if (!rights.canSee(token.identity, found)) return;
              const { votes: _votes, ...request } = found;
              send(`event: approval\ndata: ${JSON.stringify(request)}\n\n`);
            })
            .catch((err) =>
              log.warn({ err: (err as Error).message, id: change.id }, "api: approval event lost"),
            );
        });
      } catch (err) {
        streams--;
        throw new ApiError(
          503,
          "store_unavailable",
          `cannot follow approval changes: ${(err as Error).message}`,
        );
      }
      open.add(end);
      reply.hijack();
      raw.writeHead(200, {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-store",
        "x-accel-buffering": "no",
        connection: "keep-alive",
      });
      send("retry: 3000\n: connected\n\n");
      timers.push(setInterval(() => send(": ping\n\n"), options.pingMs ?? 25_000));
      const left = token.expiresAt.getTime() - Date.now();
      timers.push(
        setTimeout(
          () => {
            send(`event: expired\ndata: {"message":"your sign-in expired"}\n\n`);
            end();
          },
          Math.min(Math.max(0, left), MAX_TIMER_MS),
        ),
      );
      request.raw.on("close", end);
      raw.on("error", end);
    },
  );
};
