// The HTTP bundle source: polls a bundle server (OPA's bundle service protocol, with ETag; see http-poller.ts),
// hands each new archive to the loader, and persists the last good one (bundle-cache.ts) when given a cacheDir.
//
// Start: one poll, awaited (at most startTimeoutMs). If it brings no bundle — the server is unreachable, answers
// an error, or serves a bundle that is rejected — and this source has activated nothing yet, the persisted
// bundle is loaded instead, through the same verification as any candidate (a persisted archive that no longer
// verifies, say after a key rotation, is rejected like any other). Polling then goes on in the background and
// the server's bundle replaces the persisted one as soon as it arrives.
//
// Loads are serialized, and the persisted bundle is only activated while this source has activated nothing:
// a poll that lands during the fallback wins, and an old copy never replaces a newer download.
import type { ComponentStatus } from "../status/status.js";
import { errorText } from "../util/errors.js";
import { type Logger, silentLogger } from "../util/log.js";
import { BundleCache } from "./bundle-cache.js";
import { BundlePoller, type BundlePollerOptions } from "./http-poller.js";
import type { BundleLoader, BundleSource } from "./source.js";

export { BundleDownloadError, nextPollDelay, type PollResult } from "./http-poller.js";

export interface HttpBundleSourceOptions
  extends Pick<
    BundlePollerOptions,
    "url" | "token" | "minDelayMs" | "maxDelayMs" | "maxBytes" | "timeoutMs"
  > {
  /** Where the last good bundle is kept; without it nothing is persisted. */
  cacheDir?: string;
  /** How long start() waits for the first poll before falling back to the persisted bundle. Default 10 s. */
  startTimeoutMs?: number;
  /** Default "http". */
  name?: string;
  log?: Logger;
}

/** Thrown from the poller's onBundle when the loader rejected the archive: the server answered, the bundle is bad. */
class BundleRejectedError extends Error {
  override name = "BundleRejectedError";
}

const DEFAULT_START_TIMEOUT_MS = 10_000;

export class HttpBundleSource implements BundleSource {
  readonly name: string;
  private readonly poller: BundlePoller;
  private readonly cache: BundleCache | null;
  private readonly log: Logger;
  private readonly startTimeoutMs: number;
  private loader: BundleLoader | null = null;
  private stopped = false;
  /** Runs loads one after another (see the file's comment). */
  private chain: Promise<unknown> = Promise.resolve();
  private fallback: Promise<void> | null = null;

  // What status() reports.
  private firstPollDone = false;
  /** The revision this source activated last, and whether it came from the persisted copy. */
  private revision: string | null = null;
  private fromCache = false;
  private lastSuccessAt: string | null = null;
  /** The latest poll failure (network, HTTP status, size, timeout), cleared by a successful poll. */
  private pollError: { message: string; at: string } | null = null;
  /** The latest rejected download, cleared by a successful poll. */
  private rejection: { message: string; at: string } | null = null;
  /** Why the persisted bundle could not be used (none, unreadable, rejected), when it was needed. */
  private cacheProblem: string | null = null;
  /** The last good bundle could not be persisted: a restart while the server is down would start on nothing. */
  private persistError: string | null = null;

  constructor(opts: HttpBundleSourceOptions) {
    this.name = opts.name ?? "http";
    this.log = opts.log ?? silentLogger;
    this.startTimeoutMs = opts.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;
    this.poller = new BundlePoller({
      url: opts.url,
      token: opts.token,
      minDelayMs: opts.minDelayMs,
      maxDelayMs: opts.maxDelayMs,
      maxBytes: opts.maxBytes,
      timeoutMs: opts.timeoutMs,
      onBundle: (archive) => this.accept(archive),
      onError: (err) => this.failed(err),
      onPoll: () => this.succeeded(),
    });
    this.cache = opts.cacheDir ? new BundleCache(opts.cacheDir, opts.url) : null;
  }

  /** The bundle server, as shown in messages (query string elided). */
  get url(): string {
    return this.poller.shownUrl;
  }

