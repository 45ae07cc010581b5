// Where policy bundles come from. A BundleSource fetches candidate archives (from a watched file, a policy folder
// rebuilt with opa, an HTTP bundle server) and hands each to the BundleLoader — the BundleManager — which
// verifies it completely and activates it or rejects it. A source never activates anything itself, so every
// bundle, whatever its origin, passes the same checks (format, entrypoints, data, signature).
//
//   const manager = new BundleManager(engine, { verification, status });
//   await manager.addSource(new FileBundleSource({ path: "build/bundle.tar.gz" }));   // file-source.ts
//   await manager.addSource(new PolicyFolderSource({ build: { policies: "policies" } }));
//   await manager.addSource(new HttpBundleSource({ url, cacheDir }));                  // http-source.ts
//   …
//   await manager.close();   // stops every source
//
// Each source reports its own state in the status model (registered as `bundle:<name>`): not_ready before its
// first attempt ends, ok while its latest bundle is active, warn when it serves an older bundle than it should
// (the newest candidate was rejected, the server is unreachable), error when it has never produced a bundle.
import type { ComponentStatus } from "../status/status.js";

/** The outcome of one candidate: its revision once active, or why it was rejected. */
export type LoadResult = { ok: true; revision: string } | { ok: false; error: string };

/** What a source hands its candidates to (the BundleManager). */
export interface BundleLoader {
  /**
   * Verifies `archive` completely and activates it if valid; `source` names where it came from (status, logs).
   * Never throws: a bad bundle is a `{ok: false}` with the reason, and the active policy stays.
   */
  load(archive: Buffer, source: string): Promise<LoadResult>;
  /** Records a candidate that never became an archive (an unreadable file, a failed build), like a rejection. */
  reject(source: string, message: string): LoadResult;
}

export interface BundleSource {
  /** Unique among a manager's sources: the status component is `bundle:<name>`. */
  readonly name: string;
  /**
   * Makes the first attempt (resolving once it has ended, successfully or not; a source that cannot get a
   * bundle reports it in status() rather than throwing), then keeps the policy current until stop().
   */
  start(loader: BundleLoader): Promise<void>;
  /** Stops watching or polling and waits for a load in progress. */
  stop(): Promise<void>;
  status(): ComponentStatus;
}

/**
 * The state a file-like source reports: the revision it last activated and the latest failure. Shared by the
 * file and policy-folder sources, which differ only in how they get an archive.
 */
export class SourceHealth {
  private attempts = 0;
  private revision: string | null = null;
  private activatedAt: string | null = null;
  private lastError: { message: string; at: string } | null = null;
  private watchError: string | null = null;

  constructor(
    /** What the source reads, for messages ("bundle file build/bundle.tar.gz"). */
    private readonly what: string,
    private readonly details: Record<string, unknown>,
  ) {}

  record(result: LoadResult): void {
    this.attempts++;
    const at = new Date().toISOString();
    if (result.ok) {
      this.revision = result.revision;
      this.activatedAt = at;
      this.lastError = null;
    } else {
      this.lastError = { message: result.error, at };
    }
  }

  /** The watcher failed: changes may go unseen, so the source is at best `warn` until it is restarted. */
  watchFailed(message: string): void {
    this.watchError = message;
  }

  status(): ComponentStatus {
    const details = {
      ...this.details,
      revision: this.revision,
      activated_at: this.activatedAt,
      last_error: this.lastError,
      watch_error: this.watchError,
    };
    if (this.attempts === 0) {
      return { state: "not_ready", message: `${this.what}: not loaded yet`, details };
    }
    if (this.revision === null) {
      return {
        state: "error",
        message: `${this.what}: no bundle was activated: ${this.lastError?.message ?? "unknown error"}`,
        details,
      };
    }
    if (this.lastError) {
      return {
        state: "warn",
        message: `${this.what}: revision ${this.revision} stays active; the newest candidate was rejected: ${this.lastError.message}`,
        details,
      };
    }
    if (this.watchError) {
      return {
        state: "warn",
        message: `${this.what}: revision ${this.revision} is active, but changes may go unseen: the watcher failed: ${this.watchError}`,
        details,
      };
    }
    return { state: "ok", message: `${this.what}: revision ${this.revision}`, details };
  }
}
