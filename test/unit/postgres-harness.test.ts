// The test harness's PostgreSQL server: started from the installed binaries, reachable with the password it
// was given and refusing a wrong one (so SCRAM really is on), stopped and cleaned up.
import { existsSync } from "node:fs";
import pg from "pg";
import t from "tap";
import { startPostgres } from "../helpers/postgres.js";

t.test("starts a real server with SCRAM authentication", async (t) => {
  const server = await startPostgres();
  t.teardown(() => server.stop());
  const client = new pg.Client({ connectionString: server.url });
  await client.connect();
  const { rows } = await client.query("SHOW password_encryption");
  t.equal(rows[0].password_encryption, "scram-sha-256");
  const db = await client.query("SELECT current_database() AS db");
  t.equal(db.rows[0].db, "app");
  await client.end();

  const wrong = new pg.Client({
    connectionString: server.url.replace(encodeURIComponent(server.password), "nope"),
  });
  await t.rejects(wrong.connect(), /password authentication failed/);

  await server.stop();
  t.notOk(existsSync(server.dataDir), "the data directory is removed");
});
