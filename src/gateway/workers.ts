// One event loop per core: `workers: N` in the configuration runs N gateway processes (node:cluster) that share
// every listening socket — the primary accepts connections and hands them to the workers in turn — so a busy
// gateway uses every core. Each worker is a whole gateway with state of its own where state is per process:
//
// - its own audit spool, `<audit.dir>/worker-<i>` (a spool has one writer; each has its own hash chain, lock and
//   shippers; `pamgate audit verify --spool <audit.dir>/worker-<i>` checks one);
// - its own copy of the policy bundle, hot-loaded by its own watcher or poller, so every worker activates a new
//   bundle by itself (an HTTP bundle's last-good cache goes to `<policy.cache_dir>/worker-<i>`);
// - shared state through the PostgreSQL store, as between replicas: approvals asked on one worker are released
//   on another by LISTEN/NOTIFY. The embedded store is one process's, so workers need `store.type: postgres`; and
//   the development issuer signs with keys of its own process, so workers need a real issuer.
//
// What crosses workers goes through the primary as messages between peers (PeerChannel): a PostgreSQL
// CancelRequest arrives on whichever worker the primary picks, and is sent to the worker whose session it names
// (the worker's index is in the key the client was given). A worker that dies is started again (its spool
// recovers as after a crash). SIGTERM/SIGINT are forwarded to the workers, which drain as a single gateway does
// (src/cli/run.ts), and the primary waits for them — at most the drain and ship timeouts and a margin, then it
// kills what is left; SIGHUP is forwarded too, and each worker reloads the configuration by itself.
import cluster, { type Worker } from "node:cluster";
import { randomBytes } from "node:crypto";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { ConfigError, loadConfig } from "../config/load.js";
import type { GatewayConfig } from "../config/schema.js";
import type { Logger } from "../util/log.js";
import { watchStopSignals } from "../util/signals.js";

/** A message between workers, relayed by the primary. */
export interface PeerMessage {
  kind: string;
  [field: string]: unknown;
}

/** How a worker talks to the others (through the primary). */
export interface PeerChannel {
  /** This worker's index, 0 … count-1 (stable across restarts). */
  readonly index: number;
  readonly count: number;
  /**
   * A random secret the primary made at start, the same in every worker: what must agree across workers and is
   * random per process otherwise (the key of the `hash` masking strategy, so a value hashes alike on every worker).
   */
  readonly secret: Buffer;
  send(to: number, message: PeerMessage): void;
  on(kind: string, handler: (message: PeerMessage) => void): void;
}

const ENV_INDEX = "PAMGATE_WORKER_INDEX";
const ENV_COUNT = "PAMGATE_WORKER_COUNT";
const ENV_SECRET = "PAMGATE_WORKER_SECRET";
/** The envelope of peer messages on the cluster IPC channel. */
const ENVELOPE = "pamgate.peer";

/** How many workers the configuration asks for (1: no cluster). */
export function workerCount(config: GatewayConfig): number {
  const w = config.workers;
  if (w === undefined) return 1;
  return w === "auto" ? availableParallelism() : w;
}

/** Why this configuration cannot run as several workers, or null. */
export function workersProblem(config: GatewayConfig): string | null {
  if (workerCount(config) <= 1) return null;
  if (config.store?.type !== "postgres")
    return "workers > 1 need store.type: postgres (the embedded store belongs to one process, and the workers share approvals through the store)";
  if (config.identity.dev_issuer)
    return "workers > 1 cannot use identity.dev_issuer (each process would sign with keys of its own); configure identity.issuers";
  return null;
}

/** In a worker process: its channel to the others; null in a gateway that is not a cluster. */
export function peerChannel(): PeerChannel | null {
  if (!cluster.isWorker || process.env[ENV_INDEX] === undefined) return null;
  const index = Number(process.env[ENV_INDEX]);
  const count = Number(process.env[ENV_COUNT]);
  const handlers = new Map<string, (m: PeerMessage) => void>();
  process.on("message", (raw: unknown) => {
    const env = raw as { type?: string; message?: PeerMessage };
    if (env?.type !== ENVELOPE || !env.message) return;
    handlers.get(env.message.kind)?.(env.message);
  });
  const secret = Buffer.from(process.env[ENV_SECRET] ?? "", "hex");
  delete process.env[ENV_SECRET]; // not passed on to anything this worker starts
  return {
    index,
    count,
    secret,
    send: (to, message) => process.send?.({ type: ENVELOPE, to, message }),
    on: (kind, handler) => void handlers.set(kind, handler),
  };
}

