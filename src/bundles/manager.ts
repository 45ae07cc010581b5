// Keeps the engine's policy current: loads bundles from a file (watched with chokidar), from a policy folder in
// development (rebuilt with opa on every change), or from an HTTP bundle server (polled with ETag). Every
// candidate is loaded off to the side and activated only when it is complete and valid; a bad one is logged
// with its reason and the last good policy keeps answering.
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type FSWatcher, watch } from "chokidar";
import type { DecisionEngine } from "../decision/engine.js";
import { errorText } from "../decision/wasm-policy.js";
import { coalesce } from "../util/coalesce.js";
import { type Logger, silentLogger } from "../util/log.js";
import { type BundleLoadOptions, loadBundleArchive } from "./bundle.js";
import { type BuildOptions, buildBundle } from "./build.js";
import { HttpBundleSource } from "./http-source.js";

export interface BundleManagerOptions extends BundleLoadOptions {
  log?: Logger;
  /** Called after every load attempt, for metrics and tests. */
  onLoad?: (result: { ok: boolean; source: string; revision?: string; error?: string }) => void;
}

export class BundleManager {
  private readonly log: Logger;
  private readonly closers: Array<() => Promise<void>> = [];

  constructor(
    readonly engine: DecisionEngine,
    private readonly options: BundleManagerOptions = {},
  ) {
    this.log = options.log ?? silentLogger;
  }

  /** Loads one archive and activates it if valid. Returns whether it became active; never throws. */
  async loadArchive(archive: Buffer, source: string): Promise<boolean> {
    try {
      const next = await loadBundleArchive(archive, source, this.options);
      const previous = this.engine.revision;
      this.engine.activate(next);
      this.log.info({ source, revision: next.revision, previous }, "bundle activated");
      this.options.onLoad?.({ ok: true, source, revision: next.revision });
      return true;
    } catch (err) {
      const message = `bundle from ${source} rejected: ${errorText(err)}`;
      this.engine.recordRejection(message);
      this.log.error({ source, active_revision: this.engine.revision }, message);
      this.options.onLoad?.({ ok: false, source, error: message });
      return false;
    }
  }

  async loadFile(path: string): Promise<boolean> {
    let archive: Buffer;
    try {
      archive = await readFile(path);
    } catch (err) {
      const message = `bundle file ${path} cannot be read: ${errorText(err)}`;
      this.engine.recordRejection(message);
      this.log.error({ source: path }, message);
      this.options.onLoad?.({ ok: false, source: path, error: message });
      return false;
    }
    return this.loadArchive(archive, path);
  }

  /**
   * Loads `path` now and again whenever it changes. Writers should replace the file atomically (write a
   * temporary file, then rename); a file caught half-written is rejected and the next change event loads it.
   */
  async watchFile(path: string): Promise<boolean> {
    const reload = coalesce(async () => {
      await this.loadFile(path);
    });
    const watcher = watch(path, { ignoreInitial: true, atomic: 20 });
    watcher.on("add", reload.trigger).on("change", reload.trigger);
    watcher.on("error", (err) => this.log.error({ source: path, err: errorText(err) }, "bundle watcher failed"));
    this.closers.push(async () => {
      await watcher.close();
      await reload.idle();
    });
    await ready(watcher);
    return this.loadFile(path);
  }

  /**
   * Development mode: rebuilds `build.policies` with opa whenever a .rego or .json file under it changes, and
   * loads the result. A build error (a Rego syntax error, an unsupported builtin) leaves the last good policy
   * active and is logged with OPA's message.
   */
  async watchPolicies(build: Omit<BuildOptions, "output">): Promise<boolean> {
    const dir = await mkdtemp(join(tmpdir(), "pamgate-build-"));
    const output = join(dir, "bundle.tar.gz");
    let ok = false;
    const rebuild = coalesce(async () => {
      try {
        const { revision } = await buildBundle({ ...build, output });
        this.log.info({ policies: build.policies, revision }, "policies rebuilt");
      } catch (err) {
        const message = errorText(err);
        this.engine.recordRejection(message);
        this.log.error({ source: build.policies }, message);
        this.options.onLoad?.({ ok: false, source: build.policies, error: message });
        ok = false;
        return;
      }
      ok = await this.loadFile(output);
    });
    const watcher = watch(build.policies, {
      ignoreInitial: true,
      ignored: (p, stats) => Boolean(stats?.isFile() && !/\.(rego|json|ya?ml)$/.test(p)),
    });
    watcher.on("all", () => void rebuild.trigger());
    watcher.on("error", (err) => this.log.error({ err: errorText(err) }, "policy watcher failed"));
    this.closers.push(async () => {
      await watcher.close();
      await rebuild.idle();
      await rm(dir, { recursive: true, force: true });
    });
    await ready(watcher);
    await rebuild.trigger();
    return ok;
  }

  /** Polls an HTTP bundle server (OPA bundle service protocol: GET with If-None-Match, 304 when unchanged). */
  pollHttp(url: string, opts: { token?: string; minDelayMs?: number; maxDelayMs?: number } = {}): HttpBundleSource {
    const source = new HttpBundleSource({
      url,
      ...opts,
      onBundle: async (archive) => {
        if (!(await this.loadArchive(archive, url))) throw new Error(`bundle from ${url} was rejected`);
      },
      onError: (err) => this.log.warn({ source: url }, err.message),
    });
    source.start();
    this.closers.push(() => source.stop());
    return source;
  }

  async close(): Promise<void> {
    await Promise.all(this.closers.splice(0).map((c) => c()));
  }
}

function ready(watcher: FSWatcher): Promise<void> {
  return new Promise((resolve) => watcher.once("ready", resolve));
}
