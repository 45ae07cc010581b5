// GET /metrics: the shared Prometheus registry as text — decisions by action and protocol, policy evaluation
// latency, pending approvals, token rejections by reason (this API's included), bundle loads, audit records,
// webhook deliveries. Not authenticated, as Prometheus scrapers usually are not; restrict it by network (bind
// the API to an internal address, or filter /metrics at the ingress) where the numbers are sensitive.
import type { FastifyPluginAsync } from "fastify";
import type { Registry } from "prom-client";

export interface MetricsRoutesOptions {
  registry: Registry;
}

export const metricsRoutes: FastifyPluginAsync<MetricsRoutesOptions> = async (app, { registry }) => {
  app.get(
    "/metrics",
    {
      schema: {
        tags: ["status"],
        summary: "Prometheus metrics, text exposition format (no authentication)",
        produces: ["text/plain"],
        response: { 200: { type: "string", description: "Prometheus text format 0.0.4" } },
      },
    },
    async (_request, reply) => {
      const text = await registry.metrics();
      return reply.type(registry.contentType).send(text);
    },
  );
};
