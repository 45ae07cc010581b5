// `pamgate run --config gateway.yaml`: the gateway as deployed. The configuration is validated before
// anything starts; its errors name the file, the line and the field.
//
// Signals (docs/deployment.md#signals):
//   SIGTERM, SIGINT  graceful shutdown: /readyz answers 503, the listeners stop accepting, open sessions may
//                    finish for up to shutdown.drain_timeout_s (default 30), the rest are ended (PostgreSQL:
//                    FATAL 57P01 admin_shutdown), the audit spool is flushed and its sinks get up to
//                    shutdown.ship_timeout_s (default 10) to ship; exit code 0. A second SIGINT skips the drain.
//   SIGHUP           reload: the file is read and validated again; an invalid one is logged (file, line, field)
//                    and the gateway goes on with the configuration it has; a valid one is applied as far as it
//                    can be without dropping a connection (src/gateway/reload.ts), and the log says what
//                    changed and what needs a restart.
import cluster from "node:cluster";
import { mkdirSync } from "node:fs";
import { ConfigError, loadConfig } from "../config/load.js";
import type { GatewayConfig } from "../config/schema.js";
import { type Gateway, startGateway } from "../gateway/gateway.js";
import {
  type PeerChannel,
  peerChannel,
  runPrimary,
  workerConfig,
  workerCount,
  workersProblem,
} from "../gateway/workers.js";
import { errorText } from "../util/errors.js";
import { createLogger, type Logger } from "../util/log.js";
import { onReloadSignal, watchStopSignals } from "../util/signals.js";
import { CliError, parse } from "./args.js";

/** The shutdown timeouts of a configuration, in milliseconds. */
export function shutdownTimeouts(config: GatewayConfig): { drainMs: number; shipMs: number } {
  return {
    drainMs: (config.shutdown?.drain_timeout_s ?? 30) * 1000,
    shipMs: (config.shutdown?.ship_timeout_s ?? 10) * 1000,
  };
}

export async function runCommand(argv: string[]): Promise<number> {
  const { values } = parse("run", argv, { config: { type: "string", short: "c" } });
  if (!values.config) throw new CliError("run: --config FILE is required (see examples/gateway.yaml)");
  const file = values.config;
  let config = await loadConfig(file);
  const log = createLogger();
  // A read-only root file system gives pamgate a writable TMPDIR on its volume; make sure it exists.
  if (process.env.TMPDIR) mkdirSync(process.env.TMPDIR, { recursive: true });
  const workers = workerCount(config);
  if (workers > 1) {
    const problem = workersProblem(config);
    if (problem) throw new CliError(`run: ${file}: ${problem}`);
    // The primary only accepts connections and hands them to the workers; each worker is a whole gateway.
    if (cluster.isPrimary) return exitSoon(await runPrimary(workers, log, { file, config }));
  }
  const peers = peerChannel();
  // The console's audit search reads every worker's spool: the directory above the worker's own.
  const auditRoot = config.audit?.dir;
  if (peers) config = workerConfig(config, peers.index);
  // Installed before the start, so a SIGTERM while starting still shuts down cleanly once started.
  const signals = watchStopSignals(log);
  const gw = await startGateway(config, { log, peers: peers ?? undefined, auditRoot });
  log.info(
    {
      ...(peers ? { worker: peers.index, pid: process.pid } : {}),
      listeners: gw.listeners,
      api: gw.api,
      revision: gw.engine.revision,
      resources: config.resources.map((r) => r.name),
    },
    "pamgate running",
  );
  const stopReloading = onReloadSignal(async () => {
    const next = await reloadFrom(file, gw, peers, log);
    if (next) config = next;
  });
  const signal = await signals.stopped;
  stopReloading();
  const { drainMs, shipMs } = shutdownTimeouts(config);
  log.info(
    { signal, drain_timeout_s: drainMs / 1000, ship_timeout_s: shipMs / 1000 },
    "shutting down: new connections are refused, open sessions may finish",
  );
  const report = await gw.shutdown({ drainMs, shipMs, force: signals.force });
  log.info(
    { ended_sessions: report.ended, drained_ms: report.drainedMs },
    "pamgate stopped: every audit record is on disk",
  );
  if (peers) process.disconnect?.(); // a worker's channel to the primary would keep it alive
  return exitSoon(0);
}

/** Whatever still holds the event loop (a client library's timer) must not keep a stopped gateway alive. */
function exitSoon(code: number): number {
  setTimeout(() => process.exit(code), 3000).unref();
  return code;
}

/**
 * SIGHUP: reads and validates the file again and applies it. Returns the configuration now running, or null
 * when the file could not be used (logged; the gateway goes on as it was).
 */
async function reloadFrom(
  file: string,
  gw: Gateway,
  peers: PeerChannel | null,
  log: Logger,
): Promise<GatewayConfig | null> {
  log.info({ config: file }, "SIGHUP: reloading the configuration");
  let next: GatewayConfig;
  try {
    next = await loadConfig(file);
  } catch (err) {
    const problems = err instanceof ConfigError ? err.problems : [errorText(err)];
    log.error(
      { config: file, problems },
      `configuration reload failed; still running on the previous configuration: ${problems.join("; ")}`,
    );
    return null;
  }
  if (peers) next = workerConfig(next, peers.index);
  try {
    const { applied, restartRequired } = await gw.reload(next);
    log.info(
      { config: file, applied, restart_required: restartRequired },
      applied.length > 0
        ? `configuration reloaded: ${applied.join("; ")}`
        : "configuration reloaded: nothing to apply",
    );
    if (restartRequired.length > 0)
      log.warn(
        { config: file, restart_required: restartRequired },
        `changed, but read only at start (restart to apply): ${restartRequired.join(", ")}`,
      );
    return next;
  } catch (err) {
    log.error(
      { config: file, err: errorText(err) },
      `configuration reload failed; still running on the previous configuration: ${errorText(err)}`,
    );
    return null;
  }
}
