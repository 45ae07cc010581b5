// The store on both backends with the same tests: migrations (recorded, in order, idempotent, all-or-nothing,
// refusing a newer or edited schema), queries, transactions, and notifications that arrive on commit only.
// Then what is particular to each: PostgreSQL replicas migrating at once and the LISTEN connection coming back
// after it is killed; PGlite persisting in its data directory and refusing a second opener.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import t from "tap";
import { MIGRATIONS_TABLE, migrate } from "../../src/store/migrate.js";
import { MIGRATIONS, type Migration } from "../../src/store/migrations.js";
import { openStore } from "../../src/store/open.js";
import { openPgliteStore } from "../../src/store/pglite.js";
import { openPostgresStore } from "../../src/store/postgres.js";
import type { Store } from "../../src/store/store.js";
import { startPostgres } from "../helpers/postgres.js";

const server = await startPostgres();
t.teardown(() => server.stop());
const tmp = mkdtempSync(join(tmpdir(), "pamgate-store-"));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

let databases = 0;
/** A new, empty database on the test server. */
async function freshDatabaseUrl(): Promise<string> {
  const name = `store_${++databases}`;
  const admin = new pg.Client({ connectionString: server.url });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  return server.url.replace(/\/app$/, `/${name}`);
}

let dirs = 0;
const freshDir = () => join(tmp, `data-${++dirs}`);

interface Backend {
  name: "postgres" | "pglite";
  /** Opens a store on a new, empty database. */
  fresh(migrations?: readonly Migration[]): Promise<{ store: Store; reopen: () => Promise<Store> }>;
}

const backends: Backend[] = [
  {
    name: "postgres",
    async fresh(migrations) {
      const url = await freshDatabaseUrl();
      const store = await openPostgresStore({ url, migrations });
      return { store, reopen: () => openPostgresStore({ url, migrations }) };
    },
  },
  {
    name: "pglite",
    async fresh(migrations) {
      const dataDir = freshDir();
      const store = await openPgliteStore({ dataDir, migrations });
      return { store, reopen: () => openPgliteStore({ dataDir, migrations }) };
    },
  },
];

/**
 * Subscribes (resolving once LISTEN is in place) and gives the next payload on `channel` — or "none" if nothing
 * arrives within `ms`.
 */
async function nextNotification(
  store: Store,
  channel: string,
  ms = 1000,
): Promise<{ next: Promise<string> }> {
  let deliver: (payload: string) => void = () => {};
  const next = new Promise<string>((resolve) => {
    deliver = resolve;
  });
  const unlisten = await store.listen(channel, (payload) => deliver(payload));
  const timer = setTimeout(() => deliver("none"), ms);
  return {
    next: next.finally(async () => {
      clearTimeout(timer);
      await unlisten();
    }),
  };
}

async function recorded(store: Store) {
  return store.query<{ version: number; name: string }>(
    `SELECT version, name FROM ${MIGRATIONS_TABLE} ORDER BY version`,
  );
}

const extra: Migration = { version: 2, name: "extra", sql: "CREATE TABLE extra (id int PRIMARY KEY);" };
const broken: Migration = { version: 3, name: "broken", sql: "CREATE TABLE broken (id int); SELECT 1/0;" };

