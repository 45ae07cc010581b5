// Assembles a running gateway from its configuration: policy engine and bundle source, identity, store,
// approvals, audit trail, the command pipeline, and the protocol listeners. Each part is built by its own
// module; this file only wires them and owns their shutdown order.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { AuditSource } from "../api/audit.js";
import { Rights } from "../api/auth.js";
import type { ConsoleLoginOptions } from "../api/console.js";
import { consoleAssets } from "../api/console-assets.js";
import { buildApi, ObservableApprovalService, WebhookNotifier } from "../api/index.js";
import type { ApprovalService } from "../approvals/service.js";
import { AuditTrail, registerAuditStatus, type SinkConfig, type SpoolIo } from "../audit/index.js";
import { spoolRecords } from "../audit/reader.js";
import {
  findSpoolDirs,
  PostgresDecisionSearch,
  postgresSessionRecords,
  SpoolDecisionSearch,
} from "../audit/search.js";
import type { BundleLoadOptions } from "../bundles/bundle.js";
import { FileBundleSource, PolicyFolderSource } from "../bundles/file-source.js";
import { HttpBundleSource } from "../bundles/http-source.js";
import { BundleManager, type BundleSource } from "../bundles/manager.js";
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
import { errorText } from "../util/errors.js";
import { type Logger, silentLogger } from "../util/log.js";
import { planReload, resourceChanges } from "./reload.js";
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
  /** Closes everything now: open sessions are ended (PostgreSQL: FATAL 57P01), the audit spool is closed. */
  close(): Promise<void>;
  /**
   * The graceful shutdown of `pamgate run` at SIGTERM: /readyz answers 503 from now on, the listeners stop
   * accepting, open sessions may go on for up to `drainMs` (or until `force` is aborted), then the rest are
   * ended, every record is written and fsynced, and the sinks get up to `shipMs` to ship what the spool holds.
   */
  shutdown(options: ShutdownOptions): Promise<ShutdownReport>;
  /** Whether shutdown() has started. */
  readonly draining: boolean;
  /**
   * A configuration reload (SIGHUP): applies what can change without dropping a connection and reports what
   * needs a restart (src/gateway/reload.ts lists both). Throws, leaving the running configuration in place,
   * when the new one cannot be used (a credential that cannot be read, a bundle source that brings no bundle).
   */
  reload(next: GatewayConfig): Promise<ReloadReport>;
}

export interface ShutdownOptions {
  drainMs: number;
  shipMs: number;
  /** Aborted: stop waiting for open sessions (a second Ctrl-C). */
  force?: AbortSignal;
}

export interface ShutdownReport {
  /** Sessions still open when the drain ended, which were then ended by the gateway. */
  ended: number;
  drainedMs: number;
}

export interface ReloadReport {
  /** What changed and now applies (to new sessions, for resources). */
  applied: string[];
  /** What changed but is read only at start: it takes effect at the next restart. */
  restartRequired: string[];
}

/** How long draining sessions are polled for. */
const DRAIN_POLL_MS = 100;

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

/** The bundle source the policy section names (new instances each time: a stopped source is not restarted). */
function policySources(config: GatewayConfig, log: Logger): BundleSource[] {
  const p = config.policy;
  if (p.bundle) return [new FileBundleSource({ path: p.bundle, log })];
  if (p.policies) return [new PolicyFolderSource({ build: { policies: p.policies }, log })];
  if (p.url) {
    return [
      new HttpBundleSource({
        url: p.url,
        minDelayMs: 10_000,
        maxDelayMs: 20_000,
        cacheDir: bundleCacheDir(config, log),
        log,
      }),
    ];
  }
  return [];
}

async function policyVerification(config: GatewayConfig): Promise<BundleLoadOptions["verification"]> {
  const v = config.policy.verification;
  if (!v) return undefined;
  let key: string;
  try {
    key = await readFile(v.key_file, "utf8");
  } catch (err) {
    throw new Error(`policy.verification.key_file: cannot read ${v.key_file}: ${errorText(err)}`);
  }
  return { key, algorithm: v.algorithm, keyId: v.key_id };
}

