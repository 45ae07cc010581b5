// The PostgreSQL statement analyzer (the libpg-query parser) in the gateway's status model. Kept apart from the
// analyzer itself, which holds no status of its own beyond "loaded" and "broken": whoever loads it (the
// listener) tracks the load, and analyzerFailure() says whether the parser failed internally since.
//
//   const analyzer = new AnalyzerStatus(analyzerFailure);
//   await analyzer.track(initAnalyzer());
//   status.register("postgres.analyzer", () => analyzer.status());
import type { ComponentStatus } from "../../status/status.js";

export class AnalyzerStatus {
  private state: "loading" | "loaded" | "failed" = "loading";
  private loadError: string | null = null;

  /** `failure`: the analyzer's own report of an internal parser failure (analyzerFailure), null while sound. */
  constructor(private readonly failure: () => string | null) {}

  /** Follows the parser's load: resolves or rejects as `loading` does. */
  async track(loading: Promise<void>): Promise<void> {
    try {
      await loading;
      this.state = "loaded";
    } catch (err) {
      this.state = "failed";
      this.loadError = err instanceof Error ? err.message : String(err);
      throw err;
    }
  }

  status(): ComponentStatus {
    if (this.state === "loading") return { state: "not_ready", message: "the SQL parser is loading" };
    if (this.state === "failed") {
      return {
        state: "error",
        message: `the SQL parser cannot be loaded: ${this.loadError}; every statement is refused`,
      };
    }
    // A parser that failed internally may be corrupted: analysis fails closed (every statement is refused)
    // until the gateway is restarted, so the gateway is not ready.
    const broken = this.failure();
    if (broken !== null) return { state: "error", message: broken };
    return { state: "ok" };
  }
}
