// How a long-running pamgate process learns it should stop.

/** Resolves at the first SIGINT or SIGTERM (Ctrl-C, a service manager, a cluster primary stopping its workers). */
export function untilStopSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    process.once("SIGINT", () => resolve("SIGINT"));
    process.once("SIGTERM", () => resolve("SIGTERM"));
  });
}
