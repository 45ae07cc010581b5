// The gateway configuration file's shape: one JSON Schema (validated with ajv), composed from the gateway's own
// sections and each protocol adapter's listener and upstream schemas (src/proxy/registry.ts). The TypeScript
// types are derived from the schemas (TypeBox's Static), so there is no hand-kept twin to drift.
// docs/configuration.md describes every field.
import { type Static, type TObject, type TSchema, type TUnsafe, Type } from "@sinclair/typebox";
import { ADAPTERS, type RegisteredAdapter } from "../proxy/registry.js";
import { NonEmpty, Port, StringEnum, StringMap } from "./kit.js";

/**
 * A tagged union: exactly one of `variants`, chosen by the value of `key` (JSON Schema oneOf with ajv's
 * `discriminator`, so a problem is reported against the variant the tag names, not against every variant).
 */
function OneOfByKey<T>(key: string, variants: TObject[]): TUnsafe<T> {
  return Type.Unsafe<T>({
    type: "object",
    required: [key],
    discriminator: { propertyName: key },
    oneOf: variants,
  });
}

const closed = { additionalProperties: false } as const;

export const CredentialSourceSchema = Type.Object(
  {
    /** Inline password: development only. */
    password: Type.Optional(Type.String()),
    /** Name of an environment variable holding the password. */
    password_env: Type.Optional(NonEmpty),
    /** Path of a file holding the password (first line). */
    password_file: Type.Optional(NonEmpty),
    /** Path of a file holding a private key (the whole file), e.g. an SSH target's fallback key. */
    key_file: Type.Optional(NonEmpty),
  },
  { ...closed, minProperties: 1, maxProperties: 1 },
);
export type CredentialSource = Static<typeof CredentialSourceSchema>;

/** The fields every resource has, whatever its kind. */
const resourceCommon = {
  name: Type.String({ pattern: "^[A-Za-z0-9_.-]+$" }),
  labels: Type.Optional(StringMap),
};
/** Required unless the adapter says its upstream can do without (ProtocolAdapter.credentials). */
const ResourceCommon = Type.Object({ ...resourceCommon, credentials: Type.Optional(CredentialSourceSchema) });

/** A resource of one adapter's kind: the common fields, `kind`, and that adapter's upstream. */
type ResourceOf<A> = A extends RegisteredAdapter
  ? Static<typeof ResourceCommon> & { kind: A["protocol"]; upstream: Static<A["upstreamSchema"]> }
  : never;
export type ResourceConfig = ResourceOf<RegisteredAdapter>;

const ResourceSchema = OneOfByKey<ResourceConfig>(
  "kind",
  ADAPTERS.map((a) =>
    Type.Object(
      {
        ...resourceCommon,
        credentials:
          a.credentials === "optional" ? Type.Optional(CredentialSourceSchema) : CredentialSourceSchema,
        kind: Type.Literal(a.protocol),
        upstream: a.upstreamSchema,
      },
      closed,
    ),
  ),
);

/** listeners.<protocol> for each adapter, and the control-plane API. */
type AdapterListeners = {
  [A in RegisteredAdapter as A["protocol"]]?: Static<A["listenerSchema"]>;
};
const ConsoleSchema = Type.Object(
  {
    /** The issuer people sign in with (one of identity.issuers); default the development issuer. */
    issuer: Type.Optional(NonEmpty),
    client_id: Type.Optional(NonEmpty),
    /** An environment variable holding a confidential client's secret; without one the client is public (PKCE). */
    client_secret_env: Type.Optional(NonEmpty),
    /** The console's public base URL; required unless it is reached on loopback. */
    public_url: Type.Optional(NonEmpty),
    scopes: Type.Optional(Type.Array(NonEmpty, { minItems: 1 })),
    /** An RFC 8707 resource indicator sent with the sign-in, for issuers that choose the audience by it. */
    resource: Type.Optional(NonEmpty),
  },
  closed,
);
export type ConsoleConfig = Static<typeof ConsoleSchema>;
const ApiListenerSchema = Type.Object(
  {
    host: Type.Optional(NonEmpty),
    port: Port,
    /** Who may search decisions and replay sessions; default approvals.admin_groups. */
    audit_groups: Type.Optional(Type.Array(NonEmpty)),
    console: Type.Optional(ConsoleSchema),
  },
  closed,
);
export type ListenersConfig = AdapterListeners & { api?: Static<typeof ApiListenerSchema> };

const ListenersSchema = Type.Unsafe<ListenersConfig>(
  Type.Object(
    {
      api: Type.Optional(ApiListenerSchema),
      ...Object.fromEntries(
        ADAPTERS.map((a): [string, TSchema] => [a.protocol, Type.Optional(a.listenerSchema)]),
      ),
    },
    closed,
  ),
);

const IssuerSchema = Type.Object(
  {
    issuer: NonEmpty,
    audience: Type.Union([NonEmpty, Type.Array(NonEmpty, { minItems: 1 })]),
    groups_claim: Type.Optional(NonEmpty),
    algorithms: Type.Optional(Type.Array(NonEmpty)),
    leeway_seconds: Type.Optional(Type.Integer({ minimum: 0, maximum: 300 })),
    /** Accept an http:// issuer; honoured only for loopback issuers (local development and benchmarks). */
    allow_insecure_http: Type.Optional(Type.Boolean()),
  },
  closed,
);
export type IssuerEntry = Static<typeof IssuerSchema>;

