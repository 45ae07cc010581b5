// Following files with chokidar for the file and policy-folder bundle sources: run a job once now and again
// after every relevant change, without losing a change chokidar's throttle swallows.
import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { type FSWatcher, watch } from "chokidar";
import { coalesce } from "../util/coalesce.js";

export interface FollowOptions {
  /** What to watch: a folder (or file). */
  path: string;
  /** How deep below `path` (chokidar's depth; undefined: all the way). */
  depth?: number;
  /** Whether a changed path concerns the job. */
  relevant: (changed: string) => boolean;
  /** Identity of the relevant files as they are now (see stampOf). */
  stamp: () => Promise<string>;
  /** The work: load or rebuild. Must not throw (it reports its own failures). */
  job: () => Promise<void>;
  /** A watcher failure (the folder vanished, too many watches): reported, the job keeps what it has. */
  onWatchError: (err: unknown) => void;
}

/**
 * Runs `job` once now (resolving after that first run) and again after every relevant change under `path`.
 * Returns the function that stops watching and waits for a running job.
 *
 * chokidar drops a second "change" of the same path within 50 ms (it throttles on the leading edge), so a
 * quick second replacement could go unseen. After each event we therefore check again once that window has
 * passed, and rerun the job when the files' stamp differs from the one the last run saw.
 */
export async function follow(opts: FollowOptions): Promise<() => Promise<void>> {
  let seen = "";
  const run = coalesce(async () => {
    const before = await opts.stamp();
    await opts.job();
    seen = before;
  });
  let trailing: NodeJS.Timeout | undefined;
  let closed = false;
  const onChange = () => {
    void run.trigger();
    clearTimeout(trailing);
    trailing = setTimeout(async () => {
      if (!closed && (await opts.stamp()) !== seen) void run.trigger();
    }, CHOKIDAR_CHANGE_THROTTLE_MS + 10);
  };
  const watcher = watch(opts.path, { ignoreInitial: true, depth: opts.depth });
  watcher.on("all", (_event, changed) => {
    if (!closed && opts.relevant(changed)) onChange();
  });
  watcher.on("error", (err) => opts.onWatchError(err));
  const close = async () => {
    closed = true;
    clearTimeout(trailing);
    await watcher.close();
    await run.idle();
  };
  try {
    await ready(watcher);
    await run.trigger();
  } catch (err) {
    await close();
    throw err;
  }
  return close;
}

/** chokidar's throttle window for repeated "change" events of one path (see its index.js). */
const CHOKIDAR_CHANGE_THROTTLE_MS = 50;

/** Identity of a set of files as last seen: inode, size and mtime of each ("-" for a missing one). */
export async function stampOf(paths: string[]): Promise<string> {
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
export async function listFiles(dir: string): Promise<string[]> {
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
