// The PostgreSQL adapter as the gateway sees it (src/proxy/adapter.ts): its configuration schemas, that it can
// mask (DataRow and COPY rewriting, see masking.ts), and its listener.
import { defineAdapter } from "../adapter.js";
import { PostgresListenerSchema, PostgresUpstreamSchema } from "./config.js";
import { PG_REASONS } from "./reasons.js";
import { PostgresListener } from "./server.js";

export const postgresAdapter = defineAdapter({
  protocol: "postgres",
  listenerSchema: PostgresListenerSchema,
  upstreamSchema: PostgresUpstreamSchema,
  canMask: true,
  reasons: PG_REASONS,
  createListener: (ctx) => new PostgresListener(ctx),
});
