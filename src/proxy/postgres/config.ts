// The PostgreSQL adapter's configuration: listeners.postgres and resources[].upstream of kind postgres. The JSON
// Schemas are the source of truth; the TypeScript types are derived from them (TypeBox), so the two cannot drift.
import { type Static, Type } from "@sinclair/typebox";
import { NonEmpty, Port, StringEnum } from "../../config/kit.js";
import { listenerBaseProperties } from "../adapter.js";

export const PostgresListenerSchema = Type.Object(
  {
    ...listenerBaseProperties,
    /** Largest client message accepted (bytes); refused from its header, before it is read. Default 64 MiB. */
    max_message_bytes: Type.Optional(Type.Integer({ minimum: 1024 })),
    /**
     * The nesting a statement may have (parentheses, sub-selects, CASE, chained operators; analysis/guard.ts), above
     * which it is refused before the parser sees it (pg.statement_too_deep). Default 1,000; at most 2,000, well
     * below where the parser's own stack would fail.
     */
    max_statement_depth: Type.Optional(Type.Integer({ minimum: 50, maximum: 2000 })),
    /** What session transcripts keep of each statement and its result. */
    transcript: Type.Optional(
      Type.Object(
        {
          /** "normalized" (default: literals replaced by $n), "full" (as sent) or "none". */
          statement_text: Type.Optional(StringEnum(["normalized", "full", "none"])),
          /** First rows of each result kept, as the client got them (masked). Default 20; 0 keeps none. */
          max_rows: Type.Optional(Type.Integer({ minimum: 0, maximum: 10_000 })),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);
export type PostgresListenerConfig = Static<typeof PostgresListenerSchema>;

export const PostgresUpstreamSchema = Type.Object(
  {
    host: NonEmpty,
    port: Port,
    database: NonEmpty,
    user: NonEmpty,
    /** "disable" (default), "require" (TLS, no certificate check) or "verify-full". */
    sslmode: Type.Optional(StringEnum(["disable", "require", "verify-full"])),
    /**
     * The search_path every session is pinned to (default [public]): exactly one schema, a literal name. Unqualified
     * names resolve there, and policy sees them there (upstream.ts, pinnedSearchPath).
     */
    search_path: Type.Optional(
      Type.Array(Type.String({ minLength: 1, maxLength: 63, pattern: "^(?!pg_temp)[^\\u0000]*$" }), {
        minItems: 1,
        maxItems: 1,
      }),
    ),
  },
  { additionalProperties: false },
);
export type PostgresUpstreamConfig = Static<typeof PostgresUpstreamSchema>;
