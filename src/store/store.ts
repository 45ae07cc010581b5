// The small database interface the control plane is written against. Two backends implement it with the same
// SQL dialect: PGlite (PostgreSQL compiled to WebAssembly, in-process, persisted in a data directory) for a
// single gateway without a database server, and PostgreSQL (a pg Pool) for several replicas.

export type Row = Record<string, unknown>;

/** A connection or transaction that runs SQL. Parameters are `$1, $2, …`; jsonb values are passed as JSON text. */
export interface Queryable {
  /** One statement with parameters; the result rows. */
  query<R extends Row = Row>(sql: string, params?: readonly unknown[]): Promise<R[]>;
  /** A script of several statements without parameters (migrations). */
  exec(sql: string): Promise<void>;
  /**
   * Sends a notification with `pg_notify`. Inside a transaction PostgreSQL delivers it only when the transaction
   * commits, and not at all when it rolls back, so listeners never hear of a change that did not happen.
   */
  notify(channel: string, payload: string): Promise<void>;
}

export type Transaction = Queryable;

export type NotificationHandler = (payload: string) => void;

export interface ListenOptions {
  /**
   * Called after the backend had to re-establish its listening connection: notifications sent in between are
   * lost, so whoever waits on them should re-read the state it cares about.
   */
  onReconnect?: () => void;
}

export interface Store extends Queryable {
  readonly kind: "pglite" | "postgres";
  /** Runs `fn` in one transaction: committed when it resolves, rolled back when it throws. */
  transaction<T>(fn: (tx: Transaction) => Promise<T>): Promise<T>;
  /** Subscribes to a channel (every replica's notifications on PostgreSQL). Resolves to the unsubscribe call. */
  listen(
    channel: string,
    handler: NotificationHandler,
    options?: ListenOptions,
  ): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

/**
 * Channel names go into `LISTEN <name>` as identifiers (neither backend takes a parameter there), so only plain
 * lower-case names are accepted: nothing to quote, nothing to inject, and the same name on both backends
 * (PGlite does not quote the name, so PostgreSQL folds it to lower case).
 */
export function assertChannel(channel: string): void {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(channel)) {
    throw new Error(`invalid notification channel "${channel}": use lower-case letters, digits and _`);
  }
}
