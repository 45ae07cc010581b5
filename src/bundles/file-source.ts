// Bundle sources on the local file system, followed with chokidar:
//
// - FileBundleSource: a bundle archive, loaded now and again whenever it is replaced.
// - PolicyFolderSource: development mode, a folder of Rego rebuilt with opa whenever a .rego, .json or .yaml
//   file under it changes. A build error (a Rego syntax error, an unsupported builtin) is a rejected candidate:
//   the last good policy stays active and the error is logged with OPA's message.
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { errorText } from "../util/errors.js";
import { type Logger, silentLogger } from "../util/log.js";
import { type BuildOptions, buildBundle } from "./build.js";
import type { BundleLoader, BundleSource, LoadResult } from "./source.js";
import { SourceHealth } from "./source.js";
import { follow, listFiles, stampOf } from "./watch.js";

/** Reads a bundle file and loads it; an unreadable file is a rejected candidate like a corrupt one. */
export async function loadBundleFile(loader: BundleLoader, path: string): Promise<LoadResult> {
  let archive: Buffer;
  try {
    archive = await readFile(path);
  } catch (err) {
    return loader.reject(path, `bundle file ${path} cannot be read: ${errorText(err)}`);
  }
  return loader.load(archive, path);
}

export interface FileBundleSourceOptions {
  path: string;
  /** Default "file". */
  name?: string;
  log?: Logger;
}

/**
 * Loads `path` at start and again whenever it changes. The folder is watched rather than the file, so a file
 * replaced by rename (the atomic way deploy tools and Kubernetes volume updates write) is seen every time. A
 * file caught half-written is rejected and the next change event loads it.
 */
export class FileBundleSource implements BundleSource {
  readonly name: string;
  private readonly health: SourceHealth;
  private readonly log: Logger;
  private closer: (() => Promise<void>) | null = null;

  constructor(private readonly opts: FileBundleSourceOptions) {
    this.name = opts.name ?? "file";
    this.log = opts.log ?? silentLogger;
    this.health = new SourceHealth(`bundle file ${opts.path}`, { path: opts.path });
  }

  async start(loader: BundleLoader): Promise<void> {
    if (this.closer) throw new Error(`bundle source ${this.name} is already started`);
    const target = resolve(this.opts.path);
    this.closer = await follow({
      path: dirname(target),
      depth: 0,
      relevant: (changed) => resolve(changed) === target,
      stamp: () => stampOf([target]),
      job: async () => this.health.record(await loadBundleFile(loader, target)),
      onWatchError: (err) => {
        this.health.watchFailed(errorText(err));
        this.log.error({ source: this.opts.path, err: errorText(err) }, "bundle watcher failed");
      },
    });
  }

  async stop(): Promise<void> {
    const close = this.closer;
    this.closer = null;
    await close?.();
  }

  status() {
    return this.health.status();
  }
}

export interface PolicyFolderSourceOptions {
  /** What to build: the folder (`policies`) and opa's options; the output goes to a temporary folder. */
  build: Omit<BuildOptions, "output">;
  /** Default "policies". */
  name?: string;
  log?: Logger;
}

export class PolicyFolderSource implements BundleSource {
  readonly name: string;
  private readonly health: SourceHealth;
  private readonly log: Logger;
  private closer: (() => Promise<void>) | null = null;

  constructor(private readonly opts: PolicyFolderSourceOptions) {
    this.name = opts.name ?? "policies";
    this.log = opts.log ?? silentLogger;
    this.health = new SourceHealth(`policy folder ${opts.build.policies}`, { policies: opts.build.policies });
  }

  async start(loader: BundleLoader): Promise<void> {
    if (this.closer) throw new Error(`bundle source ${this.name} is already started`);
    const { build } = this.opts;
    const dir = await mkdtemp(join(tmpdir(), "pamgate-build-"));
    const output = join(dir, "bundle.tar.gz");
    const isSource = (p: string) => /\.(rego|json|ya?ml)$/.test(p);
    let stopWatching: () => Promise<void>;
    try {
      stopWatching = await follow({
        path: build.policies,
        relevant: isSource,
        stamp: async () => stampOf((await listFiles(build.policies)).filter(isSource)),
        job: async () => {
          try {
            const { revision } = await buildBundle({ ...build, output });
            this.log.info({ policies: build.policies, revision }, "policies rebuilt");
          } catch (err) {
            this.health.record(loader.reject(build.policies, errorText(err)));
            return;
          }
          this.health.record(await loadBundleFile(loader, output));
        },
        onWatchError: (err) => {
          this.health.watchFailed(errorText(err));
          this.log.error({ source: build.policies, err: errorText(err) }, "policy folder watcher failed");
        },
      });
    } catch (err) {
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
    this.closer = async () => {
      await stopWatching();
      await rm(dir, { recursive: true, force: true });
    };
  }

  async stop(): Promise<void> {
    const close = this.closer;
    this.closer = null;
    await close?.();
  }

  status() {
    return this.health.status();
  }
}
