// The PostgreSQL gateway end to end, with real parts only: a PostgreSQL server started from the installed
// binaries, the development OIDC issuer, the example policies compiled with opa, and real clients — psql,
// node-postgres (simple and extended protocol) and pgbench.
import { connect } from "node:net";
import pg from "pg";
import t from "tap";
import { toServer } from "../../src/proxy/postgres/wire.js";
import { silentLogger } from "../../src/util/log.js";
import { activeFrom, buildTestBundle } from "../helpers/bundles.js";
import { run, startTestGateway, type TestGateway } from "../helpers/gateway.js";

let g: TestGateway;
t.before(async () => {
  g = await startTestGateway();
});
t.teardown(() => g?.stop());

async function client(token: string, resource = "orders-db"): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: g.url(token, resource) });
  c.on("error", () => {});
  await c.connect();
  return c;
}

t.test("psql: allow, mask, block with a usable session", async (t) => {
  const alice = await g.tokenFor("alice");
  const allowed = await g.psql(alice, "SELECT id, total FROM orders WHERE id = 42");
  t.equal(allowed.code, 0, allowed.stderr);
  t.equal(allowed.stdout.trim(), "42|120.50");

  const masked = await g.psql(alice, "SELECT name, ssn, email FROM users ORDER BY id");
  t.equal(masked.code, 0, masked.stderr);
  const rows = masked.stdout
    .trim()
    .split("\n")
    .map((l) => l.split("|"));
  t.equal(rows[0]?.[0], "Ada Lovelace", "unmasked column passes");
  t.equal(rows[0]?.[1], "*******6789", "ssn partially masked");
  t.match(rows[0]?.[2], /^h:[0-9a-f]{16}$/, "email hashed");
  t.notMatch(masked.stdout, /123-45-6789|ada@example\.com/, "no raw value leaks");

  const blocked = await g.psql(alice, "DELETE FROM orders");
  t.match(blocked.stderr, /ERROR:\s+DELETE without a WHERE clause/);
  const direct = await g.direct();
  t.teardown(() => direct.end());
  const count = await direct.query("SELECT count(*)::int AS n FROM orders WHERE id IN (40, 41, 42)");
  t.equal(count.rows[0].n, 3, "nothing was deleted");
});

t.test("a blocked statement inside a transaction fails the transaction like PostgreSQL does", async (t) => {
  const c = await client(await g.tokenFor("alice"));
  t.teardown(() => c.end());
  await c.query("BEGIN");
  const err = await c.query("DELETE FROM orders").catch((e: pg.DatabaseError) => e);
  t.ok(err instanceof Error);
  t.equal((err as pg.DatabaseError).code, "42501");
  t.match((err as Error).message, /WHERE clause/);
  const aborted = await c.query("SELECT 1").catch((e: pg.DatabaseError) => e);
  t.equal((aborted as pg.DatabaseError).code, "25P02", "current transaction is aborted");
  await c.query("ROLLBACK");
  const ok = await c.query("SELECT count(*)::int AS n FROM orders WHERE id IN (40, 41, 42)");
  t.equal(ok.rows[0].n, 3, "the session is usable after ROLLBACK");
});

t.test("node-postgres extended protocol: parameters, masking, blocking, named statements", async (t) => {
  const c = await client(await g.tokenFor("alice"));
  t.teardown(() => c.end());
  const r = await c.query("SELECT id, total FROM orders WHERE id = $1", [41]);
  t.same(r.rows, [{ id: 41, total: "5.00" }]);

  const named = { name: "pii", text: "SELECT id, ssn FROM users WHERE id = $1", values: [2] };
  const first = await c.query(named);
  t.equal(first.rows[0].ssn, "*******4321");
  const second = await c.query({ ...named, values: [3] });
  t.equal(second.rows[0].ssn, "*******3456", "a reused prepared statement is still masked");

  const err = await c.query("UPDATE orders SET status = $1", ["x"]).catch((e: pg.DatabaseError) => e);
  t.equal((err as pg.DatabaseError).code, "42501");
  const after = await c.query("SELECT count(*)::int AS n FROM orders WHERE status = $1", ["x"]);
  t.equal(after.rows[0].n, 0, "nothing was updated, and the session goes on");

  const computed = await c.query("SELECT upper(ssn) AS s FROM users").catch((e: pg.DatabaseError) => e);
  t.match(
    (computed as Error).message,
    /cannot be masked/,
    "a masked column through an expression is blocked",
  );
});

t.test("multi-statement simple query: one blocked statement blocks the whole string", async (t) => {
  const c = await client(await g.tokenFor("alice"));
  t.teardown(() => c.end());
  const err = await c.query("SELECT 1; DELETE FROM orders").catch((e: pg.DatabaseError) => e);
  t.equal((err as pg.DatabaseError).code, "42501");
  const ok = await c.query("SELECT 1 AS one; SELECT 2 AS two");
  t.same(
    (ok as unknown as pg.QueryResult[]).map((x) => x.rows[0]),
    [{ one: 1 }, { two: 2 }],
  );
});

