// A client cannot make an unqualified name mean another schema's table than the one policy saw: pamgate pins
// the upstream session's search_path to public, drops a client's startup search_path and options, and refuses
// statements that would change it. Real PostgreSQL, real clients (node-postgres, and a raw startup packet for a
// search_path startup parameter, which libpq and node-postgres never send).
import { connect, type Socket } from "node:net";
import pg from "pg";
import protocol from "pg-protocol/dist/index";
import t from "tap";
import { spoolRecords } from "../../src/audit/reader.js";
import { recordBody } from "../../src/audit/record.js";
import { startTestGateway, type TestGateway } from "../helpers/gateway.js";

const { serialize, parse } = protocol;

let g: TestGateway;
t.before(async () => {
  // secret-db: the same database, with sessions pinned to schema secret (upstream.search_path)
  g = await startTestGateway((db, base) => ({
    resources: [
      ...base.resources,
      {
        name: "secret-db",
        kind: "postgres",
        labels: { env: "staging" },
        upstream: {
          host: db.host,
          port: db.port,
          database: db.database,
          user: db.user,
          search_path: ["secret"],
        },
        credentials: { password: db.password },
      },
    ],
  }));
  const direct = await g.direct();
  await direct.query(`CREATE SCHEMA secret;
    CREATE TABLE secret.users (id integer PRIMARY KEY, name text, email text, ssn text);
    INSERT INTO secret.users VALUES (1, 'Shadow', 'shadow@example.com', 'SECRET-ROW-999');`);
  await direct.end();
});
t.teardown(() => g?.stop());

/** A raw protocol-3 session with any startup parameters; returns the text of every DataRow value and error. */
async function rawQuery(params: Record<string, string>, token: string, sql: string): Promise<string[]> {
  const socket: Socket = connect({ host: "127.0.0.1", port: g.gw.listeners.postgres?.port as number });
  const out: string[] = [];
  await new Promise<void>((resolve, reject) => {
    socket.once("error", reject);
    socket.once("connect", () => socket.write(serialize.startup(params)));
    void parse(socket, (msg) => {
      const m = msg as unknown as { name: string; fields?: Array<Buffer | string | null>; message?: string };
      if (m.name === "authenticationCleartextPassword") socket.write(serialize.password(token));
      else if (m.name === "readyForQuery" && !out.includes("sent")) {
        out.push("sent");
        socket.write(serialize.query(sql));
      } else if (m.name === "dataRow") out.push(...(m.fields ?? []).map((f) => String(f)));
      else if (m.name === "error") {
        out.push(`ERROR: ${m.message}`);
        if (!out.includes("sent")) resolve();
      } else if (m.name === "readyForQuery") {
        socket.end(serialize.end());
        resolve();
      }
    });
  });
  socket.destroy();
  return out.filter((x) => x !== "sent");
}

t.test("a client's startup search_path is not forwarded", async (t) => {
  const token = await g.tokenFor("alice");
  const rows = await rawQuery(
    { user: "alice", database: "orders-db", search_path: "secret" },
    token,
    "SELECT name, ssn FROM users WHERE id = 1",
  );
  t.same(rows.slice(0, 1), ["Ada Lovelace"], "users is public.users, as policy saw it");
  t.notMatch(rows.join(" "), /SECRET-ROW-999|Shadow/, "nothing of secret.users");
  t.match(rows[1], /6789$/, "and public.users.ssn is masked as policy said");

  const opt = await rawQuery(
    { user: "alice", database: "orders-db", options: "-c search_path=secret" },
    token,
    "SHOW search_path",
  );
  t.same(opt, ["public"], "nor is a search_path in startup options");
});

t.test("statements that would change search_path are refused; the session stays usable", async (t) => {
  const c = new pg.Client({ connectionString: g.url(await g.tokenFor("alice")) });
  c.on("error", () => {});
  await c.connect();
  t.teardown(() => c.end());
  // First a statement of the same literal shape as set_config('search_path', …): its analysis must not be
  // reused for that one (the shape cache skips set_config).
  const other = await c.query("SELECT set_config('application_name', 'x', false) AS v").catch((e) => e);
  t.notMatch(
    String((other as Error).message ?? ""),
    /search_path/,
    "other settings are not this rule's business",
  );
  for (const sql of [
    "SET search_path = secret",
    "SET LOCAL search_path TO secret, public",
    "SET SESSION search_path = secret",
    "SELECT set_config('search_path', 'secret', false)",
    "SELECT pg_catalog.set_config('SEARCH_PATH ', 'secret', true)",
    "SELECT set_config(lower('SEARCH_PATH'), 'secret', false)",
    "SELECT id FROM orders WHERE id = 40; SET search_path = secret",
  ]) {
    const err = await c.query(sql).catch((e: pg.DatabaseError) => e);
    t.equal((err as pg.DatabaseError).code, "42501", sql);
    t.match((err as Error).message, /pins search_path to public/, sql);
    t.match((err as pg.DatabaseError).detail, /pg\.search_path_change/);
  }
  t.equal((await c.query("SHOW search_path")).rows[0].search_path, "public", "still public");
  const extended = await c
    .query({ text: "SELECT set_config($1, 'secret', false)", values: ["search_path"] })
    .catch((e: pg.DatabaseError) => e);
  t.equal((extended as pg.DatabaseError).code, "42501", "a parameter as the setting name is refused too");
  await c.query("RESET search_path");
  await c.query("SET search_path TO DEFAULT");
  t.equal((await c.query("SHOW search_path")).rows[0].search_path, "public", "RESET returns to the pin");
});

