// The gateway configuration file's shape (JSON Schema, validated with ajv) and its TypeScript type.
// Keep the two in step; docs/configuration.md describes every field.
import type { JSONSchemaType } from "ajv";

export interface CredentialSource {
  /** Inline password: development only. */
  password?: string;
  /** Name of an environment variable holding the password. */
  password_env?: string;
  /** Path of a file holding the password (first line). */
  password_file?: string;
}

export interface ResourceConfig {
  name: string;
  kind: "postgres";
  labels?: Record<string, string>;
  upstream: {
    host: string;
    port: number;
    database: string;
    user: string;
    sslmode?: "disable" | "require" | "verify-full";
  };
  credentials: CredentialSource;
}

export interface IssuerEntry {
  issuer: string;
  audience: string | string[];
  groups_claim?: string;
  algorithms?: string[];
  leeway_seconds?: number;
  /** Accept an http:// issuer; honoured only for loopback issuers (local development and benchmarks). */
  allow_insecure_http?: boolean;
}

export interface AuditSinkConfig {
  type: "postgres" | "http" | "file";
  url?: string;
  url_env?: string;
  table?: string;
  path?: string;
  headers?: Record<string, string>;
}

export interface GatewayConfig {
  listeners: {
    postgres?: {
      host?: string;
      port: number;
      tls?: { cert_file: string; key_file: string };
      allow_cleartext_token?: boolean;
      max_message_bytes?: number;
    };
    api?: { host?: string; port: number };
  };
  policy: {
    bundle?: string;
    url?: string;
    policies?: string;
    verification?: { key_file: string; algorithm?: string; key_id?: string };
  };
  identity: {
    issuers?: IssuerEntry[];
    dev_issuer?: { port?: number; audience?: string };
    groups_claim?: string;
  };
  resources: ResourceConfig[];
  store?: { type: "embedded"; dir: string } | { type: "postgres"; url?: string; url_env?: string };
  audit?: { dir: string; max_bytes?: number; segment_bytes?: number; sinks?: AuditSinkConfig[] };
  approvals?: {
    wait_timeout_s?: number;
    pending_ttl_s?: number;
    approver_groups?: string[];
    admin_groups?: string[];
    webhook?: { url?: string; url_env?: string; headers?: Record<string, string>; max_attempts?: number };
  };
}

const str = { type: "string", minLength: 1 } as const;
const port = { type: "integer", minimum: 0, maximum: 65535 } as const;

// ajv's JSONSchemaType cannot express every optional nuance cleanly; the schema is written out by hand and
// typed loosely, with the interface above as the contract the rest of the code relies on.
export const configSchema: JSONSchemaType<unknown> | Record<string, unknown> = {
  type: "object",
  additionalProperties: false,
  required: ["listeners", "policy", "identity", "resources"],
  properties: {
    listeners: {
      type: "object",
      additionalProperties: false,
      properties: {
        postgres: {
          type: "object",
          additionalProperties: false,
          required: ["port"],
          properties: {
            host: str,
            port,
            tls: {
              type: "object",
              additionalProperties: false,
              required: ["cert_file", "key_file"],
              properties: { cert_file: str, key_file: str },
            },
            allow_cleartext_token: { type: "boolean" },
            max_message_bytes: { type: "integer", minimum: 1024 },
          },
        },
        api: {
          type: "object",
          additionalProperties: false,
          required: ["port"],
          properties: { host: str, port },
        },
      },
    },
    policy: {
      type: "object",
      additionalProperties: false,
      properties: {
        bundle: str,
        url: str,
        policies: str,
        verification: {
          type: "object",
          additionalProperties: false,
          required: ["key_file"],
          properties: { key_file: str, algorithm: str, key_id: str },
        },
      },
    },
    identity: {
      type: "object",
      additionalProperties: false,
      properties: {
        issuers: {
          type: "array",
          items: {
            type: "object",
            additionalProperties: false,
            required: ["issuer", "audience"],
            properties: {
              issuer: str,
              audience: { anyOf: [str, { type: "array", items: str, minItems: 1 }] },
              groups_claim: str,
              algorithms: { type: "array", items: str },
              leeway_seconds: { type: "integer", minimum: 0, maximum: 300 },
              allow_insecure_http: { type: "boolean" },
            },
          },
        },
        dev_issuer: {
          type: "object",
          additionalProperties: false,
          properties: { port, audience: str },
        },
        groups_claim: str,
      },
    },
    resources: {
      type: "array",
      minItems: 1,
      items: {
        type: "object",
        additionalProperties: false,
        required: ["name", "kind", "upstream", "credentials"],
        properties: {
          name: { type: "string", pattern: "^[A-Za-z0-9_.-]+$" },
          kind: { enum: ["postgres"] },
          labels: { type: "object", additionalProperties: { type: "string" } },
          upstream: {
            type: "object",
            additionalProperties: false,
            required: ["host", "port", "database", "user"],
            properties: {
              host: str,
              port,
              database: str,
              user: str,
              sslmode: { enum: ["disable", "require", "verify-full"] },
            },
          },
          credentials: {
            type: "object",
            additionalProperties: false,
            minProperties: 1,
            maxProperties: 1,
            properties: { password: { type: "string" }, password_env: str, password_file: str },
          },
        },
      },
    },
    store: {
      type: "object",
      required: ["type"],
      properties: {
        type: { enum: ["embedded", "postgres"] },
        dir: str,
        url: str,
        url_env: str,
      },
    },
    audit: {
      type: "object",
      additionalProperties: false,
      required: ["dir"],
      properties: {
        dir: str,
        max_bytes: { type: "integer", minimum: 1024 },
        segment_bytes: { type: "integer", minimum: 1024 },
        sinks: {
          type: "array",
          items: {
            type: "object",
            additionalProperties: false,
            required: ["type"],
            properties: {
              type: { enum: ["postgres", "http", "file"] },
              url: str,
              url_env: str,
              table: str,
              path: str,
              headers: { type: "object", additionalProperties: { type: "string" } },
            },
          },
        },
      },
    },
    approvals: {
      type: "object",
      additionalProperties: false,
      properties: {
        wait_timeout_s: { type: "integer", minimum: 1 },
        pending_ttl_s: { type: "integer", minimum: 1 },
        approver_groups: { type: "array", items: str },
        admin_groups: { type: "array", items: str },
        webhook: {
          type: "object",
          additionalProperties: false,
          properties: {
            url: str,
            url_env: str,
            headers: { type: "object", additionalProperties: { type: "string" } },
            max_attempts: { type: "integer", minimum: 1, maximum: 20 },
          },
        },
      },
    },
  },
};
