// The contract between the protocol-neutral gateway and one protocol adapter (PostgreSQL today; SSH and
// Kubernetes next). Modelled on Teleport's per-protocol database engines (lib/srv/db/common): the gateway hands
// an adapter everything protocol-neutral — the session opener (token, TLS rule, identity, session records), the
// command pipeline (policy, approvals, the durable record) and its resources with their credentials — and the
// adapter only speaks its wire protocol:
//
//   accept a client → opener.authenticate (refused? → the protocol's own error, connection closed)
//   → connect upstream with the gateway's credentials → opener.open (session context, transcript, start record)
//   → for each command: parse → pipeline.decideBatch (with checkMask) → enforce the outcome (allow / mask /
//     block: the protocol's error, session usable) → session.end.
//
// A new protocol is one folder under src/proxy/ exporting a ProtocolAdapter, and one line in src/proxy/registry.ts.
// docs/adapters.md walks through writing one.

import { type Static, type TObject, Type } from "@sinclair/typebox";
import { NonEmpty, Port } from "../config/kit.js";
import type { Protocol, Resource } from "../decision/contract.js";
import type { SessionOpener } from "../gateway/sessions.js";
import type { PeerChannel } from "../gateway/workers.js";
import type { CommandPipeline } from "../pipeline/pipeline.js";
import type { ComponentStatus, StatusRegistry } from "../status/status.js";
import type { Logger } from "../util/log.js";
import { listenerLimitProperties } from "./limits.js";

/**
 * The listener fields every adapter shares: where to listen, TLS, the token-over-cleartext escape hatch, and the
 * limits on connections that have not authenticated yet (limits.ts: `auth_timeout_s`,
 * `max_unauthenticated_connections`; every listener enforces them with a PendingConnections). An adapter whose
 * schema does not spread these (SSH has no `tls`) spreads `listenerLimitProperties` itself.
 */
export const listenerBaseProperties = {
  host: Type.Optional(NonEmpty),
  port: Port,
  tls: Type.Optional(
    Type.Object({ cert_file: NonEmpty, key_file: NonEmpty }, { additionalProperties: false }),
  ),
  /** Accept the token over a connection without TLS from non-loopback clients (never in production). */
  allow_cleartext_token: Type.Optional(Type.Boolean()),
  ...listenerLimitProperties,
};
export const ListenerBase = Type.Object(listenerBaseProperties, { additionalProperties: false });
export type ListenerBaseConfig = Static<typeof ListenerBase>;

/** One configured resource of the adapter's kind, its upstream settings validated by the adapter's schema. */
export interface AdapterResource<Upstream> {
  /** What clients name to reach it, and the policy's input.resource. */
  resource: Resource;
  upstream: Upstream;
  /**
   * The gateway-held secret for the upstream (resolved from credentials: env, file or inline); never logged.
   * "" when the resource has no credentials (allowed only where the adapter's `credentials` is "optional").
   */
  secret: string;
}

/** What the gateway gives an adapter to build its listener. */
export interface AdapterContext<Listen, Upstream> {
  /** listeners.<protocol> from the configuration, with relative paths resolved. */
  config: Listen;
  /** The TLS certificate and key read from config.tls, when configured. */
  tls?: { cert: Buffer; key: Buffer };
  resources: AdapterResource<Upstream>[];
  sessions: SessionOpener;
  pipeline: CommandPipeline;
  /**
   * The gateway's status model, for components of the adapter beyond the listener (the gateway registers the
   * listener itself as `listener:<protocol>`), named `<protocol>.<part>`, e.g. `postgres.analyzer`.
   */
  status?: StatusRegistry;
  log: Logger;
  /**
   * In a worker of a multi-process gateway (`workers: N`): messages to the other workers, for what a connection
   * on one worker asks of a session on another (a PostgreSQL CancelRequest). Absent in a single process.
   */
  peers?: PeerChannel;
}

/** A running listener of one protocol. */
export interface AdapterListener {
  listen(): Promise<{ host: string; port: number }>;
  /**
   * Ends every session (telling the client why, in the protocol's own terms: PostgreSQL's FATAL 57P01
   * admin_shutdown) and stops accepting.
   */
  close(): Promise<void>;
  /**
   * Draining before a shutdown: closes the listening socket, so new connections are refused, and leaves open
   * sessions alone until they end or close() ends them. Optional: without it the gateway cannot drain this
   * protocol and close() ends its sessions at once.
   */
  stopAccepting?(): Promise<void>;
  /**
   * A configuration reload: checks `resources` as the constructor would and returns the function that makes
   * new sessions use them; sessions already open keep what they started with. Throws, changing nothing, when a
   * resource cannot be used. Optional: without it a change to this protocol's resources needs a restart.
   */
  prepareResources?(resources: AdapterResource<Record<string, unknown>>[]): () => void;
  /** not_ready until listening and able to analyze commands; ok while serving; error when it stopped. */
  status(): ComponentStatus;
  readonly sessionCount: number;
}

export interface ProtocolAdapter<
  P extends Protocol = Protocol,
  Listen extends TObject = TObject,
  Upstream extends TObject = TObject,
> {
  readonly protocol: P;
  /** JSON Schema of listeners.<protocol> (start from listenerBaseProperties). */
  readonly listenerSchema: Listen;
  /** JSON Schema of resources[].upstream for resources of kind <protocol>. */
  readonly upstreamSchema: Upstream;
  /**
   * Whether resources of this kind must name `credentials` (default "required"). SSH makes them optional: its
   * targets trust the gateway's certificate authority, and a key is only the fallback.
   */
  readonly credentials?: "required" | "optional";
  /** Top-level fields of listeners.<protocol> that name files, resolved relative to the configuration file. */
  readonly listenerFiles?: readonly string[];
  /**
   * Whether the adapter can rewrite responses at all. An adapter that cannot never passes a `checkMask` hook, and
   * the pipeline then turns every mask verdict into a block (see CommandPipeline.decideBatch).
   */
  readonly canMask: boolean;
  /** The reason codes the adapter gives itself, with what each means (the form of src/decision/reasons.ts). */
  readonly reasons: Readonly<Record<string, string>>;
  createListener(ctx: AdapterContext<Static<Listen>, Static<Upstream>>): AdapterListener;
}

/** Declares an adapter, keeping its literal protocol and schema types (so configuration types derive from them). */
export function defineAdapter<P extends Protocol, L extends TObject, U extends TObject>(
  adapter: ProtocolAdapter<P, L, U>,
): ProtocolAdapter<P, L, U> {
  return adapter;
}
