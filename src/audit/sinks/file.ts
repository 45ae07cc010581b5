// JSON lines to a file or stdout, for Vector, Fluent Bit or a plain `tail -f`. By default each line is the spool
// record itself (seq, kind, prev, body, hash — verifiable downstream); format "event" writes only the bodies
// (one OPA decision event per line, like OPA's console decision logger).
import * as fsp from "node:fs/promises";
import type { SpoolRecord } from "../record.js";
import type { Sink } from "../shipper.js";

export interface FileSinkConfig {
  type: "file";
  /** A file to append to, or "-" for stdout. */
  path: string;
  name?: string;
  format?: "record" | "event";
  /** Record kinds to write; default all (format "event": decision only). */
  kinds?: string[];
}

export class FileSink implements Sink {
  readonly name: string;
  readonly description: string;
  readonly maxBatchRecords = 5000;
  readonly maxBatchBytes = 4 * 1024 * 1024;
  private readonly kinds: Set<string> | null;
  private handle: fsp.FileHandle | null = null;

  constructor(
    private readonly config: FileSinkConfig,
    name: string,
    private readonly stdout: NodeJS.WritableStream = process.stdout,
  ) {
    this.name = name;
    this.description = config.path === "-" ? "stdout" : `file ${config.path}`;
    const kinds = config.kinds ?? (config.format === "event" ? ["decision"] : null);
    this.kinds = kinds ? new Set(kinds) : null;
  }

  accepts(kind: string): boolean {
    return this.kinds === null || this.kinds.has(kind);
  }

  async send(records: SpoolRecord[]): Promise<void> {
    const event = this.config.format === "event";
    let text = "";
    for (const r of records) text += `${event ? r.body : r.line}\n`;
    if (this.config.path === "-") {
      await new Promise<void>((resolve, reject) =>
        this.stdout.write(text, (err) => (err ? reject(err) : resolve())),
      );
      return;
    }
    this.handle ??= await fsp.open(this.config.path, "a", 0o640);
    const h = this.handle;
    const before = (await h.stat()).size;
    try {
      await h.write(text);
      await h.datasync();
    } catch (err) {
      // Cut a partial batch off, so the retry does not leave half a line in front of it.
      await h.truncate(before).catch(() => {});
      await this.close();
      throw err;
    }
  }

  async close(): Promise<void> {
    const h = this.handle;
    this.handle = null;
    await h?.close().catch(() => {});
  }
}
