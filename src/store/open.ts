// Opens the configured store, migrated and ready: PostgreSQL when a URL is given, otherwise the embedded
// PGlite store in the data directory.
import type { Logger } from "../util/log.js";
import type { PgListenerOptions } from "./pg-listener.js";
import { openPgliteStore } from "./pglite.js";
import { openPostgresStore } from "./postgres.js";
import type { Store } from "./store.js";

export type StoreConfig =
  | { kind: "pglite" /** omitted: in memory */; dataDir?: string }
  | { kind: "postgres"; url: string; poolSize?: number; listener?: PgListenerOptions };

export function openStore(config: StoreConfig, log?: Logger): Promise<Store> {
  return config.kind === "postgres"
    ? openPostgresStore({ url: config.url, poolSize: config.poolSize, listener: config.listener, log })
    : openPgliteStore({ dataDir: config.dataDir, log });
}