t.test("the CI bot acting for alice is read-only", async (t) => {
  const bot = await g.botFor("alice");
  const read = await g.psql(bot, "SELECT count(*) FROM orders");
  t.equal(read.stdout.trim(), "3", read.stderr);
  const write = await g.psql(bot, "UPDATE orders SET status = 'paid' WHERE id = 42");
  t.match(write.stderr, /ci-bot on behalf of alice is a machine identity and may only read/);
});

t.test("SQL the parser rejects gets a syntax error and the session goes on", async (t) => {
  const c = await client(await g.tokenFor("alice"));
  t.teardown(() => c.end());
  const err = await c.query("SELEC * FROM orders").catch((e: pg.DatabaseError) => e);
  t.equal((err as pg.DatabaseError).code, "42601");
  t.match((err as Error).message, /cannot parse/);
  const ok = await c.query("SELECT 1 AS x");
  t.equal(ok.rows[0].x, 1);
});

t.test("COPY out is masked, COPY in works", async (t) => {
  const alice = await g.tokenFor("alice");
  const out = await g.psql(alice, "COPY users (id, ssn) TO STDOUT");
  t.equal(out.code, 0, out.stderr);
  t.match(out.stdout, /^1\t\*{7}6789$/m);
  t.notMatch(out.stdout, /123-45-6789/);
  const csv = await g.psql(alice, "COPY (SELECT ssn FROM users) TO STDOUT");
  t.match(
    csv.stderr,
    /ERROR:.*(cannot be masked|can be copied out only as COPY table)/s,
    "COPY (query) of a masked column is blocked",
  );

  const c = await client(alice, "staging-db");
  t.teardown(() => c.end());
  const copyIn = await g.psql(alice, "COPY orders (id, user_id, total) FROM STDIN", {
    resource: "staging-db",
    input: "90\t1\t1.00\n91\t2\t2.00\n",
  });
  t.equal(copyIn.code, 0, copyIn.stderr);
  t.match(copyIn.stdout, /COPY 2/);
  const n = await c.query("SELECT count(*)::int AS n FROM orders WHERE id IN (90, 91)");
  t.equal(n.rows[0].n, 2);
});

t.test("a cancel request reaches the right backend", async (t) => {
  const c = await client(await g.tokenFor("alice"));
  t.teardown(() => c.end());
  const key = c as unknown as { processID: number; secretKey: number };
  const sleeping = c.query("SELECT pg_sleep(20)").catch((e: pg.DatabaseError) => e);
  await new Promise((r) => setTimeout(r, 300));
  await new Promise<void>((resolve) => {
    const s = connect({ host: "127.0.0.1", port: g.gw.listeners.postgres?.port as number }, () =>
      s.end(toServer.cancel(key.processID, key.secretKey)),
    );
    s.on("close", () => resolve());
  });
  const err = await sleeping;
  t.equal((err as pg.DatabaseError).code, "57014", "canceling statement due to user request");
  const ok = await c.query("SELECT 1 AS x");
  t.equal(ok.rows[0].x, 1);
});

t.test("bad authentication is refused with a clear FATAL", async (t) => {
  const empty = await run("psql", [g.url(""), "-X", "-w", "-c", "SELECT 1"]);
  t.not(empty.code, 0);
  const garbage = await g.psql("not-a-token", "SELECT 1");
  t.match(garbage.stderr, /FATAL:\s+access token rejected: not a JWT/);
  const unknownDb = await g.psql(await g.tokenFor("alice"), "SELECT 1", { resource: "nope" });
  t.match(unknownDb.stderr, /database "nope" is not a pamgate resource/);
});

t.test("malformed frames end that session only", async (t) => {
  const c = await client(await g.tokenFor("alice"));
  t.teardown(() => c.end());
  const raw = (c as unknown as { connection: { stream: import("node:net").Socket } }).connection.stream;
  const closed = new Promise((r) => raw.once("close", r));
  raw.write(Buffer.from([0x7a, 0, 0, 0, 4])); // unknown message type 'z'
  await closed;
  t.pass("the session with garbage was closed");
  const other = await client(await g.tokenFor("alice"));
  t.teardown(() => other.end());
  const ok = await other.query("SELECT 1 AS x");
  t.equal(ok.rows[0].x, 1, "other sessions go on");
});

