// Applies the migrations a database lacks, in version order, at open. Everything happens in one transaction
// that first takes a transaction-scoped advisory lock: when two replicas start at once the second waits, then
// finds the versions recorded and applies nothing. A failing migration rolls back all of the run, so a
// database is never left half-migrated. PGlite runs the same code (the lock is trivially uncontended there).
import { createHash } from "node:crypto";
import { type Logger, silentLogger } from "../util/log.js";
import { MIGRATIONS, type Migration } from "./migrations.js";
import type { Queryable, Store } from "./store.js";

/** pg_advisory_xact_lock key: "pamg" in ASCII, so it is recognisable in pg_locks. */
export const MIGRATION_LOCK_KEY = 0x70616d67;

export const MIGRATIONS_TABLE = "pamgate_migrations";

export interface MigrationResult {
  /** Versions applied by this call (empty when the database was current). */
  applied: number[];
  /** The schema version afterwards. */
  version: number;
}

export function checksum(migration: Migration): string {
  return createHash("sha256").update(migration.sql).digest("hex");
}

export async function migrate(
  store: Pick<Store, "transaction">,
  migrations: readonly Migration[] = MIGRATIONS,
  log: Logger = silentLogger,
): Promise<MigrationResult> {
  checkList(migrations);
  return store.transaction(async (tx) => {
    await tx.query("SELECT pg_advisory_xact_lock($1)", [MIGRATION_LOCK_KEY]);
    await tx.exec(`CREATE TABLE IF NOT EXISTS ${MIGRATIONS_TABLE} (
      version    integer PRIMARY KEY,
      name       text NOT NULL,
      checksum   text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`);
    const recorded = await appliedVersions(tx);
    verifyRecorded(recorded, migrations);
    const applied: number[] = [];
    for (const migration of migrations) {
      if (recorded.has(migration.version)) continue;
      await tx.exec(migration.sql);
      await tx.query(`INSERT INTO ${MIGRATIONS_TABLE} (version, name, checksum) VALUES ($1, $2, $3)`, [
        migration.version,
        migration.name,
        checksum(migration),
      ]);
      applied.push(migration.version);
      log.info({ version: migration.version, name: migration.name }, "store migration applied");
    }
    return { applied, version: migrations.at(-1)?.version ?? 0 };
  });
}

async function appliedVersions(tx: Queryable): Promise<Map<number, { name: string; checksum: string }>> {
  const rows = await tx.query<{ version: number; name: string; checksum: string }>(
    `SELECT version, name, checksum FROM ${MIGRATIONS_TABLE} ORDER BY version`,
  );
  return new Map(rows.map((r) => [Number(r.version), { name: r.name, checksum: r.checksum }]));
}

/** Versions 1, 2, 3, … without gaps, so "in order" means one thing. */
function checkList(migrations: readonly Migration[]): void {
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) {
      throw new Error(`migration list is out of order: position ${i + 1} holds version ${m.version}`);
    }
  });
}

/**
 * Refuses a database this build does not understand: one migrated by a newer pamgate (rolling back a deploy
 * must not run old code on a new schema), or one whose recorded migration differs from ours (an edited
 * migration would leave replicas with different schemas under the same version number).
 */
function verifyRecorded(
  recorded: Map<number, { name: string; checksum: string }>,
  migrations: readonly Migration[],
): void {
  const known = migrations.length;
  for (const [version, { name, checksum: sum }] of recorded) {
    const ours = migrations[version - 1];
    if (!ours) {
      throw new Error(
        `the store's schema is at version ${Math.max(...recorded.keys())} (${name}), newer than this pamgate knows (${known}): upgrade pamgate`,
      );
    }
    if (checksum(ours) !== sum) {
      throw new Error(
        `store migration ${version} (${ours.name}) differs from the one applied to this database: migrations must never be edited once shipped`,
      );
    }
  }
}

/** Migrates a freshly opened store; on failure closes it before rethrowing, so no connection or lock leaks. */
export async function migrateOrClose<S extends Pick<Store, "transaction" | "close">>(
  store: S,
  migrations: readonly Migration[] = MIGRATIONS,
  log: Logger = silentLogger,
): Promise<S> {
  try {
    await migrate(store, migrations, log);
  } catch (err) {
    await store.close();
    throw err;
  }
  return store;
}
