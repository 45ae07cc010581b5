// How a long-running pamgate process learns it should stop, or reload its configuration.
//
// - The first SIGTERM or SIGINT starts a graceful shutdown (`stopped` resolves). The handlers stay installed:
//   a second SIGTERM is ignored (a service manager that signals every process of the group, plus a cluster
//   primary forwarding its own, must not kill a worker in the middle of its drain), and a second SIGINT — Ctrl-C
//   twice — aborts `force`, so an impatient operator can skip the rest of the drain.
// - SIGHUP asks for a configuration reload (onReloadSignal). Without a handler Node.js would exit on it.
import type { Logger } from "./log.js";

export interface StopSignals {
  /** Resolves at the first SIGINT or SIGTERM. */
  stopped: Promise<NodeJS.Signals>;
  /** Aborted by a SIGINT after the first stop signal: stop draining, end what is left now. */
  force: AbortSignal;
  /** Removes the handlers. */
  dispose(): void;
}

/** Installs the SIGTERM/SIGINT handlers of a gateway process (see the top of this file). */
export function watchStopSignals(log?: Logger): StopSignals {
  const force = new AbortController();
  let first: NodeJS.Signals | null = null;
  let resolveStopped: (s: NodeJS.Signals) => void = () => {};
  const stopped = new Promise<NodeJS.Signals>((resolve) => {
    resolveStopped = resolve;
  });
  const handler = (signal: NodeJS.Signals) => {
    if (first === null) {
      first = signal;
      resolveStopped(signal);
      return;
    }
    if (signal === "SIGINT" && !force.signal.aborted) {
      log?.warn("second SIGINT: not waiting for open sessions any longer");
      force.abort();
      return;
    }
    log?.info({ signal }, `${signal} ignored: already shutting down (SIGINT again skips the drain)`);
  };
  process.on("SIGTERM", handler);
  process.on("SIGINT", handler);
  return {
    stopped,
    force: force.signal,
    dispose: () => {
      process.off("SIGTERM", handler);
      process.off("SIGINT", handler);
    },
  };
}

/**
 * Calls `reload` at every SIGHUP, one at a time: a SIGHUP that arrives during a reload runs one more reload
 * after it (several coalesce into one). Returns the function that stops reloading; the handler stays, so a
 * SIGHUP during the shutdown that follows is ignored rather than ending the process (Node.js's default).
 */
export function onReloadSignal(reload: () => Promise<void>): () => void {
  let running: Promise<void> | null = null;
  let again = false;
  let stopped = false;
  const run = () => {
    if (stopped) return;
    if (running) {
      again = true;
      return;
    }
    running = reload()
      .catch(() => {}) // the reload reports its own failures
      .finally(() => {
        running = null;
        if (again) {
          again = false;
          run();
        }
      });
  };
  process.on("SIGHUP", run);
  return () => {
    stopped = true;
  };
}
