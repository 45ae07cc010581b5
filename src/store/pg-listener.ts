// LISTEN on PostgreSQL needs a connection of its own that stays open (a pooled connection would hand the
// subscription to whoever borrows it next). This keeps one: when it drops — server restart, failover, a
// terminated backend, a dead TCP peer noticed by the periodic ping — it reconnects with capped exponential
// backoff, LISTENs on every channel again and tells subscribers, because notifications sent during the gap are
// gone and they must re-read whatever they were waiting for.
import pg from "pg";
import type { Logger } from "../util/log.js";
import type { ListenOptions, NotificationHandler } from "./store.js";

export interface PgListenerOptions {
  /** First reconnect delay; doubles up to `reconnectMaxMs`. Default 100 ms. */
  reconnectMinMs?: number;
  /** Default 5 s. */
  reconnectMaxMs?: number;
  /** How often the idle connection is checked with `SELECT 1`. Default 30 s; 0 disables. */
  pingIntervalMs?: number;
}

interface Subscription {
  handler: NotificationHandler;
  onReconnect?: () => void;
}

export class PgListener {
  private client: pg.Client | null = null;
  private initial: Promise<void> | null = null;
  private readonly channels = new Map<string, Set<Subscription>>();
  private retryTimer: NodeJS.Timeout | null = null;
  private readonly pingTimer: NodeJS.Timeout | null = null;
  private delayMs: number;
  private closed = false;
  private readonly minMs: number;
  private readonly maxMs: number;

  constructor(
    private readonly clientConfig: pg.ClientConfig,
    private readonly log: Logger,
    options: PgListenerOptions = {},
  ) {
    this.minMs = options.reconnectMinMs ?? 100;
    this.maxMs = options.reconnectMaxMs ?? 5000;
    this.delayMs = this.minMs;
    const ping = options.pingIntervalMs ?? 30_000;
    if (ping > 0) {
      this.pingTimer = setInterval(() => this.ping(), ping);
      this.pingTimer.unref();
    }
  }

  /** Subscribes; the first call opens the connection and fails if it cannot. */
  async listen(
    channel: string,
    handler: NotificationHandler,
    options: ListenOptions = {},
  ): Promise<() => Promise<void>> {
    if (this.closed) throw new Error("the store is closed");
    const subscription: Subscription = { handler, onReconnect: options.onReconnect };
    let subs = this.channels.get(channel);
    const first = !subs;
    if (!subs) {
      subs = new Set();
      this.channels.set(channel, subs);
    }
    subs.add(subscription);
    try {
      this.initial ??= this.connect().catch((err) => {
        this.initial = null; // let the next listen() try again
        throw err;
      });
      await this.initial;
    } catch (err) {
      this.remove(channel, subscription);
      throw err;
    }
    // While disconnected, the reconnect LISTENs on every channel in the map, this one included.
    if (first && this.client) await this.client.query(`LISTEN ${channel}`).catch(() => {});
    return async () => {
      if (this.remove(channel, subscription) && this.client) {
        await this.client.query(`UNLISTEN ${channel}`).catch(() => {});
      }
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.pingTimer) clearInterval(this.pingTimer);
    this.channels.clear();
    const client = this.client;
    this.client = null;
    await client?.end().catch(() => {});
  }

  /** Removes a subscription; true when it was the channel's last. */
  private remove(channel: string, subscription: Subscription): boolean {
    const subs = this.channels.get(channel);
    if (!subs?.delete(subscription) || subs.size > 0) return false;
    this.channels.delete(channel);
    return true;
  }

  private async connect(): Promise<void> {
    const client = new pg.Client({ ...this.clientConfig, keepAlive: true });
    client.on("notification", (msg) => this.dispatch(msg.channel, msg.payload ?? ""));
    client.on("error", (err) => this.lost(client, err));
    client.on("end", () => this.lost(client, new Error("connection ended")));
    try {
      await client.connect();
      for (const channel of this.channels.keys()) await client.query(`LISTEN ${channel}`);
    } catch (err) {
      await client.end().catch(() => {});
      throw err;
    }
    if (this.closed) {
      await client.end().catch(() => {});
      return;
    }
    this.client = client;
  }

  private dispatch(channel: string, payload: string): void {
    for (const { handler } of this.channels.get(channel) ?? []) {
      try {
        handler(payload);
      } catch (err) {
        this.log.error({ err, channel }, "notification handler failed");
      }
    }
  }

  private lost(client: pg.Client, err: Error): void {
    if (client !== this.client || this.closed) return;
    this.client = null;
    client.end().catch(() => {});
    this.log.warn({ err: err.message }, "store: LISTEN connection lost, reconnecting");
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.closed || this.retryTimer) return;
    this.retryTimer = setTimeout(async () => {
      this.retryTimer = null;
      try {
        await this.connect();
      } catch (err) {
        this.delayMs = Math.min(this.delayMs * 2, this.maxMs);
        this.log.warn(
          { err: (err as Error).message, retry_ms: this.delayMs },
          "store: LISTEN reconnect failed",
        );
        this.scheduleReconnect();
        return;
      }
      if (this.closed) return;
      this.delayMs = this.minMs;
      this.log.info("store: LISTEN connection re-established");
      for (const subs of this.channels.values()) {
        for (const { onReconnect } of subs) onReconnect?.();
      }
    }, this.delayMs);
    this.retryTimer.unref();
  }

  private ping(): void {
    const client = this.client;
    if (!client) return;
    client.query("SELECT 1").catch((err: Error) => this.lost(client, err));
  }
}
