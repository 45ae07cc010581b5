// The file operations on the spool's write path, behind an interface so tests can make them fail the way a
// full or broken disk does (tests run as root, which no file mode stops). The default is plain node:fs with
// callbacks (lighter than FileHandle on the hot path), and a synchronous write (see writeAll).
import * as fs from "node:fs";

export interface SpoolIo {
  open(path: string, flags: string): Promise<number>;
  /** Writes the whole buffer at `position` (loops over short writes). */
  writeAll(fd: number, buf: Buffer, position: number): Promise<void>;
  fdatasync(fd: number): Promise<void>;
  ftruncate(fd: number, length: number): Promise<void>;
  close(fd: number): Promise<void>;
  /** Makes a directory entry (a new or removed file) durable. */
  syncDir(path: string): Promise<void>;
}

function cb<T>(run: (done: (err: NodeJS.ErrnoException | null, value?: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => run((err, value) => (err ? reject(err) : resolve(value as T))));
}

export const nodeIo: SpoolIo = {
  open: (path, flags) => cb<number>((done) => fs.open(path, flags, 0o640, done)),
  // Synchronous: a write into the page cache takes microseconds, less than the round trip through libuv's
  // thread pool it would otherwise cost per batch (in CPU and in latency before the fdatasync can start). The
  // fdatasync, which waits for the disk, stays asynchronous.
  async writeAll(fd, buf, position) {
    let off = 0;
    while (off < buf.length) {
      const n = fs.writeSync(fd, buf, off, buf.length - off, position + off);
      if (n <= 0) throw Object.assign(new Error("write returned 0 bytes"), { code: "EIO" });
      off += n;
    }
  },
  fdatasync: (fd) => cb<void>((done) => fs.fdatasync(fd, done)),
  ftruncate: (fd, length) => cb<void>((done) => fs.ftruncate(fd, length, done)),
  close: (fd) => cb<void>((done) => fs.close(fd, done)),
  async syncDir(path) {
    const fd = await cb<number>((done) => fs.open(path, "r", done));
    try {
      await cb<void>((done) => fs.fsync(fd, done));
    } finally {
      await cb<void>((done) => fs.close(fd, done));
    }
  },
};
