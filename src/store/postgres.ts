// The store for several gateway replicas: one PostgreSQL server shared by all, a pg Pool per replica for
// queries and transactions, and one dedicated connection per replica for LISTEN, so a change committed by any
// replica wakes the waiters on every other.
import pg from "pg";
import { type Logger, silentLogger } from "../util/log.js";
import { migrateOrClose } from "./migrate.js";
import { MIGRATIONS, type Migration } from "./migrations.js";
import { PgListener, type PgListenerOptions } from "./pg-listener.js";
import { assertChannel, type Queryable, type Row, type Store } from "./store.js";

export interface PostgresStoreOptions {
  /** postgres://user:password@host:port/database (libpq-style parameters such as sslmode work too). */
  url: string;
  /** Pool size. Default 10. */
  poolSize?: number;
  log?: Logger;
  listener?: PgListenerOptions;
  /** Tests only: a different migration list. */
  migrations?: readonly Migration[];
}

function queryable(db: pg.Pool | pg.PoolClient): Queryable {
  return {
    async query<R extends Row = Row>(sql: string, params: readonly unknown[] = []): Promise<R[]> {
      const result = await db.query<R>(sql, params as unknown[]);
      return result.rows;
    },
    async exec(sql: string): Promise<void> {
      await db.query(sql); // no parameters: the simple protocol, which takes several statements
    },
    async notify(channel: string, payload: string): Promise<void> {
      assertChannel(channel);
      await db.query("SELECT pg_notify($1, $2)", [channel, payload]);
    },
  };
}

export async function openPostgresStore(options: PostgresStoreOptions): Promise<Store> {
  const log = options.log ?? silentLogger;
  const config: pg.ClientConfig = { connectionString: options.url, application_name: "pamgate" };
  const pool = new pg.Pool({ ...config, max: options.poolSize ?? 10 });
  // An idle pooled connection that dies (server restart) emits here; unhandled, it would end the process.
  pool.on("error", (err) => log.warn({ err: err.message }, "store: idle PostgreSQL connection lost"));
  let closed = false;
  const listener = new PgListener({ ...config, application_name: "pamgate-listen" }, log, options.listener);

  const store: Store = {
    kind: "postgres",
    ...queryable(pool),
    async transaction(fn) {
      const client = await pool.connect();
      try {
        await client.query("BEGIN");
        const result = await fn(queryable(client));
        await client.query("COMMIT");
        client.release();
        return result;
      } catch (err) {
        // A connection whose ROLLBACK fails is in an unknown state: destroy it rather than return it.
        const broken = await client.query("ROLLBACK").then(
          () => undefined,
          (e: Error) => e,
        );
        client.release(broken);
        throw err;
      }
    },
    async listen(channel, handler, listenOptions) {
      assertChannel(channel);
      return listener.listen(channel, handler, listenOptions);
    },
    async close() {
      if (closed) return;
      closed = true;
      await listener.close();
      await pool.end();
    },
  };

  return migrateOrClose(store, options.migrations ?? MIGRATIONS, log);
}
