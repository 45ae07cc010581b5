// Assembles a running gateway from its configuration: policy engine and bundle source, identity, store,
// approvals, audit trail, the command pipeline, and the protocol listeners. Each part is built by its own
// module; this file only wires them and owns their shutdown order.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { AuditSource } from "../api/audit.js";
import type { ConsoleLoginOptions } from "../api/console.js";
import { consoleAssets } from "../api/console-assets.js";
import { buildApi, ObservableApprovalService } from "../api/index.js";
import type { ApprovalService } from "../approvals/service.js";
import { AuditTrail, registerAuditStatus, type SinkConfig, type SpoolIo } from "../audit/index.js";
import { spoolRecords } from "../audit/reader.js";
import {
  findSpoolDirs,
  PostgresDecisionSearch,
  postgresSessionRecords,
  SpoolDecisionSearch,
} from "../audit/search.js";
import { FileBundleSource, PolicyFolderSource } from "../bundles/file-source.js";
import { HttpBundleSource } from "../bundles/http-source.js";
import { BundleManager } from "../bundles/manager.js";
import { resolveCredential } from "../config/load.js";
import type { ConsoleConfig, GatewayConfig, ResourceConfig } from "../config/schema.js";
import type { Protocol } from "../decision/contract.js";
import { DecisionEngine } from "../decision/engine.js";
import type { IssuerConfig } from "../identity/config.js";
import { type DevIssuer, startDevIssuer } from "../identity/dev-issuer.js";
import { TokenVerifier } from "../identity/verifier.js";
import { metrics } from "../metrics.js";
import { type AuditPort, CommandPipeline } from "../pipeline/pipeline.js";
import type {
  AdapterListener,
  AdapterResource,
  ListenerBaseConfig,
  ProtocolAdapter,
} from "../proxy/adapter.js";
import { ADAPTERS } from "../proxy/registry.js";
import { StatusRegistry } from "../status/status.js";
import { openStore } from "../store/open.js";
import type { Store } from "../store/store.js";
import { type Logger, silentLogger } from "../util/log.js";
import { SessionOpener } from "./sessions.js";
import type { PeerChannel } from "./workers.js";

export interface GatewayExtras {
  log?: Logger;
  /** Users of the development issuer (dev_issuer in the config). */
  devUsers?: Record<string, { email?: string | null; groups?: string[] }>;
  devClients?: string[];
  /** Lifetime of the development issuer's tokens (default 600 s). */
  devTokenTtlSeconds?: number;
  /** The audit spool's file operations (tests make them fail the way a broken disk does). */
  auditIo?: SpoolIo;
  /** In a worker of `workers: N`: the channel to the other workers (workers.ts). */
  peers?: PeerChannel;
  /** Where the API's audit search looks for spools (default audit.dir; a worker's parent holds every worker's). */
  auditRoot?: string;
}

export interface Gateway {
  engine: DecisionEngine;
  bundles: BundleManager;
  verifier: TokenVerifier;
  approvals: ApprovalService;
  store: Store;
  pipeline: CommandPipeline;
  sessions: SessionOpener;
  audit: AuditTrail | null;
  /** Where each configured protocol listens. */
  listeners: Partial<Record<Protocol, { host: string; port: number }>>;
  api: { host: string; port: number } | null;
  devIssuer: DevIssuer | null;
  /** Every component's status (/readyz, /v1/status read it); a listener registers as `listener:<protocol>`. */
  status: StatusRegistry;
  close(): Promise<void>;
}

function sinkConfig(s: NonNullable<NonNullable<GatewayConfig["audit"]>["sinks"]>[number]): SinkConfig {
  const url = s.url ?? (s.url_env ? process.env[s.url_env] : undefined) ?? "";
  if (s.type === "postgres") return { type: "postgres", url, table: s.table };
  if (s.type === "http") return { type: "http", url, headers: s.headers };
  return { type: "file", path: s.path ?? "-" };
}

