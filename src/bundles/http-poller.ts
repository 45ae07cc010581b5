// The transport of HttpBundleSource (http-source.ts): polling a bundle server the way OPA's bundle plugin does
// (https://www.openpolicyagent.org/docs/management-bundles#bundle-service-api):
//
//   GET <url> with If-None-Match: <ETag of the active bundle>
//   304 → unchanged; 200 → the body is the new bundle archive, its ETag names it.
//
// After a poll the next one is due after a random delay between minDelayMs and maxDelayMs, so that a fleet of
// gateways started together does not poll in lockstep. After a failure (network error, timeout, unexpected
// status, oversized body, or a bundle the consumer rejected) the delay instead grows exponentially from
// RETRY_BASE_MS, capped at maxDelayMs, with ±20 % jitter — the shape of OPA's util.DefaultBackoff.
//
// The ETag is only remembered once onBundle has accepted the bundle. A rejected bundle thus leaves the old
// ETag (or none) in place, and the next poll downloads again instead of being told 304 forever — which is
// also what OPA does when activation fails.

export interface BundlePollerOptions {
  url: string;
  /** Sent as "Authorization: Bearer <token>". */
  token?: string;
  /** Delay between successful polls, chosen at random in [minDelayMs, maxDelayMs]. OPA's defaults: 60 s, 120 s. */
  minDelayMs?: number;
  maxDelayMs?: number;
  /** Largest archive accepted; the download is cut off beyond it. */
  maxBytes?: number;
  /** Limit for one request, headers and body. */
  timeoutMs?: number;
  /** Receives each new archive; awaited. Throwing rejects the bundle: the ETag is not remembered. */
  onBundle: (archive: Buffer, etag: string | null) => Promise<void>;
  /** Failures of background polls (start()); pollOnce() throws instead. */
  onError: (err: Error) => void;
  /** Each background poll that succeeded (a new bundle accepted, or 304), e.g. to clear a reported failure. */
  onPoll?: (result: PollResult) => void;
}

export type PollResult = "updated" | "not-modified";