const PolicySchema = Type.Object(
  {
    /** A bundle file, watched for changes. */
    bundle: Type.Optional(NonEmpty),
    /** An HTTP bundle server (OPA's bundle service protocol), polled with ETag. */
    url: Type.Optional(NonEmpty),
    /** A folder of Rego rebuilt with opa on every change (development). */
    policies: Type.Optional(NonEmpty),
    verification: Type.Optional(
      Type.Object(
        { key_file: NonEmpty, algorithm: Type.Optional(NonEmpty), key_id: Type.Optional(NonEmpty) },
        closed,
      ),
    ),
    /** Where the last good bundle from `url` is kept, so a restart while the bundle server is down starts on it. */
    cache_dir: Type.Optional(NonEmpty),
  },
  closed,
);

const IdentitySchema = Type.Object(
  {
    issuers: Type.Optional(Type.Array(IssuerSchema)),
    dev_issuer: Type.Optional(
      Type.Object({ port: Type.Optional(Port), audience: Type.Optional(NonEmpty) }, closed),
    ),
    groups_claim: Type.Optional(NonEmpty),
  },
  closed,
);

const StoreSchema = OneOfByKey<
  { type: "embedded"; dir: string } | { type: "postgres"; url?: string; url_env?: string }
>("type", [
  Type.Object({ type: Type.Literal("embedded"), dir: NonEmpty }, closed),
  Type.Object(
    { type: Type.Literal("postgres"), url: Type.Optional(NonEmpty), url_env: Type.Optional(NonEmpty) },
    closed,
  ),
]);

const AuditSinkSchema = Type.Object(
  {
    type: StringEnum(["postgres", "http", "file"]),
    url: Type.Optional(NonEmpty),
    url_env: Type.Optional(NonEmpty),
    table: Type.Optional(NonEmpty),
    path: Type.Optional(NonEmpty),
    headers: Type.Optional(StringMap),
  },
  closed,
);
export type AuditSinkConfig = Static<typeof AuditSinkSchema>;

const AuditSchema = Type.Object(
  {
    dir: NonEmpty,
    max_bytes: Type.Optional(Type.Integer({ minimum: 1024 })),
    segment_bytes: Type.Optional(Type.Integer({ minimum: 1024 })),
    /** When a decision record counts as taken: on disk (fsync, the default) or in the OS (write). */
    durability: Type.Optional(Type.Union([Type.Literal("fsync"), Type.Literal("write")])),
    sinks: Type.Optional(Type.Array(AuditSinkSchema)),
  },
  closed,
);

const ApprovalsSchema = Type.Object(
  {
    wait_timeout_s: Type.Optional(Type.Integer({ minimum: 1 })),
    pending_ttl_s: Type.Optional(Type.Integer({ minimum: 1 })),
    approver_groups: Type.Optional(Type.Array(NonEmpty)),
    admin_groups: Type.Optional(Type.Array(NonEmpty)),
    webhook: Type.Optional(
      Type.Object(
        {
          url: Type.Optional(NonEmpty),
          url_env: Type.Optional(NonEmpty),
          headers: Type.Optional(StringMap),
          max_attempts: Type.Optional(Type.Integer({ minimum: 1, maximum: 20 })),
        },
        closed,
      ),
    ),
  },
  closed,
);

/** What `pamgate run` does at SIGTERM/SIGINT (docs/deployment.md#signals). */
const ShutdownSchema = Type.Object(
  {
    /** How long open sessions may go on after the listeners stop accepting (default 30). */
    drain_timeout_s: Type.Optional(Type.Integer({ minimum: 0, maximum: 3600 })),
    /** How long the audit sinks get to ship what the spool holds before the process exits (default 10). */
    ship_timeout_s: Type.Optional(Type.Integer({ minimum: 0, maximum: 600 })),
  },
  closed,
);
export type ShutdownConfig = Static<typeof ShutdownSchema>;

/** Limits across listeners (each listener's own are in listeners.<protocol>: auth_timeout_s, …). */
const LimitsSchema = Type.Object(
  {
    /** Sessions one requester (token subject) may have open at once, all protocols together (default 64). */
    sessions_per_identity: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000 })),
  },
  closed,
);

export const GatewayConfigSchema = Type.Object(
  {
    listeners: ListenersSchema,
    policy: PolicySchema,
    identity: IdentitySchema,
    resources: Type.Array(ResourceSchema, { minItems: 1 }),
    store: Type.Optional(StoreSchema),
    audit: Type.Optional(AuditSchema),
    approvals: Type.Optional(ApprovalsSchema),
    /** Gateway processes sharing the listeners, one event loop each ("auto": one per core). Default 1. */
    workers: Type.Optional(Type.Union([Type.Integer({ minimum: 1, maximum: 64 }), Type.Literal("auto")])),
    limits: Type.Optional(LimitsSchema),
    shutdown: Type.Optional(ShutdownSchema),
  },
  closed,
);
export type GatewayConfig = Static<typeof GatewayConfigSchema>;

/** The schema as plain JSON Schema, for ajv (and `pamgate config schema`, docs). */
export const configSchema: Record<string, unknown> = GatewayConfigSchema;
