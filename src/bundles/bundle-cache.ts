// The last good bundle of an HTTP source, kept on disk so that a gateway restarted while its bundle server is
// down starts on the policy it had rather than blocking everything. (OPA's bundle `persist` option.)
//
// One file per bundle URL in the cache directory: `http-<hash>.tar.gz`, the hash taken over the URL without its
// query string (which may carry a rotating presigned token) so that the same server finds its copy again, and
// a different server never gets another's. The archive is stored exactly as downloaded; whoever reads it back
// must verify it like any candidate (signature included) — the cache is not trusted, it only saves a download.
//
// Writes are atomic: a temporary file in the same directory, fsync'd, renamed over the old copy, and the
// directory fsync'd so the rename itself survives a crash. A reader thus sees the previous archive or the new
// one, never a torn one.
import { createHash, randomUUID } from "node:crypto";
import { mkdir, open, readFile, rename, rm } from "node:fs/promises";
import { join } from "node:path";

export class BundleCache {
  /** The file the archive is kept in. */
  readonly path: string;

  constructor(
    readonly dir: string,
    url: string,
  ) {
    const u = new URL(url);
    const key = createHash("sha256").update(`${u.origin}${u.pathname}`).digest("hex").slice(0, 16);
    this.path = join(dir, `http-${key}.tar.gz`);
  }

  /** The persisted archive, or null when there is none. Throws when it exists but cannot be read. */
  async read(): Promise<Buffer | null> {
    try {
      return await readFile(this.path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw err;
    }
  }

  /** Replaces the persisted archive atomically (see the file's comment). */
  async write(archive: Buffer): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const tmp = join(this.dir, `.${randomUUID()}.tmp`);
    try {
      const fh = await open(tmp, "wx", 0o600);
      try {
        await fh.writeFile(archive);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, this.path);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
    await syncDir(this.dir);
  }
}

/** fsyncs a directory, so that a rename in it is durable. */
async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