function issuerConfigs(config: GatewayConfig): IssuerConfig[] {
  return (config.identity.issuers ?? []).map((i) => ({
    issuer: i.issuer,
    audience: i.audience,
    groupsClaim: i.groups_claim ?? config.identity.groups_claim,
    algorithms: i.algorithms,
    leewaySeconds: i.leeway_seconds,
    allowInsecureHttp: i.allow_insecure_http,
  }));
}

/**
 * What the API's audit search and session replay read: the PostgreSQL sink's table when there is one (every
 * replica's records, up to the shipping delay), else the spools under `root` (every worker's).
 */
function auditSource(audit: NonNullable<GatewayConfig["audit"]>, root = audit.dir): AuditSource {
  const pgSink = (audit.sinks ?? []).map((s) => sinkConfig(s)).find((s) => s.type === "postgres");
  if (pgSink?.type === "postgres") {
    const table = pgSink.table ?? "pamgate_audit";
    const search = new PostgresDecisionSearch(pgSink.url, { table });
    return {
      kind: "postgres",
      search,
      sessionRecords: (id) => () => postgresSessionRecords(pgSink.url, table, id),
      close: () => search.close(),
    };
  }
  let dirs: Promise<string[]> | null = null;
  // Looked up per search, so a worker's spool created after the start is found (an empty root: none yet).
  const spools = () => {
    dirs ??= findSpoolDirs(root).finally(() => {
      dirs = null;
    });
    return dirs;
  };
  return {
    kind: "spool",
    search: { searchDecisions: async (q) => new SpoolDecisionSearch(await spools()).searchDecisions(q) },
    // Every record of every spool: loadSessionView picks the session's (a spool has no index by session).
    sessionRecords: () =>
      async function* () {
        for (const dir of await spools()) yield* spoolRecords(dir);
      },
  };
}

/**
 * The console's sign-in: the configured issuer (which the verifier must trust, or its tokens would be refused on
 * every call), else the development issuer's console client, else none.
 */
function consoleLogin(
  config: ConsoleConfig | undefined,
  issuers: IssuerConfig[],
  devIssuer: DevIssuer | null,
): ConsoleLoginOptions | undefined {
  const where = "listeners.api.console";
  if (!config?.issuer) {
    if (!devIssuer) {
      if (config)
        throw new Error(`${where}.issuer is required (there is no development issuer to default to)`);
      return undefined;
    }
    return {
      issuer: devIssuer.issuer,
      clientId: config?.client_id ?? devIssuer.consoleClient,
      publicUrl: config?.public_url,
      scopes: config?.scopes,
      allowInsecureHttp: true,
    };
  }
  const trusted = issuers.find((i) => i.issuer === config.issuer);
  if (!trusted)
    throw new Error(
      `${where}.issuer ${config.issuer} is not one of identity.issuers: the gateway would refuse its tokens`,
    );
  if (!config.client_id) throw new Error(`${where}.client_id is required with ${where}.issuer`);
  let clientSecret: string | undefined;
  if (config.client_secret_env) {
    clientSecret = process.env[config.client_secret_env];
    if (!clientSecret) throw new Error(`${where}.client_secret_env: $${config.client_secret_env} is not set`);
  }
  return {
    issuer: config.issuer,
    clientId: config.client_id,
    clientSecret,
    publicUrl: config.public_url,
    scopes: config.scopes,
    resource: config.resource,
    allowInsecureHttp: trusted.allowInsecureHttp,
  };
}

async function loadPolicy(config: GatewayConfig, bundles: BundleManager, log: Logger): Promise<void> {
  const p = config.policy;
  if (p.bundle) await bundles.addSource(new FileBundleSource({ path: p.bundle, log }));
  else if (p.policies)
    await bundles.addSource(new PolicyFolderSource({ build: { policies: p.policies }, log }));
  else if (p.url) {
    await bundles.addSource(
      new HttpBundleSource({
        url: p.url,
        minDelayMs: 10_000,
        maxDelayMs: 20_000,
        cacheDir: bundleCacheDir(config, log),
        log,
      }),
    );
  }
}

