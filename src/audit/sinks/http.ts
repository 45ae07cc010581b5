// The HTTP sink speaks OPA's decision log upload protocol, so an existing OPA decision log collector can receive
// pamgate's events: each batch is a JSON array of decision events, gzip-compressed, POSTed with
// Content-Type: application/json and Content-Encoding: gzip. Any 2xx acknowledges the batch; anything else
// (or no answer within the timeout) is retried by the shipper with exponential backoff.
import { promisify } from "node:util";
import { gzip as gzipCb } from "node:zlib";
import { errorText } from "../../util/errors.js";
import type { SpoolRecord } from "../record.js";
import type { Sink } from "../shipper.js";

const gzip = promisify(gzipCb);

export interface HttpSinkConfig {
  type: "http";
  /** The full upload URL, e.g. https://collector.example.com/logs (OPA: service url + "/logs"). */
  url: string;
  /** Extra headers, e.g. {"Authorization": "Bearer …"}. */
  headers?: Record<string, string>;
  name?: string;
  /** Uncompressed bytes per upload. Default 1 MiB. */
  maxBatchBytes?: number;
  maxBatchRecords?: number;
  timeoutMs?: number;
}

export function describeUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return "(invalid URL)";
  }
}

export class HttpSink implements Sink {
  readonly name: string;
  readonly description: string;
  readonly maxBatchRecords: number;
  readonly maxBatchBytes: number;

  constructor(
    private readonly config: HttpSinkConfig,
    name: string,
  ) {
    new URL(config.url); // throws for a malformed URL at start-up, not at the first upload
    this.name = name;
    this.description = `http ${describeUrl(config.url)}`;
    this.maxBatchBytes = config.maxBatchBytes ?? 1024 * 1024;
    this.maxBatchRecords = config.maxBatchRecords ?? 2000;
  }

  /** Only decision events belong in OPA's decision log; recordings and seals stay in the spool and other sinks. */
  accepts(kind: string): boolean {
    return kind === "decision";
  }

  async send(records: SpoolRecord[]): Promise<void> {
    const body = await gzip(Buffer.from(`[${records.map((r) => r.body).join(",")}]`, "utf8"));
    let res: Response;
    try {
      res = await fetch(this.config.url, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "content-encoding": "gzip",
          "user-agent": "pamgate-audit",
          ...this.config.headers,
        },
        body,
        signal: AbortSignal.timeout(this.config.timeoutMs ?? 10_000),
      });
    } catch (err) {
      throw new Error(`${this.description}: ${errorText(err)}`); // errorText adds fetch's cause (ECONNREFUSED …)
    }
    const text = await res.text().catch(() => "");
    if (!res.ok) throw new Error(`${this.description}: HTTP ${res.status} ${text.slice(0, 200)}`.trimEnd());
  }

  async close(): Promise<void> {}
}
