// An exclusive claim on a directory by one process: a lock file holding the owner's pid, created with O_EXCL.
// One left behind by a process that died is recognised (no such pid) and taken over. Used by the audit spool
// (one writer per spool directory) and the embedded store (PGlite is single-user and does not check whether
// another instance has its files open: a second one opens them happily and both write the same WAL).
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";

/** The lock is held by a live process (`thisProcess`: by this one, through another open). */
export class LockHeldError extends Error {
  override name = "LockHeldError";
  constructor(
    readonly lockFile: string,
    readonly pid: number,
    readonly thisProcess: boolean,
  ) {
    super(`${lockFile} is held by process ${pid}${thisProcess ? " (this one)" : ""}`);
  }
}

/** Lock files held by this process, so a second open from the same process is refused too. */
const held = new Set<string>();

/**
 * Takes the lock; returns its release. Throws LockHeldError when a live process holds it, or the file system's
 * error when the lock file cannot be written. `onStale` hears of a dead owner's lock being taken over.
 */
export function acquirePidLock(lockFile: string, opts: { onStale?: (pid: number) => void } = {}): () => void {
  const key = resolve(lockFile);
  if (held.has(key)) throw new LockHeldError(lockFile, process.pid, true);
  for (let attempt = 0; ; attempt++) {
    try {
      writeFileSync(lockFile, `${process.pid}\n`, { flag: "wx" });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST" || attempt > 0) throw err;
      const owner = Number.parseInt(readFileSafe(lockFile), 10);
      // Our own pid in the file, but not held by us: left by an earlier process that had the same pid (pid 1
      // in a restarted container), so it is stale like any dead owner's.
      if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && alive(owner))
        throw new LockHeldError(lockFile, owner, false);
      opts.onStale?.(owner);
      rmSync(lockFile, { force: true });
    }
  }
  held.add(key);
  return () => {
    if (!held.delete(key)) return;
    rmSync(lockFile, { force: true });
  };
}

function readFileSafe(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return "";
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
