// `pamgate run --config gateway.yaml`: the gateway as deployed. The configuration is validated before
// anything starts; its errors name the file, the line and the field.
import cluster from "node:cluster";
import { loadConfig } from "../config/load.js";
import { startGateway } from "../gateway/gateway.js";
import { peerChannel, runPrimary, workerConfig, workerCount, workersProblem } from "../gateway/workers.js";
import { createLogger } from "../util/log.js";
import { untilStopSignal } from "../util/signals.js";
import { CliError, parse } from "./args.js";

export async function runCommand(argv: string[]): Promise<number> {
  const { values } = parse("run", argv, { config: { type: "string", short: "c" } });
  if (!values.config) throw new CliError("run: --config FILE is required (see examples/gateway.yaml)");
  let config = await loadConfig(values.config);
  const log = createLogger();
  const workers = workerCount(config);
  if (workers > 1) {
    const problem = workersProblem(config);
    if (problem) throw new CliError(`run: ${values.config}: ${problem}`);
    // The primary only accepts connections and hands them to the workers; each worker is a whole gateway.
    if (cluster.isPrimary) return runPrimary(workers, log);
  }
  const peers = peerChannel();
  // The console's audit search reads every worker's spool: the directory above the worker's own.
  const auditRoot = config.audit?.dir;
  if (peers) config = workerConfig(config, peers.index);
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
  await untilStopSignal();
  log.info("shutting down");
  await gw.close();
  return 0;
}