/** The configuration a worker runs: per-process paths made its own. */
export function workerConfig(config: GatewayConfig, index: number): GatewayConfig {
  const own = `worker-${index}`;
  return {
    ...config,
    ...(config.audit ? { audit: { ...config.audit, dir: join(config.audit.dir, own) } } : {}),
    policy: {
      ...config.policy,
      ...(config.policy.cache_dir ? { cache_dir: join(config.policy.cache_dir, own) } : {}),
    },
  };
}

/** Beyond the drain and ship timeouts, how long the primary waits for its workers before it kills them. */
const STOP_MARGIN_MS = 15_000;

/**
 * In the primary: starts `count` workers (each re-runs this command with its index in the environment), relays
 * peer messages, starts a worker again when it dies, forwards SIGHUP, and at SIGTERM/SIGINT forwards it and
 * resolves once all have stopped (1 when one had to be killed or failed).
 */
export async function runPrimary(
  count: number,
  log: Logger,
  options: { file: string; config: GatewayConfig },
): Promise<number> {
  const byIndex = new Map<number, Worker>();
  const secret = randomBytes(32).toString("hex");
  let stopping = false;
  let failed = false;
  let config = options.config;
  const start = (index: number) => {
    const w = cluster.fork({ [ENV_INDEX]: String(index), [ENV_COUNT]: String(count), [ENV_SECRET]: secret });
    byIndex.set(index, w);
    w.on("message", (raw: unknown) => {
      const env = raw as { type?: string; to?: number; message?: PeerMessage };
      if (env?.type !== ENVELOPE || typeof env.to !== "number") return;
      byIndex.get(env.to)?.send({ type: ENVELOPE, message: env.message });
    });
    w.on("exit", (code, signal) => {
      if (byIndex.get(index) === w) byIndex.delete(index);
      if (stopping) {
        if (code !== 0) failed = true;
        return;
      }
      log.error({ worker: index, code, signal }, "pamgate worker died; starting it again");
      setTimeout(() => {
        if (!stopping) start(index);
      }, 500).unref();
    });
  };
  const signals = watchStopSignals(log);
  const onHup = () => {
    if (stopping) return; // still handled: SIGHUP's default would end the primary in the middle of the drain
    log.info({ workers: byIndex.size }, "pamgate primary: SIGHUP forwarded to the workers");
    for (const w of byIndex.values()) w.process.kill("SIGHUP");
    // The primary reads the file too, for its own part: the stop timeouts, and the worker count it cannot change.
    loadConfig(options.file).then(
      (next) => {
        if (workerCount(next) !== count)
          log.warn({ workers: count }, "workers: changed, but read only at start (restart to apply)");
        config = next;
      },
      (err: unknown) => {
        if (!(err instanceof ConfigError)) log.error({ err: String(err) }, "pamgate primary: reload failed");
      },
    );
  };
  process.on("SIGHUP", onHup);
  for (let i = 0; i < count; i++) start(i);
  log.info({ workers: count }, "pamgate primary: workers started");
  const signal = await signals.stopped;
  stopping = true;
  log.info({ signal }, "pamgate primary: stopping the workers (each drains its sessions)");
  const limitMs =
    ((config.shutdown?.drain_timeout_s ?? 30) + (config.shutdown?.ship_timeout_s ?? 10)) * 1000 +
    STOP_MARGIN_MS;
  const exits = [...byIndex.values()].map(
    (w) =>
      new Promise<void>((resolve) => {
        if (w.isDead()) return resolve();
        w.once("exit", () => resolve());
        w.process.kill("SIGTERM");
      }),
  );
  const timer = setTimeout(() => {
    failed = true;
    log.error({ limit_s: limitMs / 1000 }, "pamgate primary: workers still running; killing them");
    for (const w of byIndex.values()) w.process.kill("SIGKILL");
  }, limitMs);
  // A second SIGINT: the workers skip their drain too.
  signals.force.addEventListener("abort", () => {
    for (const w of byIndex.values()) w.process.kill("SIGINT");
  });
  await Promise.all(exits);
  clearTimeout(timer);
  log.info("pamgate primary: all workers stopped");
  return failed ? 1 : 0;
}