/**
 * Where the last good HTTP bundle is persisted: policy.cache_dir, else next to the embedded store (a gateway
 * with an embedded store has a data directory of its own; replicas sharing a PostgreSQL store may not).
 */
function bundleCacheDir(config: GatewayConfig, log: Logger): string | undefined {
  const dir = config.policy.cache_dir;
  if (dir) return dir;
  if (config.store?.type === "embedded") return join(config.store.dir, "bundle-cache");
  log.warn(
    { url: config.policy.url },
    "policy.cache_dir is not set: the HTTP bundle is not persisted, so a restart while the bundle server is down starts with no policy (every command blocked)",
  );
  return undefined;
}

export async function startGateway(config: GatewayConfig, extras: GatewayExtras = {}): Promise<Gateway> {
  const log = extras.log ?? silentLogger;
  const closers: Array<() => Promise<void>> = [];
  const closeAll = async () => {
    for (const c of closers.splice(0).reverse())
      await c().catch((err) => log.warn({ err: String(err) }, "shutdown step failed"));
  };
  try {
    // Credentials first: a missing secret is a configuration error, reported before anything starts.
    const resources = new Map<Protocol, AdapterResource<Record<string, unknown>>[]>();
    for (const r of config.resources)
      resources.set(r.kind, [...(resources.get(r.kind) ?? []), await adapterResource(r)]);
    const status = new StatusRegistry();
    const engine = new DecisionEngine();
    status.register("engine", () => engine.componentStatus());
    const verification = config.policy.verification
      ? {
          key: await readFile(config.policy.verification.key_file, "utf8"),
          algorithm: config.policy.verification.algorithm,
          keyId: config.policy.verification.key_id,
        }
      : undefined;
    const bundles = new BundleManager(engine, {
      verification,
      log,
      onLoad: (r) => metrics.bundleLoads.inc({ outcome: r.ok ? "activated" : "rejected" }),
      status, // each source reports as bundle:<name>
    });
    closers.push(() => bundles.close());
    await loadPolicy(config, bundles, log);

    let devIssuer: DevIssuer | null = null;
    const issuers = issuerConfigs(config);
    if (config.identity.dev_issuer) {
      devIssuer = await startDevIssuer({
        port: config.identity.dev_issuer.port,
        audience: config.identity.dev_issuer.audience,
        users: extras.devUsers ?? {},
        clients: extras.devClients,
        accessTokenTtlSeconds: extras.devTokenTtlSeconds,
        log,
      });
      closers.push(() => (devIssuer as DevIssuer).stop());
      issuers.push(devIssuer.issuerConfig());
      log.warn(
        { issuer: devIssuer.issuer },
        "DEVELOPMENT issuer running on loopback: never use it in production",
      );
    }
    const verifier = new TokenVerifier(issuers, { log });
    status.register("identity.verifier", () => verifier.componentStatus());

    const store = await openStore(
      config.store?.type === "postgres"
        ? { kind: "postgres", url: config.store.url ?? process.env[config.store.url_env ?? ""] ?? "" }
        : { kind: "pglite", dataDir: config.store?.type === "embedded" ? config.store.dir : undefined },
      log,
    );
    closers.push(() => store.close());
    const approvals = new ObservableApprovalService({
      store,
      pendingTtlS: config.approvals?.pending_ttl_s,
      log,
    });
    await approvals.start();
    closers.push(() => approvals.close());

    let audit: AuditTrail | null = null;
    let auditPort: AuditPort | undefined;
    if (config.audit) {
      const trail = await AuditTrail.open(
        {
          dir: config.audit.dir,
          maxBytes: config.audit.max_bytes,
          segmentBytes: config.audit.segment_bytes,
          durability: config.audit.durability,
          sinks: (config.audit.sinks ?? []).map((s) => sinkConfig(s)),
        },
        { logger: log, io: extras.auditIo },
      );
      audit = trail;
      closers.push(() => trail.close());
      registerAuditStatus(status, trail); // audit.spool, audit.sink:<name>
      auditPort = {
        recordDecision: (decision, ctx) =>
          trail.recordDecision(decision, {
            session_id: ctx.session.id,
            approval_id: ctx.approvalId,
            requested_by: ctx.session.clientAddr,
            action: ctx.action,
            reasons: ctx.reasons,
            command_text: ctx.commandText,
          }),
      };
    } else {
      log.warn("no audit trail configured: decisions are not recorded (set audit.dir)");
    }
    const pipeline = new CommandPipeline(engine, {
      audit: auditPort,
      approvals,
      approvalTimeoutMs: (config.approvals?.wait_timeout_s ?? 300) * 1000,
      log,
    });

    const sessions = new SessionOpener({ auth: verifier, audit, log });
    const listeners: Gateway["listeners"] = {};
    for (const adapter of ADAPTERS as readonly ProtocolAdapter[]) {
      // Validated against this adapter's listener schema when the configuration was loaded.
      const listenConfig = (config.listeners as Record<string, ListenerBaseConfig | undefined>)[
        adapter.protocol
      ];
      const own = resources.get(adapter.protocol) ?? [];
      if (!listenConfig) {
        if (own.length > 0)
          log.warn(
            { protocol: adapter.protocol },
            `resources of kind ${adapter.protocol} but no listeners.${adapter.protocol}`,
          );
        continue;
      }
      const tls = listenConfig.tls
        ? { cert: await readFile(listenConfig.tls.cert_file), key: await readFile(listenConfig.tls.key_file) }
        : undefined;
      const listener: AdapterListener = adapter.createListener({
        config: listenConfig,
        tls,
        resources: own,
        sessions,
        pipeline,
        status,
        log,
        peers: extras.peers,
      });
      const unregister = status.register(`listener:${adapter.protocol}`, () => listener.status());
      closers.push(async () => {
        unregister();
        await listener.close();
      });
      listeners[adapter.protocol] = await listener.listen();
    }

    let api: Gateway["api"] = null;
    if (config.listeners.api) {
      const hook = config.approvals?.webhook;
      const hookUrl = hook?.url ?? (hook?.url_env ? process.env[hook.url_env] : undefined);
      const app = buildApi({
        verifier,
        approvals,
        engine,
        store,
        status,
        log,
        adminGroups: config.approvals?.admin_groups ?? [],
        approverGroups: config.approvals?.approver_groups,
        auditGroups: config.listeners.api.audit_groups,
        audit: config.audit ? auditSource(config.audit, extras.auditRoot) : undefined,
        console: {
          assets: consoleAssets,
          login: consoleLogin(config.listeners.api.console, issuers, devIssuer),
        },
        webhook: hookUrl
          ? { url: hookUrl, headers: hook?.headers, maxAttempts: hook?.max_attempts }
          : undefined,
      });
      const host = config.listeners.api.host ?? "127.0.0.1";
      await app.listen({ host, port: config.listeners.api.port });
      const addr = app.server.address() as { port: number };
      api = { host, port: addr.port };
      // Closed before the approval service and the store it reads (closers run in reverse).
      closers.push(() => app.close());
    }

    return {
      engine,
      bundles,
      verifier,
      approvals,
      store,
      pipeline,
      sessions,
      audit,
      listeners,
      api,
      devIssuer,
      status,
      close: closeAll,
    };
  } catch (err) {
    await closeAll();
    throw err;
  }
}

/** A configured resource as its adapter gets it: the policy's resource, its upstream and its resolved secret. */
async function adapterResource(r: ResourceConfig): Promise<AdapterResource<Record<string, unknown>>> {
  return {
    resource: { name: r.name, kind: r.kind, labels: r.labels ?? {} },
    upstream: r.upstream,
    secret: r.credentials ? await resolveCredential(r.credentials, r.name) : "",
  };
}
