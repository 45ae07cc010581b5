// `pamgate run --config gateway.yaml`: the gateway as deployed. The configuration is validated before
// anything starts; its errors name the file, the line and the field.
import { loadConfig } from "../config/load.js";
import { startGateway } from "../gateway/gateway.js";
import { createLogger } from "../util/log.js";
import { CliError, parse } from "./args.js";

export async function runCommand(argv: string[]): Promise<number> {
  const { values } = parse("run", argv, { config: { type: "string", short: "c" } });
  if (!values.config) throw new CliError("run: --config FILE is required (see examples/gateway.yaml)");
  const config = await loadConfig(values.config);
  const log = createLogger();
  const gw = await startGateway(config, { log });
  log.info(
    {
      listeners: gw.listeners,
      api: gw.api,
      revision: gw.engine.revision,
      resources: config.resources.map((r) => r.name),
    },
    "pamgate running",
  );
  await new Promise<void>((resolve) => {
    process.once("SIGINT", () => resolve());
    process.once("SIGTERM", () => resolve());
  });
  log.info("shutting down");
  await gw.close();
  return 0;
}