t.test(
  "a role's or database's default search_path does not change what the gateway's session resolves",
  async (t) => {
    const direct = await g.direct();
    t.teardown(() => direct.end());
    await direct.query(`ALTER ROLE ${g.db.user} SET search_path = secret`);
    await direct.query(`ALTER DATABASE ${g.db.database} SET search_path = secret`);
    t.teardown(async () => {
      await direct.query(`ALTER ROLE ${g.db.user} RESET search_path`);
      await direct.query(`ALTER DATABASE ${g.db.database} RESET search_path`);
    });
    const alice = await g.tokenFor("alice");
    const r = await g.psql(alice, "SELECT name, ssn FROM users WHERE id = 1");
    t.equal(r.code, 0, r.stderr);
    t.match(r.stdout, /^Ada Lovelace\|\*+6789/, "public.users, masked");
    t.notMatch(r.stdout, /SECRET-ROW-999/);
    const shown = await g.psql(alice, "SHOW search_path");
    t.equal(shown.stdout.trim(), "public");
  },
);

type Decision = {
  action?: string;
  reason_codes?: string[];
  input?: {
    command?: { tables?: { read?: string[]; write?: string[] }; columns?: string[] };
    session?: { search_path?: string[] };
  };
};

/** The decision records written while `fn` ran, read back from the gateway's own audit spool. */
async function decisionsDuring(fn: () => Promise<unknown>): Promise<Decision[]> {
  const all = async () => {
    const out: Decision[] = [];
    for await (const r of spoolRecords(`${g.dir}/audit`))
      if (r.kind === "decision") out.push(recordBody(r) as Decision);
    return out;
  };
  const before = (await all()).length;
  await fn();
  return (await all()).slice(before);
}

t.test("policy saw the table the server read: public.users, whatever the client asked for", async (t) => {
  const token = await g.tokenFor("alice");
  let rows: string[] = [];
  const recs = await decisionsDuring(async () => {
    rows = await rawQuery(
      { user: "alice", database: "orders-db", search_path: "secret" },
      token,
      "SELECT name, ssn FROM users WHERE id = 1",
    );
  });
  t.same(rows.slice(0, 1), ["Ada Lovelace"]);
  t.equal(recs.length, 1);
  t.same(recs[0]?.input?.command?.tables?.read, ["public.users"], "the decision was about public.users");
  t.equal(recs[0]?.action, "mask");
});

t.test("RESET, RESET ALL, DISCARD ALL and SET … TO DEFAULT return to the pinned schema", async (t) => {
  const c = new pg.Client({ connectionString: g.url(await g.tokenFor("alice")) });
  c.on("error", () => {});
  await c.connect();
  t.teardown(() => c.end());
  for (const sql of ["RESET search_path", "RESET ALL", "DISCARD ALL", "SET search_path TO DEFAULT"]) {
    await c.query(sql);
    t.equal((await c.query("SHOW search_path")).rows[0].search_path, "public", sql);
    const r = await c.query("SELECT name FROM users WHERE id = 1");
    t.same(r.rows, [{ name: "Ada Lovelace" }], `${sql}: users is still public.users`);
  }
});

t.test("other spellings of a search_path change are refused too, and recorded as the block", async (t) => {
  const c = new pg.Client({ connectionString: g.url(await g.tokenFor("alice")) });
  c.on("error", () => {});
  await c.connect();
  t.teardown(() => c.end());
  for (const sql of [
    'SET "SEARCH_PATH" = secret',
    "SET SCHEMA 'secret'",
    "UPDATE pg_settings SET setting = 'secret' WHERE name = 'search_path'",
  ]) {
    let err: pg.DatabaseError | undefined;
    const recs = await decisionsDuring(async () => {
      err = await c.query(sql).then(
        () => undefined,
        (e: pg.DatabaseError) => e,
      );
    });
    t.equal(err?.code, "42501", sql);
    t.match(err?.message, /pins search_path to public/, sql);
    t.equal(recs[0]?.action, "block", `${sql}: recorded as block`);
    t.ok(recs[0]?.reason_codes?.includes("pg.search_path_change"), `${sql}: with the reason`);
    t.equal((await c.query("SHOW search_path")).rows[0].search_path, "public", `${sql}: still public`);
  }
  const r = await c.query("SELECT name FROM users WHERE id = 1");
  t.same(r.rows, [{ name: "Ada Lovelace" }], "the session is still usable, on public.users");
});

t.test("a resource pinned to another schema: the server and policy both resolve names there", async (t) => {
  const alice = await g.tokenFor("alice");
  let r: Awaited<ReturnType<TestGateway["psql"]>> | undefined;
  const recs = await decisionsDuring(async () => {
    r = await g.psql(alice, "SELECT name, ssn FROM users WHERE id = 1", { resource: "secret-db" });
  });
  t.equal(r?.code, 0, r?.stderr ?? "");
  t.match(r?.stdout, /^Shadow\|\*+-999$/m, "secret.users, with ssn masked as policy said");
  t.notMatch(r?.stdout, /SECRET-ROW-999|Ada Lovelace/);
  t.same(recs[0]?.input?.command?.tables?.read, ["secret.users"], "policy saw secret.users");
  t.same(recs[0]?.input?.command?.columns, ["secret.users.id", "secret.users.name", "secret.users.ssn"]);
  t.same(recs[0]?.input?.session?.search_path, ["secret"], "and the session's search_path");
  const shown = await g.psql(alice, "SHOW search_path", { resource: "secret-db" });
  t.equal(shown.stdout.trim(), "secret");
  const set = await g.psql(alice, "SET search_path = public", { resource: "secret-db" });
  t.match(set.stderr, /pins search_path to secret/);
  const other = await g.psql(alice, "SELECT name FROM users WHERE id = 1");
  t.equal(other.stdout.trim(), "Ada Lovelace", "orders-db, on the same database, still reads public.users");
});