  async start(loader: BundleLoader): Promise<void> {
    if (this.loader) throw new Error(`bundle source ${this.name} is already started`);
    this.loader = loader;
    const first = this.poller.pollOnce().then(
      () => {
        this.succeeded();
        return true;
      },
      (err: unknown) => {
        this.failed(err);
        return false;
      },
    );
    // The background loop starts once the first poll has ended, so the two never overlap; after a failure it
    // retries on the backoff schedule.
    void first.then((ok) => {
      this.firstPollDone = true;
      if (!this.stopped) this.poller.start(this.poller.nextDelay(!ok));
    });
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), this.startTimeoutMs);
    });
    const outcome = await Promise.race([first, timedOut]).finally(() => clearTimeout(timer));
    if (outcome === true || this.revision !== null) return;
    if (outcome === "timeout") {
      this.pollError ??= {
        message: `GET ${this.url} did not answer within ${this.startTimeoutMs} ms`,
        at: new Date().toISOString(),
      };
    }
    this.fallback = this.useCache();
    await this.fallback;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.poller.stop();
    await this.fallback;
    await this.chain.catch(() => undefined);
  }

  status(): ComponentStatus {
    const details = {
      url: this.url,
      revision: this.revision,
      persisted: this.fromCache,
      cache_file: this.cache?.path ?? null,
      last_success_at: this.lastSuccessAt,
      last_poll_error: this.pollError,
      last_rejection: this.rejection,
      persist_error: this.persistError,
    };
    const problem = this.problem();
    if (this.revision === null) {
      if (!this.firstPollDone && problem === null) {
        return { state: "not_ready", message: `waiting for the first bundle from ${this.url}`, details };
      }
      const cache = this.cacheProblem ? `; ${this.cacheProblem}` : "";
      return {
        state: "error",
        message: `no bundle from ${this.url}: ${problem ?? "no answer yet"}${cache}`,
        details,
      };
    }
    if (this.fromCache) {
      return {
        state: "warn",
        message: `serving persisted bundle rev ${this.revision}; ${problem ?? `waiting for ${this.url}`}`,
        details,
      };
    }
    if (problem) {
      return { state: "warn", message: `serving bundle rev ${this.revision}; ${problem}`, details };
    }
    if (this.persistError) {
      return {
        state: "warn",
        message: `bundle rev ${this.revision} is active but could not be persisted (a restart while ${this.url} is down would start without it): ${this.persistError}`,
        details,
      };
    }
    return { state: "ok", message: `bundle rev ${this.revision} from ${this.url}`, details };
  }

  /** What keeps the server's newest bundle from being active, in words, or null. */
  private problem(): string | null {
    if (this.pollError) return `bundle server unreachable: ${this.pollError.message}`;
    if (this.rejection) return `the server's bundle was rejected: ${this.rejection.message}`;
    return null;
  }

  private serial<T>(job: () => Promise<T>): Promise<T> {
    const next = this.chain.then(job, job);
    this.chain = next.catch(() => undefined);
    return next;
  }

  /** The poller's onBundle: a new archive from the server. Throwing tells the poller not to keep its ETag. */
  private accept(archive: Buffer): Promise<void> {
    return this.serial(async () => {
      const loader = this.loader as BundleLoader;
      const result = await loader.load(archive, this.url);
      if (!result.ok) throw new BundleRejectedError(result.error);
      this.revision = result.revision;
      this.fromCache = false;
      this.cacheProblem = null;
      await this.persist(archive, result.revision);
    });
  }

  private async persist(archive: Buffer, revision: string): Promise<void> {
    if (!this.cache) return;
    try {
      await this.cache.write(archive);
      this.persistError = null;
    } catch (err) {
      this.persistError = `${this.cache.path}: ${errorText(err)}`;
      this.log.warn({ source: this.url, revision, err: this.persistError }, "bundle could not be persisted");
    }
  }

  private succeeded(): void {
    this.pollError = null;
    this.rejection = null;
    this.lastSuccessAt = new Date().toISOString();
  }

  private failed(err: unknown): void {
    const entry = { message: errorText(err), at: new Date().toISOString() };
    if (err instanceof BundleRejectedError) {
      // The loader has logged the reason already; the server answered.
      this.rejection = entry;
      this.pollError = null;
    } else {
      this.pollError = entry;
      this.log.warn({ source: this.url }, entry.message);
    }
  }

  /** Activates the persisted bundle, if there is one and this source has activated nothing yet. */
  private async useCache(): Promise<void> {
    if (!this.cache) {
      this.cacheProblem = "no bundle is persisted (no cache directory configured)";
      return;
    }
    const cache = this.cache;
    await this.serial(async () => {
      if (this.revision !== null || this.stopped) return; // a download landed meanwhile: it is newer
      let archive: Buffer | null;
      try {
        archive = await cache.read();
      } catch (err) {
        this.cacheProblem = `the persisted bundle ${cache.path} cannot be read: ${errorText(err)}`;
        this.log.error({ source: this.url }, this.cacheProblem);
        return;
      }
      if (archive === null) {
        this.cacheProblem = `no persisted bundle in ${cache.dir}`;
        return;
      }
      const loader = this.loader as BundleLoader;
      const result = await loader.load(archive, `${cache.path} (persisted from ${this.url})`);
      if (!result.ok) {
        this.cacheProblem = `the persisted bundle was rejected: ${result.error}`;
        return;
      }
      this.revision = result.revision;
      this.fromCache = true;
      this.cacheProblem = null;
      this.log.warn(
        { source: this.url, revision: result.revision, cache_file: cache.path, reason: this.problem() },
        "serving the persisted bundle until the bundle server answers",
      );
    });
  }
}
