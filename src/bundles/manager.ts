// Keeps the engine's policy current: loads bundles from a file (watched with chokidar), from a policy folder in
// development (rebuilt with opa on every change), or from an HTTP bundle server (polled with ETag). Every
// candidate is loaded off to the side and activated only when it is complete and valid; a bad one is logged
// with its reason and the last good policy keeps answering.
import { mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { type FSWatcher, watch } from "chokidar";
import type { DecisionEngine } from "../decision/engine.js";
import { errorText } from "../decision/wasm-policy.js";
import { coalesce } from "../util/coalesce.js";
import { type Logger, silentLogger } from "../util/log.js";
import { type BuildOptions, buildBundle } from "./build.js";
import { type BundleLoadOptions, loadBundleArchive } from "./bundle.js";
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
   * Loads `path` now and again whenever it changes. The folder is watched rather than the file, so a file
   * replaced by rename (the atomic way deploy tools and Kubernetes volume updates write) is seen every time.
   * A file caught half-written is rejected and the next change event loads it.
   */
  async watchFile(path: string): Promise<boolean> {
    const target = resolve(path);
    let ok = false;
    await this.follow({
      path: dirname(target),
      label: path,
      depth: 0,
      relevant: (changed) => resolve(changed) === target,
      stamp: () => stampOf([target]),
      job: async () => {
        ok = await this.loadFile(target);
      },
    });
    return ok;
  }

  /**
   * Development mode: rebuilds `build.policies` with opa whenever a .rego, .json or .yaml file under it changes,
   * and loads the result. A build error (a Rego syntax error, an unsupported builtin) leaves the last good
   * policy active and is logged with OPA's message.
   */
  async watchPolicies(build: Omit<BuildOptions, "output">): Promise<boolean> {
    const dir = await mkdtemp(join(tmpdir(), "pamgate-build-"));
    const output = join(dir, "bundle.tar.gz");
    const isSource = (p: string) => /\.(rego|json|ya?ml)$/.test(p);
    let ok = false;
    await this.follow({
      path: build.policies,
      label: build.policies,
      relevant: isSource,
      stamp: async () => stampOf((await listFiles(build.policies)).filter(isSource)),
      job: async () => {
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
      },
    });
    this.closers.push(() => rm(dir, { recursive: true, force: true }));
    return ok;
  }

  /**
   * Runs `job` once now and again after every relevant change under `path`.
   *
   * chokidar drops a second "change" of the same path within 50 ms (it throttles on the leading edge), so a
   * quick second replacement could go unseen. After each event we therefore check again once that window has
   * passed, and rerun the job when the files' stamp differs from the one the last run saw.
   */
  private async follow(opts: {
    path: string;
    label: string;
    depth?: number;
    relevant: (changed: string) => boolean;
    stamp: () => Promise<string>;
    job: () => Promise<void>;
  }): Promise<void> {
    let seen = "";
    const run = coalesce(async () => {
      const before = await opts.stamp();
      await opts.job();
      seen = before;
    });
    let trailing: NodeJS.Timeout | undefined;
    const onChange = () => {
      void run.trigger();
      clearTimeout(trailing);
      trailing = setTimeout(async () => {
        if ((await opts.stamp()) !== seen) void run.trigger();
      }, CHOKIDAR_CHANGE_THROTTLE_MS + 10);
    };
    const watcher = watch(opts.path, { ignoreInitial: true, depth: opts.depth });
    watcher.on("all", (_event, changed) => {
      if (opts.relevant(changed)) onChange();
    });
    watcher.on("error", (err) =>
      this.log.error({ source: opts.label, err: errorText(err) }, "watcher failed"),
    );
    this.closers.push(async () => {
      clearTimeout(trailing);
      await watcher.close();
      await run.idle();
    });
    await ready(watcher);
    await run.trigger();
  }

  /** Polls an HTTP bundle server (OPA bundle service protocol: GET with If-None-Match, 304 when unchanged). */
  pollHttp(
    url: string,
    opts: { token?: string; minDelayMs?: number; maxDelayMs?: number } = {},
  ): HttpBundleSource {
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

/** chokidar's throttle window for repeated "change" events of one path (see its index.js). */
const CHOKIDAR_CHANGE_THROTTLE_MS = 50;

/** Identity of a set of files as last seen: inode, size and mtime of each ("-" for a missing one). */
async function stampOf(paths: string[]): Promise<string> {
  const parts = await Promise.all(
    paths.map(async (p) => {
      try {
        const s = await stat(p, { bigint: true });
        return `${p}:${s.ino}:${s.size}:${s.mtimeNs}`;
      } catch {
        return `${p}:-`;
      }
    }),
  );
  return parts.join("|");
}

/** Files under `dir`, recursively; none when it is gone (the watcher reports that separately). */
async function listFiles(dir: string): Promise<string[]> {
  try {
    const entries = await readdir(dir, { recursive: true, withFileTypes: true });
    return entries
      .filter((e) => e.isFile())
      .map((e) => join(e.parentPath, e.name))
      .sort();
  } catch {
    return [];
  }
}

function ready(watcher: FSWatcher): Promise<void> {
  return new Promise((resolve) => watcher.once("ready", resolve));
}
