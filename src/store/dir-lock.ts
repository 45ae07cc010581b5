// An exclusive claim on a data directory by one process. PGlite is a single-user PostgreSQL: it does not check
// whether another instance has the same files open (a second PGlite opens them happily, and both then write the
// same WAL), so pamgate refuses instead. The claim is a file holding the owner's pid, created with O_EXCL; one
// left behind by a process that died is recognised (no such pid) and taken over.
import { readFileSync, rmSync, writeFileSync } from "node:fs";

/** Lock files held by this process, so a second open from the same process is refused too. */
const held = new Set<string>();

export function lockDirectory(lockFile: string, what: string): () => void {
  if (held.has(lockFile)) throw new Error(`${what} is already open in this process`);
  for (let attempt = 0; ; attempt++) {
    try {
      writeFileSync(lockFile, `${process.pid}\n`, { flag: "wx" });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST" || attempt > 0) throw err;
      const owner = Number.parseInt(readFileSafe(lockFile), 10);
      // Our own pid in the file, but not held by us: left by an earlier process that had the same pid (pid 1
      // in a restarted container), so it is stale like any dead owner's.
      if (Number.isInteger(owner) && owner !== process.pid && alive(owner)) {
        throw new Error(
          `${what} is in use by process ${owner} (${lockFile}); the embedded store serves one gateway — use PostgreSQL for several replicas`,
        );
      }
      rmSync(lockFile, { force: true });
    }
  }
  held.add(lockFile);
  return () => {
    held.delete(lockFile);
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
