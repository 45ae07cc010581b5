// The embedded store: PGlite, PostgreSQL compiled to WebAssembly and run in-process, persisted in a data
// directory. No server to install or operate, and the very same SQL, migrations and row locks as the
// PostgreSQL backend. It is one connection: PGlite serialises queries and transactions itself, and LISTEN/NOTIFY
// are delivered in-process, so nothing is ever lost and no reconnect is needed.
import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { PGlite, type Transaction as PgliteTransaction } from "@electric-sql/pglite";
import { type Logger, silentLogger } from "../util/log.js";
import { acquirePidLock, LockHeldError } from "../util/pid-lock.js";
import { migrateOrClose } from "./migrate.js";
import { MIGRATIONS, type Migration } from "./migrations.js";
import { assertChannel, type NotificationHandler, type Queryable, type Row, type Store } from "./store.js";

export interface PgliteStoreOptions {
  /**
   * pamgate's data directory: the database lives in `<dataDir>/pglite`, next to the lock file `store.lock`.
   * Omitted: an in-memory database that is gone on close (tests and demos).
   */
  dataDir?: string;
  log?: Logger;
  /** Tests only: a different migration list. */
  migrations?: readonly Migration[];
}

type PgliteLike = Pick<PGlite, "query" | "exec"> | PgliteTransaction;

function queryable(db: PgliteLike): Queryable {
  return {
    async query<R extends Row = Row>(sql: string, params: readonly unknown[] = []): Promise<R[]> {
      const result = await db.query<R>(sql, params as unknown[]);
      return result.rows;
    },
    async exec(sql: string): Promise<void> {
      await db.exec(sql);
    },
    async notify(channel: string, payload: string): Promise<void> {
      assertChannel(channel);
      await db.query("SELECT pg_notify($1, $2)", [channel, payload]);
    },
  };
}

export async function openPgliteStore(options: PgliteStoreOptions = {}): Promise<Store> {
  const log = options.log ?? silentLogger;
  let unlock = () => {};
  let db: PGlite;
  if (options.dataDir) {
    const dir = resolve(options.dataDir);
    mkdirSync(join(dir, "pglite"), { recursive: true });
    unlock = lockStore(dir);
    try {
      db = await PGlite.create(join(dir, "pglite"));
    } catch (err) {
      unlock();
      throw err;
    }
  } else {
    db = await PGlite.create();
  }

  const store: Store = {
    kind: "pglite",
    ...queryable(db),
    // PGlite holds its transaction mutex for the whole callback: a query on `db` (rather than `tx`) from
    // inside it would wait forever, which is why the callback only ever sees the transaction.
    transaction: (fn) => db.transaction((tx) => fn(queryable(tx))),
    async listen(channel: string, handler: NotificationHandler) {
      assertChannel(channel);
      const unlisten = await db.listen(channel, (payload) => {
        try {
          handler(payload);
        } catch (err) {
          log.error({ err, channel }, "notification handler failed");
        }
      });
      return () => (db.closed ? Promise.resolve() : unlisten());
    },
    async close() {
      try {
        if (!db.closed) await db.close();
      } finally {
        unlock();
      }
    },
  };

  return migrateOrClose(store, options.migrations ?? MIGRATIONS, log);
}

/** Claims the data directory for this process (PGlite itself would not notice a second instance). */
function lockStore(dir: string): () => void {
  try {
    return acquirePidLock(join(dir, "store.lock"));
  } catch (err) {
    if (!(err instanceof LockHeldError)) throw err;
    if (err.thisProcess) throw new Error(`the data directory ${dir} is already open in this process`);
    throw new Error(
      `the data directory ${dir} is in use by process ${err.pid} (${err.lockFile}); the embedded store serves one gateway — use PostgreSQL for several replicas`,
    );
  }
}