t.test("a client that disconnects mid-result does not disturb the gateway", async (t) => {
  const c = await client(await g.tokenFor("alice"));
  const raw = (c as unknown as { connection: { stream: import("node:net").Socket } }).connection.stream;
  void c.query("SELECT g, repeat('x', 100) FROM generate_series(1, 200000) g").catch(() => {});
  await new Promise((r) => setTimeout(r, 100));
  raw.destroy();
  const other = await client(await g.tokenFor("alice"));
  t.teardown(() => other.end());
  const ok = await other.query("SELECT count(*)::int AS n FROM orders WHERE id IN (40, 41, 42)");
  t.equal(ok.rows[0].n, 3);
});

t.test("pgbench runs through the gateway", async (t) => {
  const alice = await g.tokenFor("alice");
  const init = await run(`${g.db.bin}/pgbench`, ["-i", "-s", "1", "-q", g.db.url]);
  t.equal(init.code, 0, init.stderr);
  const r = await run(`${g.db.bin}/pgbench`, ["-S", "-T", "2", "-c", "2", "-n", g.url(alice)]);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /number of failed transactions: 0/);
});

t.test(
  "approve: the statement waits for an approver, runs once approved, and the grant lets a retry through",
  async (t) => {
    const alice = await g.tokenFor("alice");
    const c = await client(alice);
    t.teardown(() => c.end());
    const notices: string[] = [];
    c.on("notice", (n) => notices.push(n.message ?? ""));
    const ddl = "ALTER TABLE orders ADD COLUMN IF NOT EXISTS note text";
    const held = c.query(ddl);
    const pending = await waitForPending();
    for (let i = 0; i < 100 && notices.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    t.match(
      notices.join("\n"),
      new RegExp(`waiting for approval ${pending.id}`),
      "the user is told what it waits for",
    );
    t.equal(pending.command.text, ddl, "the approver sees the exact statement");
    const bob = (await g.gw.verifier.verify(await g.tokenFor("bob"))).identity;
    await g.gw.approvals.approve(pending.id, bob, { comment: "ok" });
    await held;
    const direct = await g.direct();
    t.teardown(() => direct.end());
    const col = await direct.query(
      "SELECT 1 FROM information_schema.columns WHERE table_name = 'orders' AND column_name = 'note'",
    );
    t.equal(col.rowCount, 1, "the approved statement ran");
    await c.query(ddl);
    t.pass("a retry of the same statement runs under the grant without a new request");
    t.equal((await g.gw.approvals.list({ status: "pending" })).length, 0);

    const denied = c.query("ALTER TABLE orders DROP COLUMN IF EXISTS note").catch((e: pg.DatabaseError) => e);
    const second = await waitForPending();
    await g.gw.approvals.deny(second.id, bob, { comment: "no" });
    const err = await denied;
    t.equal((err as pg.DatabaseError).code, "42501");
    t.match((err as Error).message, /was denied/);
    const still = await c.query("SELECT 1 AS x");
    t.equal(still.rows[0].x, 1, "the session goes on after a denial");
  },
);

async function waitForPending() {
  for (let i = 0; i < 200; i++) {
    const [p] = await g.gw.approvals.list({ status: "pending" });
    if (p) return p;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error("no approval request appeared");
}

t.test("a newly activated bundle decides the very next statement of an open session", async (t) => {
  const c = await client(await g.tokenFor("alice"));
  t.teardown(() => c.end());
  const q = "SELECT id, total FROM orders WHERE id = 42";
  t.equal((await c.query(q)).rows.length, 1);
  t.equal((await c.query(q)).rows.length, 1, "repeated: answered from the reused verdict");
  const before = g.gw.engine.current;
  if (!before) throw new Error("no bundle active");
  t.teardown(() => g.gw.engine.activate(before));
  // A freeze bundle with a log mask like the example's: this gateway's audit spool is checked for emails below.
  const freeze = buildTestBundle(
    {
      "main.rego": `package pamgate.main\n\nverdict := {"action": "block", "reasons": [{"code": "t.freeze", "message": "change freeze until Monday"}], "mask": [], "approval": null}\n`,
      "log.rego": `package system.log\n\nmask contains "/input/identity/email"\n`,
    },
    { revision: "freeze", entrypoints: ["pamgate/main/verdict", "system/log/mask"] },
  );
  g.gw.engine.activate(await activeFrom(freeze));
  const err = await c.query(q).catch((e: Error) => e);
  t.match(
    (err as Error).message,
    /change freeze until Monday/,
    "the same statement, same second, new bundle",
  );
  g.gw.engine.activate(before);
  t.equal((await c.query(q)).rows.length, 1, "and the previous bundle again");
});

t.test("a token that expires mid-session is refused on the next statement", async (t) => {
  const { startDevIssuer } = await import("../../src/identity/dev-issuer.js");
  const { TokenVerifier } = await import("../../src/identity/verifier.js");
  const short = await startDevIssuer({
    users: { alice: { groups: ["engineering"] } },
    accessTokenTtlSeconds: 2,
  });
  t.teardown(() => short.stop());
  const token = await short.tokenFor("alice");
  // Trust this issuer too, for this test only: swap the gateway's verifier's issuers by verifying here.
  const verifier = new TokenVerifier([short.issuerConfig()]);
  const verified = await verifier.verify(token);
  t.ok(verified.expiresAt.getTime() - Date.now() < 5000);
  const original = g.gw.verifier.verify.bind(g.gw.verifier);
  g.gw.verifier.verify = (tok: string) => (tok === token ? verifier.verify(tok) : original(tok));
  t.teardown(() => {
    g.gw.verifier.verify = original;
  });
  const c = await client(token);
  const ended = new Promise((r) => c.once("end", r));
  t.equal((await c.query("SELECT 1 AS x")).rows[0].x, 1);
  await new Promise((r) => setTimeout(r, 2500));
  const err = await c.query("SELECT 1 AS x").catch((e: pg.DatabaseError) => e);
  t.match((err as Error).message, /access token expired at .*reconnect with a fresh token/);
  await ended;
  t.pass("the session is closed");
});

t.test("every statement's decision is in the audit spool, with the session's transcript", async (t) => {
  const { spoolRecords } = await import("../../src/audit/reader.js");
  const { verifySpool } = await import("../../src/audit/verify.js");
  const { recordBody } = await import("../../src/audit/record.js");
  const c = await client(await g.tokenFor("alice"));
  await c.query("SELECT id FROM orders WHERE id = 40");
  await c.query("DELETE FROM orders").catch(() => {});
  await c.end();
  await new Promise((r) => setTimeout(r, 300)); // the transcript's last chunk is flushed on session end
  const decisions: Array<Record<string, unknown>> = [];
  let transcriptLines = 0;
  for await (const r of spoolRecords(`${g.dir}/audit`)) {
    if (r.kind === "decision") decisions.push(recordBody(r));
    if (r.kind === "recording") transcriptLines++;
  }
  const mine = decisions.filter((d) => (d.identity as { sub?: string } | null)?.sub === "alice");
  t.ok(
    mine.some((d) => d.action === "allow"),
    "the allowed SELECT is recorded",
  );
  const blocked = mine.find(
    (d) => d.action === "block" && (d.reason_codes as string[]).includes("pg.no_where"),
  );
  t.ok(blocked, "the blocked DELETE is recorded with its reason");
  t.equal(blocked?.path, "pamgate/main/verdict");
  t.match(blocked?.bundles, { pamgate: { revision: "test" } });
  t.notMatch(JSON.stringify(decisions), /alice@example\.com/, "the bundle's log mask erased the email");
  t.ok(transcriptLines > 0, "the session transcript went through the spool");
  const verified = await verifySpool(`${g.dir}/audit`);
  t.equal(verified.ok, true, "the hash chain verifies");
});

t.test("TLS toward the client: sslmode=require works with the configured certificate", async (t) => {
  const { execFileSync } = await import("node:child_process");
  const { readFileSync } = await import("node:fs");
  const dir = t.testdir();
  execFileSync(
    "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-days",
      "1",
      "-subj",
      "/CN=127.0.0.1",
      "-keyout",
      `${dir}/key.pem`,
      "-out",
      `${dir}/cert.pem`,
    ],
    { stdio: "ignore" },
  );
  const { postgresAdapter } = await import("../../src/proxy/postgres/adapter.js");
  const listener = postgresAdapter.createListener({
    config: { host: "127.0.0.1", port: 0 },
    resources: [
      {
        resource: { name: "orders-db", kind: "postgres", labels: { env: "production" } },
        upstream: { host: g.db.host, port: g.db.port, database: g.db.database, user: g.db.user },
        secret: g.db.password,
      },
    ],
    sessions: g.gw.sessions,
    pipeline: g.gw.pipeline,
    log: silentLogger,
    tls: { cert: readFileSync(`${dir}/cert.pem`), key: readFileSync(`${dir}/key.pem`) },
  });
  const { port } = await listener.listen();
  t.teardown(() => listener.close());
  const token = await g.tokenFor("alice");
  const r = await run("psql", [
    `postgres://alice:${encodeURIComponent(token)}@127.0.0.1:${port}/orders-db?sslmode=require`,
    "-X",
    "-A",
    "-t",
    "-c",
    "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
  ]);
  t.equal(r.code, 0, r.stderr);
  const info = await run("psql", [
    `postgres://alice:${encodeURIComponent(token)}@127.0.0.1:${port}/orders-db?sslmode=require`,
    "-X",
    "-c",
    "\\conninfo",
  ]);
  t.match(info.stdout, /SSL connection \(protocol: TLSv1\.[23]/, "the client's connection is encrypted");
});
