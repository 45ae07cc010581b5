// Keeps the engine's policy current from one or more BundleSources (source.ts: a watched file, a policy folder
// rebuilt with opa, an HTTP bundle server). Every candidate is loaded off to the side and activated only when it
// is complete and valid; a bad one is logged with its reason and the last good policy keeps answering.
import type { DecisionEngine } from "../decision/engine.js";
import type { StatusRegistry } from "../status/status.js";
import { errorText } from "../util/errors.js";
import { type Logger, silentLogger } from "../util/log.js";
import { type BundleLoadOptions, loadBundleArchive } from "./bundle.js";
import { loadBundleFile } from "./file-source.js";
import type { BundleLoader, BundleSource, LoadResult } from "./source.js";

export type { BundleLoader, BundleSource, LoadResult } from "./source.js";

export interface BundleManagerOptions extends BundleLoadOptions {
  log?: Logger;
  /** Called after every load attempt, for metrics and tests. */
  onLoad?: (result: { ok: boolean; source: string; revision?: string; error?: string }) => void;
  /** Where each added source reports, as `bundle:<name>` (unregistered again by close()). */
  status?: StatusRegistry;
}

export class BundleManager implements BundleLoader {
  private readonly log: Logger;
  private readonly added: BundleSource[] = [];
  private readonly unregister: Array<() => void> = [];

  constructor(
    readonly engine: DecisionEngine,
    private options: BundleManagerOptions = {},
  ) {
    this.log = options.log ?? silentLogger;
  }

  /** The sources added so far. */
  get sources(): readonly BundleSource[] {
    return this.added;
  }

  /**
   * Starts a source and keeps it until close(). Resolves once its first attempt has ended; whether that brought
   * a bundle is in the engine's and the source's status, not an exception.
   */
  async addSource(source: BundleSource): Promise<void> {
    if (this.added.some((s) => s.name === source.name)) {
      throw new Error(`a bundle source named "${source.name}" was already added; give the second one a name`);
    }
    this.added.push(source); // before start(): close() stops it even when start() fails half-way
    if (this.options.status) {
      this.unregister.push(this.options.status.register(`bundle:${source.name}`, () => source.status()));
    }
    await source.start(this);
  }

  /**
   * A configuration reload: stops the running sources, then starts `next` (new instances: a stopped source is
   * not started again), whose bundles are verified with `verification` from now on. Resolves with the error of
   * the first new source that brought no bundle at its first attempt (a missing file, a rejected bundle, a
   * server that answers nothing and no persisted copy): the caller then puts sources like the previous ones
   * back. The active policy answers throughout: only a bundle that passes every check replaces it.
   */
  async replaceSources(
    next: BundleSource[],
    verification: BundleLoadOptions["verification"],
  ): Promise<{ ok: true } | { ok: false; error: string }> {
    for (const off of this.unregister.splice(0)) off();
    await Promise.all(this.added.splice(0).map((s) => s.stop()));
    this.options = { ...this.options, verification };
    for (const s of next) {
      try {
        await this.addSource(s);
      } catch (err) {
        return { ok: false, error: `bundle source ${s.name} cannot start: ${errorText(err)}` };
      }
    }
    const failed = next.find((s) => ["error", "not_ready"].includes(s.status().state));
    if (!failed) return { ok: true };
    return { ok: false, error: failed.status().message ?? `bundle source ${failed.name} brought no bundle` };
  }

  /** Verifies one archive and activates it if valid. Never throws. */
  async load(archive: Buffer, source: string): Promise<LoadResult> {
    try {
      const next = await loadBundleArchive(archive, source, this.options);
      const previous = this.engine.revision;
      this.engine.activate(next);
      this.log.info({ source, revision: next.revision, previous }, "bundle activated");
      this.options.onLoad?.({ ok: true, source, revision: next.revision });
      return { ok: true, revision: next.revision };
    } catch (err) {
      return this.reject(source, `bundle from ${source} rejected: ${errorText(err)}`);
    }
  }

  reject(source: string, message: string): LoadResult {
    this.engine.recordRejection(message);
    this.log.error({ source, active_revision: this.engine.revision }, message);
    this.options.onLoad?.({ ok: false, source, error: message });
    return { ok: false, error: message };
  }

  /** Loads one archive and activates it if valid. Returns whether it became active; never throws. */
  async loadArchive(archive: Buffer, source: string): Promise<boolean> {
    return (await this.load(archive, source)).ok;
  }

  /** Loads a bundle file once (no watching). Returns whether it became active; never throws. */
  async loadFile(path: string): Promise<boolean> {
    return (await loadBundleFile(this, path)).ok;
  }

  /** Stops every source (and waits for their loads in progress). */
  async close(): Promise<void> {
    for (const off of this.unregister.splice(0)) off();
    await Promise.all(this.added.splice(0).map((s) => s.stop()));
  }
}