/** Every resource as its adapter gets it, by protocol (credentials resolved: a missing secret throws). */
async function adapterResources(
  config: GatewayConfig,
): Promise<Map<Protocol, AdapterResource<Record<string, unknown>>[]>> {
  const resources = new Map<Protocol, AdapterResource<Record<string, unknown>>[]>();
  for (const r of config.resources)
    resources.set(r.kind, [...(resources.get(r.kind) ?? []), await adapterResource(r)]);
  return resources;
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
  /** The configuration running now (a reload replaces it). */
  let current = config;
  /** How long the audit sinks get at close (shutdown() sets it). */
  let shipMs = 0;
  let draining = false;
  try {
    // Credentials first: a missing secret is a configuration error, reported before anything starts.
    let resources = await adapterResources(config);
    const status = new StatusRegistry();
    status.register("lifecycle", () =>
      draining
        ? {
            state: "not_ready",
            message: "draining: the gateway is shutting down and refuses new connections",
          }
        : { state: "ok" },
    );
    const engine = new DecisionEngine();
    status.register("engine", () => engine.componentStatus());
    const bundles = new BundleManager(engine, {
      verification: await policyVerification(config),
      log,
      onLoad: (r) => metrics.bundleLoads.inc({ outcome: r.ok ? "activated" : "rejected" }),
      status, // each source reports as bundle:<name>
    });
    closers.push(() => bundles.close());
    for (const source of policySources(config, log)) await bundles.addSource(source);

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
    let unregisterAudit = () => {};
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
      // Every record written and fsynced (spool.idle), the sinks given shipMs to ship, then the spool closed.
      closers.push(() => trail.close({ drainMs: shipMs }));
      unregisterAudit = registerAuditStatus(status, trail); // audit.spool, audit.sink:<name>
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

    const sessions = new SessionOpener({
      auth: verifier,
      audit,
      log,
      maxSessionsPerIdentity: config.limits?.sessions_per_identity,
    });
    // Before the listeners' closers: at close, sessions end first, then their last records are awaited.
    closers.push(() => sessions.settled());
    const listeners: Gateway["listeners"] = {};
    const running = new Map<Protocol, AdapterListener>();
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
      running.set(adapter.protocol, listener);
    }

    // The webhook hears of every new approval request; a reload may replace it.
    let webhook: WebhookNotifier | null = null;
    const webhookOf = (c: GatewayConfig): WebhookNotifier | null => {
      const hook = c.approvals?.webhook;
      const url = hook?.url ?? (hook?.url_env ? process.env[hook.url_env] : undefined);
      if (!c.listeners.api || !url) return null;
      return new WebhookNotifier({ url, headers: hook?.headers, maxAttempts: hook?.max_attempts }, { log });
    };
    const rightsOf = (c: GatewayConfig) => ({
      adminGroups: c.approvals?.admin_groups ?? [],
      approverGroups: c.approvals?.approver_groups,
      auditGroups: c.listeners.api?.audit_groups,
    });
    const rights = new Rights(rightsOf(config));
    let api: Gateway["api"] = null;
    if (config.listeners.api) {
      const app = buildApi({
        verifier,
        approvals,
        engine,
        store,
        status,
        log,
        adminGroups: config.approvals?.admin_groups ?? [],
        rights,
        audit: config.audit ? auditSource(config.audit, extras.auditRoot) : undefined,
        console: {
          assets: consoleAssets,
          login: consoleLogin(config.listeners.api.console, issuers, devIssuer),
        },
      });
      webhook = webhookOf(config);
      const unsubscribe = approvals.onCreated((request) => webhook?.notify(request));
      const host = config.listeners.api.host ?? "127.0.0.1";
      await app.listen({ host, port: config.listeners.api.port });
      const addr = app.server.address() as { port: number };
      api = { host, port: addr.port };
      // Closed before the approval service and the store it reads (closers run in reverse).
      closers.push(async () => {
        await app.close();
        unsubscribe();
        await webhook?.close();
      });
    }

    const openSessions = () => {
      let n = 0;
      for (const l of running.values()) n += l.sessionCount;
      return n;
    };

    const shutdown = async (options: ShutdownOptions): Promise<ShutdownReport> => {
      const started = Date.now();
      draining = true; // /readyz: 503 from now on
      for (const l of running.values()) await l.stopAccepting?.();
      const deadline = started + options.drainMs;
      let open = openSessions();
      if (open > 0)
        log.info(
          { sessions: open, drain_timeout_s: options.drainMs / 1000 },
          "draining: new connections are refused; open sessions may finish",
        );
      while (open > 0 && Date.now() < deadline && !options.force?.aborted) {
        await new Promise((r) => setTimeout(r, Math.min(DRAIN_POLL_MS, Math.max(1, deadline - Date.now()))));
        open = openSessions();
      }
      if (open > 0)
        log.warn(
          { sessions: open },
          options.force?.aborted
            ? "drain cut short: ending the open sessions"
            : "drain timeout: ending the sessions still open",
        );
      shipMs = options.shipMs;
      await closeAll();
      return { ended: open, drainedMs: Date.now() - started };
    };

    const reload = async (next: GatewayConfig): Promise<ReloadReport> => {
      if (draining) throw new Error("the gateway is shutting down");
      const plan = planReload(current, next);
      const applied: string[] = [];
      const restartRequired = [...plan.restartRequired];

      // 1. Everything that can fail, checked before anything changes.
      const nextResources = await adapterResources(next);
      const commits: Array<() => void> = [];
      const resourceNotes: string[] = [];
      const before = new Map(current.resources.map((r) => [r.name, r]));
      const secrets = new Map<string, string>();
      for (const list of resources.values()) for (const r of list) secrets.set(r.resource.name, r.secret);
      const rotated = next.resources
        .filter((r) => before.has(r.name) && !plan.resources.changed.includes(r.name))
        .filter((r) =>
          (nextResources.get(r.kind) ?? []).some(
            (e) => e.resource.name === r.name && e.secret !== secrets.get(r.name),
          ),
        )
        .map((r) => r.name);
      for (const name of plan.resources.added) resourceNotes.push(`resources: ${name} added`);
      for (const name of plan.resources.removed) resourceNotes.push(`resources: ${name} removed`);
      for (const name of plan.resources.changed) {
        const a = before.get(name) as ResourceConfig;
        const b = next.resources.find((r) => r.name === name) as ResourceConfig;
        resourceNotes.push(`resources: ${name} (${resourceChanges(a, b).join(", ")})`);
      }
      for (const name of rotated) resourceNotes.push(`resources: ${name} (credentials re-read: changed)`);
      if (resourceNotes.length > 0) {
        const touched = new Set<Protocol>();
        for (const r of [...current.resources, ...next.resources]) {
          const name = r.name;
          if (
            plan.resources.added.includes(name) ||
            plan.resources.removed.includes(name) ||
            plan.resources.changed.includes(name) ||
            rotated.includes(name)
          )
            touched.add(r.kind);
        }
        for (const protocol of touched) {
          const listener = running.get(protocol);
          if (!listener) continue; // no listener: the resources wait for one (listeners.<protocol> needs a restart)
          if (!listener.prepareResources) {
            restartRequired.push(`resources of kind ${protocol}`);
            continue;
          }
          try {
            commits.push(listener.prepareResources(nextResources.get(protocol) ?? []));
          } catch (err) {
            throw new Error(`resources of kind ${protocol}: ${errorText(err)}`);
          }
        }
      }
      const verification = plan.policy ? await policyVerification(next) : undefined;
      let sinks: SinkConfig[] | null = null;
      if (plan.auditSinks && audit) sinks = (next.audit?.sinks ?? []).map((s) => sinkConfig(s));
      let nextWebhook: WebhookNotifier | null | undefined;
      if (plan.approvals.includes("approvals.webhook")) {
        try {
          nextWebhook = webhookOf(next);
        } catch (err) {
          throw new Error(`approvals.webhook: ${errorText(err)}`);
        }
      }

      // 2. The policy: a new source must bring a bundle, or the previous one comes back.
      if (plan.policy) {
        const result = await bundles.replaceSources(policySources(next, log), verification);
        if (!result.ok) {
          const back = await bundles.replaceSources(
            policySources(current, log),
            await policyVerification(current).catch(() => undefined),
          );
          if (!back.ok)
            log.error({ err: back.error }, "the previous bundle source could not be restarted either");
          await nextWebhook?.close();
          throw new Error(`policy: the new bundle source was not used: ${result.error}`);
        }
        applied.push(`policy (revision ${engine.revision ?? "none"})`);
      }

      // 3. The rest cannot fail.
      for (const commit of commits) commit();
      resources = nextResources;
      applied.push(...resourceNotes);
      let sinksApplied = false;
      if (sinks && audit) {
        try {
          const changed = await audit.setSinks(sinks);
          unregisterAudit();
          unregisterAudit = registerAuditStatus(status, audit);
          sinksApplied = true;
          applied.push(
            `audit.sinks (${[...changed.added.map((n) => `+${n}`), ...changed.removed.map((n) => `-${n}`)].join(", ") || "settings"})`,
          );
        } catch (err) {
          log.error({ err: errorText(err) }, "audit.sinks not changed");
          restartRequired.push("audit.sinks");
        }
      }
      if (plan.approvals.includes("approvals.wait_timeout_s"))
        pipeline.setApprovalTimeout((next.approvals?.wait_timeout_s ?? 300) * 1000);
      if (plan.approvals.includes("approvals.pending_ttl_s"))
        approvals.setPendingTtl(next.approvals?.pending_ttl_s ?? 900);
      if (nextWebhook !== undefined) {
        const old = webhook;
        webhook = nextWebhook;
        void old?.close();
      }
      rights.update(rightsOf(next));
      applied.push(...plan.approvals);
      if (plan.auditGroups) applied.push("listeners.api.audit_groups");
      if (plan.shutdown) applied.push("shutdown");
      // What is read only at start stays as it was, so the next reload compares against what runs.
      const api = current.listeners.api;
      current = {
        ...next,
        listeners: {
          ...current.listeners,
          ...(api ? { api: { ...api, audit_groups: next.listeners.api?.audit_groups } } : {}),
        },
        identity: current.identity,
        store: current.store,
        workers: current.workers,
        audit: current.audit && {
          ...current.audit,
          sinks: sinksApplied ? next.audit?.sinks : current.audit.sinks,
        },
      };
      return { applied, restartRequired };
    };

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
      shutdown,
      get draining() {
        return draining;
      },
      reload,
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