for (const backend of backends) {
  t.test(backend.name, async (t) => {
    const { store, reopen } = await backend.fresh();
    t.teardown(() => store.close());
    t.equal(store.kind, backend.name);

    t.test("migrations are applied at open and recorded", async (t) => {
      t.same(await recorded(store), [{ version: 1, name: "approvals" }]);
      const tables = await store.query<{ table_name: string }>(
        `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name`,
      );
      t.same(
        tables.map((r) => r.table_name),
        ["approval_requests", "approval_votes", MIGRATIONS_TABLE],
      );
      t.same(await migrate(store), { applied: [], version: 1 }, "running them again applies nothing");
    });

    t.test("migrations: in order, all or nothing, never newer or edited", async (t) => {
      const db = await backend.fresh([...MIGRATIONS, extra]);
      t.teardown(() => db.store.close());
      t.same(await recorded(db.store), [
        { version: 1, name: "approvals" },
        { version: 2, name: "extra" },
      ]);

      await t.rejects(migrate(db.store, [...MIGRATIONS, extra, broken]), /division by zero/);
      t.same((await recorded(db.store)).length, 2, "the failed migration is not recorded");
      const leftovers = await db.store.query(
        "SELECT 1 FROM information_schema.tables WHERE table_name = 'broken'",
      );
      t.equal(leftovers.length, 0, "and its first statement was rolled back with it");

      await t.rejects(
        migrate(db.store, MIGRATIONS),
        /schema is at version 2 .* newer than this pamgate knows \(1\)/,
      );
      await t.rejects(
        migrate(db.store, [...MIGRATIONS, { ...extra, sql: `${extra.sql} -- edited` }]),
        /migration 2 \(extra\) differs/,
      );
      await t.rejects(migrate(db.store, [extra]), /out of order/);
    });

    t.test("queries take parameters and return typed rows", async (t) => {
      await store.exec("CREATE TABLE items (id uuid PRIMARY KEY, doc jsonb, at timestamptz, n integer)");
      const id = crypto.randomUUID();
      const at = new Date("2026-03-01T12:34:56.789Z");
      await store.query("INSERT INTO items VALUES ($1, $2, $3, $4)", [
        id,
        JSON.stringify(["a", { b: 1 }]),
        at,
        7,
      ]);
      const [row] = await store.query("SELECT * FROM items WHERE id = $1", [id]);
      t.same(row, { id, doc: ["a", { b: 1 }], at, n: 7 });
      t.ok((row?.at as Date) instanceof Date, "timestamptz comes back as a Date");
      await t.rejects(
        store.query("SELECT * FROM items WHERE id = $1", ["nope"]),
        /invalid input syntax for type uuid/,
      );
    });

    t.test("transactions commit or roll back as a whole", async (t) => {
      await store.exec("CREATE TABLE counters (name text PRIMARY KEY, n integer NOT NULL)");
      const result = await store.transaction(async (tx) => {
        await tx.query("INSERT INTO counters VALUES ('a', 1)");
        await tx.query("INSERT INTO counters VALUES ('b', 2)");
        return "done";
      });
      t.equal(result, "done");
      await t.rejects(
        store.transaction(async (tx) => {
          await tx.query("UPDATE counters SET n = n + 10");
          throw new Error("changed my mind");
        }),
        /changed my mind/,
      );
      await t.rejects(
        store.transaction(async (tx) => {
          await tx.query("UPDATE counters SET n = n + 10");
          await tx.query("INSERT INTO counters VALUES ('a', 3)"); // duplicate key
        }),
        /duplicate key/,
      );
      t.same(await store.query("SELECT name, n FROM counters ORDER BY name"), [
        { name: "a", n: 1 },
        { name: "b", n: 2 },
      ]);
    });

    t.test("notifications: delivered after commit, never after a rollback", async (t) => {
      let received = await nextNotification(store, "store_test");
      await store.notify("store_test", "direct");
      t.equal(await received.next, "direct");

      received = await nextNotification(store, "store_test");
      await t.rejects(
        store.transaction(async (tx) => {
          await tx.notify("store_test", "rolled back");
          throw new Error("abort");
        }),
      );
      await store.transaction(async (tx) => {
        await tx.notify("store_test", "committed");
      });
      t.equal(await received.next, "committed", "the rolled-back notification never arrives");

      const seen: string[] = [];
      const unlisten = await store.listen("store_test", (p) => seen.push(p));
      await store.notify("store_test", "one");
      await waitFor(() => seen.length === 1);
      await unlisten();
      await store.notify("store_test", "two");
      await new Promise((r) => setTimeout(r, 100));
      t.same(seen, ["one"], "nothing after unlisten");

      await t.rejects(
        store.listen("Bad-Channel; DROP", () => {}),
        /invalid notification channel/,
      );
      await t.rejects(store.notify("x y", "p"), /invalid notification channel/);
    });

    t.test("reopening keeps the data and applies nothing", async (t) => {
      await store.exec("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('still here')");
      await store.close();
      const again = await reopen();
      t.teardown(() => again.close());
      t.same(await again.query("SELECT v FROM kept"), [{ v: "still here" }]);
      t.same(await recorded(again), [{ version: 1, name: "approvals" }]);
    });
  });
}

t.test("postgres: replicas starting at once migrate once", async (t) => {
  const url = await freshDatabaseUrl();
  const stores = await Promise.all(Array.from({ length: 6 }, () => openPostgresStore({ url })));
  t.teardown(() => Promise.all(stores.map((s) => s.close())));
  t.same(await recorded(stores[0] as Store), [{ version: 1, name: "approvals" }]);
});

t.test("postgres: the LISTEN connection comes back after it is killed", async (t) => {
  const url = await freshDatabaseUrl();
  const store = await openPostgresStore({ url, listener: { reconnectMinMs: 50, pingIntervalMs: 0 } });
  t.teardown(() => store.close());
  const seen: string[] = [];
  let reconnects = 0;
  await store.listen("store_test", (p) => seen.push(p), { onReconnect: () => reconnects++ });
  await store.notify("store_test", "before");
  await waitFor(() => seen.length === 1);

  const killed = await store.query<{ ok: boolean }>(
    "SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = 'pamgate-listen'",
  );
  t.same(killed, [{ ok: true }], "the one LISTEN connection is terminated");
  await waitFor(() => reconnects === 1, 5000);
  t.pass("subscribers are told to re-read what they wait for");
  await store.notify("store_test", "after");
  await waitFor(() => seen.length === 2);
  t.same(seen, ["before", "after"]);
});

t.test("postgres: an unreachable server fails the open with the connection error", async (t) => {
  await t.rejects(openPostgresStore({ url: "postgres://nobody:x@127.0.0.1:1/none" }), /ECONNREFUSED/);
});

t.test("pglite: one process per data directory", async (t) => {
  const dataDir = freshDir();
  const store = await openStore({ kind: "pglite", dataDir });
  t.ok(existsSync(join(dataDir, "store.lock")));
  await t.rejects(openPgliteStore({ dataDir }), /already open in this process/);

  await store.close();
  t.notOk(existsSync(join(dataDir, "store.lock")), "closing releases it");

  // A lock left by a process that has died is taken over.
  writeFileSync(join(dataDir, "store.lock"), "2147483646\n");
  const again = await openPgliteStore({ dataDir });
  await again.close();

  // One held by a live process (our parent stands in for another gateway) is not.
  writeFileSync(join(dataDir, "store.lock"), `${process.ppid}\n`);
  await t.rejects(
    openPgliteStore({ dataDir }),
    /in use by process \d+ .*use PostgreSQL for several replicas/,
  );
  rmSync(join(dataDir, "store.lock"));
});

t.test("pglite: without a data directory, in memory", async (t) => {
  const store = await openStore({ kind: "pglite" });
  t.teardown(() => store.close());
  t.same(await recorded(store), [{ version: 1, name: "approvals" }]);
});

async function waitFor(condition: () => boolean, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 10));
  }
}
