// Reading and writing OPA bundle archives (gzip'd tar) in memory.
//
// A bundle is small (a policy.wasm of a few hundred KiB, a data.json, a manifest, the Rego sources), so it is
// read whole into a map of path → bytes; every later step (signature check, manifest, wasm load) works on that
// map and never touches the file system again, which is what makes a hot swap atomic.
import { Readable } from "node:stream";
import { gunzipSync, gzipSync } from "node:zlib";
import tar from "tar-stream";

/** Files of a bundle, keyed by their path inside the archive with a leading "/" (as OPA names them). */
export type BundleFiles = Map<string, Buffer>;

export class BundleFormatError extends Error {
  override name = "BundleFormatError";
}

/** Limits that keep a hostile archive from exhausting memory. */
const MAX_FILES = 10_000;
const MAX_UNPACKED_BYTES = 512 * 1024 * 1024;

function normalizePath(name: string): string {
  const trimmed = name.replace(/^\.?\/+/, "");
  if (trimmed.split("/").includes(".."))
    throw new BundleFormatError(`bundle entry "${name}" escapes the bundle root`);
  return `/${trimmed}`;
}

/** Unpacks a .tar.gz bundle. Throws BundleFormatError naming what is wrong (not gzip, truncated, too big). */
export async function readBundleArchive(archive: Buffer): Promise<BundleFiles> {
  let tarBytes: Buffer;
  try {
    tarBytes = gunzipSync(archive, { maxOutputLength: MAX_UNPACKED_BYTES });
  } catch (err) {
    throw new BundleFormatError(`bundle is not a valid gzip archive: ${(err as Error).message}`);
  }
  const files: BundleFiles = new Map();
  const extract = tar.extract();
  const done = new Promise<void>((resolve, reject) => {
    extract.on("entry", (header, stream, next) => {
      if (header.type !== "file") {
        stream.resume();
        stream.on("end", next);
        return;
      }
      if (files.size >= MAX_FILES) {
        reject(new BundleFormatError(`bundle has more than ${MAX_FILES} files`));
        return;
      }
      const chunks: Buffer[] = [];
      stream.on("data", (c: unknown) => chunks.push(c as Buffer));
      stream.on("end", () => {
        try {
          files.set(normalizePath(header.name), Buffer.concat(chunks));
          next();
        } catch (err) {
          reject(err);
        }
      });
      stream.on("error", reject);
    });
    extract.on("finish", resolve);
    extract.on("error", (err: Error) =>
      reject(new BundleFormatError(`bundle tar is corrupt: ${err.message}`)),
    );
  });
  Readable.from([tarBytes]).pipe(extract);
  await done;
  if (files.size === 0) throw new BundleFormatError("bundle archive contains no files");
  return files;
}

/** Packs files into a .tar.gz with fixed metadata, so the same files always give the same bytes. */
export async function writeBundleArchive(files: BundleFiles): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on("data", (c: unknown) => chunks.push(c as Buffer));
  const ended = new Promise<void>((resolve, reject) => {
    pack.on("end", resolve);
    pack.on("error", reject);
  });
  for (const [name, content] of [...files].sort(([a], [b]) => (a < b ? -1 : 1))) {
    await new Promise<void>((resolve, reject) =>
      pack.entry({ name, size: content.length, mode: 0o600, mtime: new Date(0) }, content, (err) =>
        err ? reject(err) : resolve(),
      ),
    );
  }
  pack.finalize();
  await ended;
  return gzipSync(Buffer.concat(chunks));
}