/** A failed download: names the URL (query string elided, it may hold credentials) and the HTTP status. */
export class BundleDownloadError extends Error {
  override name = "BundleDownloadError";
  constructor(
    message: string,
    readonly url: string,
    readonly status?: number,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

const DEFAULT_MIN_DELAY_MS = 60_000;
const DEFAULT_MAX_DELAY_MS = 120_000;
const DEFAULT_MAX_BYTES = 64 * 1024 * 1024;
const DEFAULT_TIMEOUT_MS = 30_000;
/** First retry delay after a failure; doubles with each further failure. */
const RETRY_BASE_MS = 500;
const JITTER = 0.2;

/**
 * Delay before the next poll. `failures` is the number of consecutive failed polls (0 after a success).
 * Exported for tests; `random` returns a number in [0, 1).
 */
export function nextPollDelay(
  failures: number,
  minDelayMs: number,
  maxDelayMs: number,
  random: () => number = Math.random,
): number {
  if (failures === 0) return Math.round(minDelayMs + random() * (maxDelayMs - minDelayMs));
  const backoff = Math.min(maxDelayMs, RETRY_BASE_MS * 2 ** Math.min(failures - 1, 30));
  return Math.round(Math.min(maxDelayMs, backoff * (1 + JITTER * (random() * 2 - 1))));
}

export class BundlePoller {
  private readonly url: string;
  /** The URL for messages and logs (a query string, which may carry credentials, elided). */
  readonly shownUrl: string;
  private readonly minDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly maxBytes: number;
  private readonly timeoutMs: number;
  /** ETag of the last bundle onBundle accepted. */
  private etag: string | null = null;
  private failures = 0;
  private running = false;
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<PollResult> | undefined;
  /** Aborted by stop(), which cancels a download in progress. */
  private abort = new AbortController();

  constructor(private readonly opts: BundlePollerOptions) {
    this.url = new URL(opts.url).href; // throws early on a malformed URL
    this.shownUrl = redactQuery(this.url);
    this.minDelayMs = opts.minDelayMs ?? DEFAULT_MIN_DELAY_MS;
    this.maxDelayMs = opts.maxDelayMs ?? Math.max(DEFAULT_MAX_DELAY_MS, this.minDelayMs);
    this.maxBytes = opts.maxBytes ?? DEFAULT_MAX_BYTES;
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (!(this.minDelayMs >= 0 && this.minDelayMs <= this.maxDelayMs)) {
      throw new RangeError(
        `bundle polling needs 0 <= minDelayMs <= maxDelayMs (got ${this.minDelayMs}, ${this.maxDelayMs})`,
      );
    }
    if (!(this.maxBytes > 0)) throw new RangeError(`maxBytes must be positive (got ${this.maxBytes})`);
  }

  /**
   * Starts polling in the background: a first poll after `firstDelayMs` (default now), then one after each
   * delay. Idempotent.
   */
  start(firstDelayMs = 0): void {
    if (this.running) return;
    if (this.abort.signal.aborted) this.abort = new AbortController(); // restarted after stop()
    this.running = true;
    this.schedule(firstDelayMs);
  }

  /** The delay before the poll after this one, were it to succeed (0 failures) or fail (1). */
  nextDelay(failed: boolean): number {
    return nextPollDelay(failed ? 1 : 0, this.minDelayMs, this.maxDelayMs);
  }

  /** Stops polling, cancels a download in progress, and resolves once no poll (nor onBundle) is running. */
  async stop(): Promise<void> {
    this.running = false;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.abort.abort();
    await this.inFlight?.catch(() => undefined);
  }

  /**
   * Polls once. Throws BundleDownloadError, or what onBundle threw. A call while a poll is running joins it
   * rather than sending a second request.
   */
  pollOnce(): Promise<PollResult> {
    this.inFlight ??= this.poll().finally(() => {
      this.inFlight = undefined;
    });
    return this.inFlight;
  }

  private schedule(delayMs: number): void {
    this.timer = setTimeout(() => void this.tick(), delayMs);
    this.timer.unref(); // polling alone should not keep the process alive
  }

  private async tick(): Promise<void> {
    this.timer = undefined;
    try {
      const result = await this.pollOnce();
      this.failures = 0;
      if (this.running) this.notifyPoll(result);
    } catch (err) {
      if (!this.running) return; // stopped mid-poll: the abort is not worth reporting
      this.failures++;
      this.report(err);
    }
    if (this.running) this.schedule(nextPollDelay(this.failures, this.minDelayMs, this.maxDelayMs));
  }

  private notifyPoll(result: PollResult): void {
    try {
      this.opts.onPoll?.(result);
    } catch {
      // As for onError: a throwing callback must not end the polling loop.
    }
  }

  private report(err: unknown): void {
    try {
      this.opts.onError(err instanceof Error ? err : new Error(String(err)));
    } catch {
      // A throwing error handler must not end the polling loop.
    }
  }

  private async poll(): Promise<PollResult> {
    const headers: Record<string, string> = {
      // The archive is gzip already; asking for no content coding keeps fetch from transparently decoding a
      // server-side gzip layer, so the size limit applies to the archive as served.
      "accept-encoding": "identity",
    };
    if (this.etag !== null) headers["if-none-match"] = this.etag;
    if (this.opts.token !== undefined) headers.authorization = `Bearer ${this.opts.token}`;

    const timeout = AbortSignal.timeout(this.timeoutMs);
    const signal = AbortSignal.any([this.abort.signal, timeout]);
    let archive: Buffer;
    let etag: string | null;
    try {
      const res = await fetch(this.url, { headers, signal, redirect: "follow" });
      if (res.status === 304) {
        await res.body?.cancel();
        return "not-modified";
      }
      if (res.status !== 200) {
        await res.body?.cancel();
        const text = res.statusText ? ` ${res.statusText}` : "";
        throw new BundleDownloadError(
          `GET ${this.shownUrl} returned HTTP ${res.status}${text}`,
          this.shownUrl,
          res.status,
        );
      }
      etag = res.headers.get("etag");
      archive = await this.readBody(res);
    } catch (err) {
      if (err instanceof BundleDownloadError) throw err;
      throw this.requestError(err, timeout.aborted);
    }
    await this.opts.onBundle(archive, etag);
    this.etag = etag;
    return "updated";
  }

  /** Reads the body, refusing it as soon as it exceeds maxBytes (declared or actual). */
  private async readBody(res: Response): Promise<Buffer> {
    const tooLarge = () =>
      new BundleDownloadError(
        `GET ${this.shownUrl}: bundle is larger than the limit of ${this.maxBytes} bytes`,
        this.shownUrl,
        res.status,
      );
    if (Number(res.headers.get("content-length")) > this.maxBytes) {
      await res.body?.cancel();
      throw tooLarge();
    }
    if (res.body === null) return Buffer.alloc(0);
    const reader = res.body.getReader();
    const chunks: Uint8Array[] = [];
    let total = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.byteLength;
      if (total > this.maxBytes) {
        await reader.cancel();
        throw tooLarge();
      }
      chunks.push(value);
    }
    return Buffer.concat(chunks, total);
  }

  private requestError(err: unknown, timedOut: boolean): BundleDownloadError {
    const e = err instanceof Error ? err : new Error(String(err));
    if (timedOut) {
      return new BundleDownloadError(
        `GET ${this.shownUrl} timed out after ${this.timeoutMs} ms`,
        this.shownUrl,
        undefined,
        { cause: e },
      );
    }
    if (this.abort.signal.aborted) {
      return new BundleDownloadError(
        `GET ${this.shownUrl} was cancelled (bundle source stopped)`,
        this.shownUrl,
        undefined,
        { cause: e },
      );
    }
    // fetch reports "fetch failed" and keeps the useful part (ECONNREFUSED, DNS failure, TLS) in the cause.
    const cause = e.cause instanceof Error ? e.cause.message : e.message;
    return new BundleDownloadError(`GET ${this.shownUrl} failed: ${cause}`, this.shownUrl, undefined, {
      cause: e,
    });
  }
}

/** The URL for messages: a query string may carry a token (presigned URLs), so only its presence is shown. */
export function redactQuery(url: string): string {
  const u = new URL(url);
  if (u.search === "") return url;
  u.search = "";
  return `${u.href}?…`;
}
