// `pamgate run` as a real child process (bin/pamgate.js), for tests that signal, kill or restart a gateway:
// its output is collected, and `waitFor` waits until it says something.
import { type ChildProcess, spawn } from "node:child_process";
import { packagePath } from "../../src/util/tools.js";

export interface PamgateProcess {
  proc: ChildProcess;
  /** Resolves with its exit code when it exits. */
  exited: Promise<number | null>;
  /** Everything it printed so far (the last 500 kB). */
  output(): string;
  /** Resolves once `pattern` has been printed `count` times; rejects after `timeoutMs` or when it exits first. */
  waitFor(pattern: RegExp, options?: { count?: number; timeoutMs?: number }): Promise<void>;
  /** Signals it and resolves with its exit code (SIGKILL after `graceMs` if it has not exited). */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<number | null>;
}

export function startPamgate(
  configFile: string,
  env: NodeJS.ProcessEnv = {},
  args: string[] = [],
): PamgateProcess {
  const proc = spawn(
    process.execPath,
    [packagePath("bin", "pamgate.js"), "run", "--config", configFile, ...args],
    {
      env: { ...process.env, PAMGATE_LOG_LEVEL: "info", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let out = "";
  const collect = (c: Buffer) => {
    out = (out + c.toString()).slice(-500_000);
  };
  proc.stdout?.on("data", collect);
  proc.stderr?.on("data", collect);
  const exited = new Promise<number | null>((resolve) => proc.once("exit", (code) => resolve(code)));
  return {
    proc,
    exited,
    output: () => out,
    async waitFor(pattern, options = {}) {
      const count = options.count ?? 1;
      const deadline = Date.now() + (options.timeoutMs ?? 60_000);
      const global = new RegExp(
        pattern.source,
        pattern.flags.includes("g") ? pattern.flags : `${pattern.flags}g`,
      );
      while ((out.match(global) ?? []).length < count) {
        if (proc.exitCode !== null || proc.signalCode !== null)
          throw new Error(
            `pamgate exited (${proc.exitCode ?? proc.signalCode}) before printing ${pattern}:\n${out}`,
          );
        if (Date.now() > deadline)
          throw new Error(`pamgate did not print ${pattern} in time:\n${out.slice(-5000)}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async stop(signal = "SIGTERM", graceMs = 20_000) {
      if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;
      proc.kill(signal);
      const force = setTimeout(() => proc.kill("SIGKILL"), graceMs);
      const code = await exited;
      clearTimeout(force);
      return code;
    },
  };
}
