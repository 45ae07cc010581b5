// The limits of the PostgreSQL listener and the session opener, with real clients and raw sockets against a real
// gateway (in this process) and a real PostgreSQL: the start-up/authentication timeout, the limit on connections
// pending authentication, sessions per identity, a client that stops reading a huge result (memory stays flat, the
// upstream query stalls), oversized messages (refused from their header) and deeply nested statements (refused
// before the parser, quickly, with their own reason code). Timings are asserted with generous bounds only.
// SSH: limits-ssh.test.ts; Kubernetes: limits-kube.test.ts.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { join } from "node:path";
import { connect as tlsConnect } from "node:tls";
import pg from "pg";
import t, { type Test } from "tap";
import { spoolRecords } from "../../src/audit/reader.js";
import { recordBody } from "../../src/audit/record.js";
import type { AdapterListener } from "../../src/proxy/adapter.js";
import { postgresAdapter } from "../../src/proxy/postgres/adapter.js";
import { initAnalyzer } from "../../src/proxy/postgres/analysis/index.js";
import type { PostgresListenerConfig } from "../../src/proxy/postgres/config.js";
import { silentLogger } from "../../src/util/log.js";
import { run, startTestGateway, type TestGateway } from "../helpers/gateway.js";

let g: TestGateway;
t.before(async () => {
  g = await startTestGateway((_db, base) => ({
    listeners: {
      ...base.listeners,
      postgres: { host: "127.0.0.1", port: 0, max_message_bytes: 1024 * 1024 },
    },
    limits: { sessions_per_identity: 3 },
  }));
});
t.teardown(() => g?.stop());

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, check: () => boolean | Promise<boolean>, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

// --- raw PostgreSQL frames --------------------------------------------------------------------------------------

function startupPacket(params: Record<string, string>): Buffer {
  const body = Buffer.concat([
    ...Object.entries(params).map(([k, v]) => Buffer.from(`${k}\0${v}\0`)),
    Buffer.from([0]),
  ]);
  const head = Buffer.alloc(8);
  head.writeInt32BE(8 + body.length, 0);
  head.writeInt32BE(196608, 4);
  return Buffer.concat([head, body]);
}

function frame(type: string, body: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head[0] = type.charCodeAt(0);
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}

const SSL_REQUEST = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);

/** The typed backend frames in `buf` (from `from`), as far as they are complete. */
function frames(buf: Buffer, from = 0): Array<{ type: string; body: Buffer }> {
  const out: Array<{ type: string; body: Buffer }> = [];
  let i = from;
  while (i + 5 <= buf.length) {
    const len = buf.readInt32BE(i + 1);
    if (i + 1 + len > buf.length) break;
    out.push({ type: String.fromCharCode(buf[i] as number), body: buf.subarray(i + 5, i + 1 + len) });
    i += 1 + len;
  }
  return out;
}

function errorFields(body: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let i = 0;
  while (i < body.length && body[i] !== 0) {
    const end = body.indexOf(0, i + 1);
    out[String.fromCharCode(body[i] as number)] = body.toString("utf8", i + 1, end);
    i = end + 1;
  }
  return out;
}

/** A client socket and what it has received. */
interface Raw {
  socket: Socket;
  /** The first 16 MiB received (the rest is only counted). */
  received(): Buffer;
  /** Bytes received in all. */
  total(): number;
  closed: Promise<void>;
  /** Resolves with the first ErrorResponse's fields (rejects if the socket closes without one). */
  error(from?: number): Promise<Record<string, string>>;
}

const KEPT = 16 * 1024 * 1024;

function watch(socket: Socket): Raw {
  const chunks: Buffer[] = [];
  let kept = 0;
  let total = 0;
  let joined: Buffer | null = null;
  socket.on("data", (c: Buffer) => {
    total += c.length;
    if (kept < KEPT) {
      chunks.push(c);
      kept += c.length;
      joined = null;
    }
  });
  socket.on("error", () => {});
  const closed = new Promise<void>((r) => socket.once("close", () => r()));
  const received = () => {
    joined ??= Buffer.concat(chunks);
    return joined;
  };
  return {
    socket,
    received,
    total: () => total,
    closed,
    async error(from = 0) {
      for (;;) {
        const e = frames(received(), from).find((f) => f.type === "E");
        if (e) return errorFields(e.body);
        if (socket.destroyed) throw new Error(`closed without an ErrorResponse (got ${total} bytes)`);
        await sleep(20);
      }
    },
  };
}

async function rawConnect(port: number): Promise<Raw> {
  const socket = connect(port, "127.0.0.1");
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", () => resolve());
    socket.once("error", reject);
  });
  return watch(socket);
}

/** A raw client authenticated as `token` on `resource`, ready for a query (ReadyForQuery received). */
async function rawSession(port: number, token: string, resource: string): Promise<Raw> {
  const raw = await rawConnect(port);
  raw.socket.write(startupPacket({ user: "x", database: resource }));
  await until("the password request", () => frames(raw.received()).some((f) => f.type === "R"));
  raw.socket.write(frame("p", Buffer.from(`${token}\0`)));
  await until("ReadyForQuery", () => {
    const fs = frames(raw.received());
    if (fs.some((f) => f.type === "E"))
      throw new Error(JSON.stringify(errorFields(fs.find((f) => f.type === "E")?.body as Buffer)));
    return fs.some((f) => f.type === "Z");
  });
  return raw;
}

async function client(url: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url });
  c.on("error", () => {});
  await c.connect();
  return c;
}

async function refusedWith(
  p: Promise<unknown>,
): Promise<{ code?: string; message: string; detail?: string }> {
  const err = await p.then(
    () => null,
    (e: unknown) => e as { code?: string; message: string; detail?: string },
  );
  if (!err) throw new Error("expected the connection or statement to be refused");
  return err;
}

/** A second PostgreSQL listener on the test gateway's sessions and pipeline, with its own configuration. */
async function extraListener(
  t: Test,
  config: Partial<PostgresListenerConfig>,
  tls?: { cert: Buffer; key: Buffer },
): Promise<{ listener: AdapterListener; port: number; url: (token: string) => string }> {
  const listener = postgresAdapter.createListener({
    config: { host: "127.0.0.1", port: 0, ...config },
    resources: [
      {
        resource: { name: "staging-db", kind: "postgres", labels: { env: "staging" } },
        upstream: { host: g.db.host, port: g.db.port, database: g.db.database, user: g.db.user },
        secret: g.db.password,
      },
    ],
    sessions: g.gw.sessions,
    pipeline: g.gw.pipeline,
    log: silentLogger,
    tls,
  });
  const { port } = await listener.listen();
  t.teardown(() => listener.close());
  return {
    listener,
    port,
    url: (token) =>
      `postgres://bob:${encodeURIComponent(token)}@127.0.0.1:${port}/staging-db?sslmode=disable`,
  };
}

function pendingAuth(listener: AdapterListener): number {
  return Number((listener.status().details as Record<string, number>).pending_auth);
}

t.test("auth_timeout_s: a client that never finishes start-up is told why and disconnected", async (t) => {
  const dir = t.testdir();
  execFileSync(
    "openssl",
    [
      ...["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1"],
      ...["-subj", "/CN=127.0.0.1", "-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem")],
    ],
    { stdio: "ignore" },
  );
  const tls = { cert: readFileSync(join(dir, "cert.pem")), key: readFileSync(join(dir, "key.pem")) };
  const l = await extraListener(t, { auth_timeout_s: 2 }, tls);
  const bob = await g.tokenFor("bob");

  // An authenticated session idles past the timeout: it is not affected.
  const idle = await client(l.url(bob));
  t.teardown(() => idle.end());

  const started = Date.now();
  const silent = await rawConnect(l.port); // connects, sends nothing
  const noPassword = await rawConnect(l.port); // sends its startup packet, never the password
  noPassword.socket.write(startupPacket({ user: "bob", database: "staging-db" }));
  // Inside TLS: the error is sent inside TLS too.
  const plain = await rawConnect(l.port);
  plain.socket.write(SSL_REQUEST);
  await until("the SSL answer", () => plain.received().length > 0);
  t.equal(plain.received().toString(), "S");
  const secure = watch(tlsConnect({ socket: plain.socket, rejectUnauthorized: false }));
  await new Promise((r) => secure.socket.once("secureConnect", r));
  secure.socket.write(startupPacket({ user: "bob", database: "staging-db" }));

  for (const [name, raw] of [
    ["no startup packet", silent],
    ["no password", noPassword],
    ["TLS, no password", secure],
  ] as const) {
    const e = await raw.error();
    t.equal(e.S, "FATAL", name);
    t.equal(e.C, "08P01", name);
    t.match(e.M, /not completed within 2 s \(listeners\.postgres\.auth_timeout_s\)/, name);
    await raw.closed;
    const elapsed = Date.now() - started;
    t.ok(elapsed >= 1500 && elapsed < 20_000, `${name}: disconnected after ${elapsed} ms`);
  }
  t.equal(pendingAuth(l.listener), 0, "nothing is left pending");
  t.ok(Number((l.listener.status().details as Record<string, number>).auth_timeouts) >= 3);

  const r = await idle.query("SELECT 1 AS x");
  t.equal(r.rows[0].x, 1, "the authenticated session idled past the timeout and goes on");
  const fresh = await client(l.url(bob));
  t.equal((await fresh.query("SELECT 2 AS x")).rows[0].x, 2, "new clients connect as before");
  await fresh.end();
});

t.test(
  "max_unauthenticated_connections: beyond it new connections are refused at once with 53300",
  async (t) => {
    const l = await extraListener(t, { max_unauthenticated_connections: 3, auth_timeout_s: 120 });
    const bob = await g.tokenFor("bob");
    const held = await client(l.url(bob));
    t.teardown(() => held.end());

    const hogs = await Promise.all([1, 2, 3].map(() => rawConnect(l.port)));
    await until("3 connections pending", () => pendingAuth(l.listener) === 3);

    const started = Date.now();
    const err = await refusedWith(client(l.url(bob)));
    t.equal(err.code, "53300");
    t.match(
      err.message,
      /too many connections pending authentication .*listeners\.postgres\.max_unauthenticated_connections = 3/,
    );
    t.ok(Date.now() - started < 10_000, "refused at once, not after the hogs time out");

    // psql, preferring TLS (it sends an SSLRequest first), reads the same error.
    const psql = await run("psql", [
      `postgres://bob:${encodeURIComponent(bob)}@127.0.0.1:${l.port}/staging-db?sslmode=prefer`,
      "-X",
      "-c",
      "SELECT 1",
    ]);
    t.not(psql.code, 0);
    t.match(psql.stderr, /FATAL:\s+pamgate: too many connections pending authentication/);

    // A raw client sees the ErrorResponse as the answer to its startup packet.
    const over = await rawConnect(l.port);
    over.socket.write(startupPacket({ user: "bob", database: "staging-db" }));
    t.match(await over.error(), { S: "FATAL", C: "53300" });
    await over.closed;

    t.equal((await held.query("SELECT 1 AS x")).rows[0].x, 1, "the authenticated session is not affected");
    t.ok(Number((l.listener.status().details as Record<string, number>).refused_pending_limit) >= 3);

    for (const h of hogs) h.socket.destroy();
    await until("no connection pending", () => pendingAuth(l.listener) === 0);
    const again = await client(l.url(bob));
    t.equal((await again.query("SELECT 3 AS x")).rows[0].x, 3, "once they are gone, clients connect again");
    await again.end();
  },
);

t.test("limits.sessions_per_identity: the next session is refused with a reason, and recorded", async (t) => {
  const carol = await g.tokenFor("carol");
  const url = g.url(carol, "staging-db");
  const mine = await Promise.all([1, 2, 3].map(() => client(url)));
  t.teardown(() => Promise.all(mine.map((c) => c.end().catch(() => {}))));

  const err = await refusedWith(client(url));
  t.equal(err.code, "53300");
  t.match(err.message, /carol already has 3 sessions open through pamgate.*limits\.sessions_per_identity/);
  // The delegation chain does not help: a bot acting for carol counts as carol.
  const bot = await refusedWith(client(g.url(await g.botFor("carol"), "staging-db")));
  t.match(bot.message, /carol already has 3 sessions open/);

  // Other requesters, and carol's open sessions, are not affected.
  const alice = await client(g.url(await g.tokenFor("alice"), "staging-db"));
  t.equal((await alice.query("SELECT 1 AS x")).rows[0].x, 1);
  await alice.end();
  for (const c of mine) t.equal((await c.query("SELECT 1 AS x")).rows[0].x, 1);

  await (mine.shift() as pg.Client).end();
  const carolIdentity = { sub: "carol", iss: g.gw.devIssuer?.issuer ?? "" };
  await until("carol's session ended", () => g.gw.sessions.countFor(carolIdentity as never) === 2);
  const next = await client(url);
  mine.push(next);
  t.equal((await next.query("SELECT 1 AS x")).rows[0].x, 1, "a slot freed is usable again");

  await sleep(300);
  const refusals: Array<Record<string, unknown>> = [];
  for await (const r of spoolRecords(join(g.dir, "audit"))) {
    if (r.kind !== "session") continue;
    const body = recordBody(r) as Record<string, unknown>;
    if (body.event === "refused") refusals.push(body);
  }
  t.equal(refusals.length, 2, "both refusals are in the audit trail");
  t.match(refusals[0], {
    code: "session.identity_limit",
    protocol: "postgres",
    resource: "staging-db",
    sub: "carol",
  });
  t.match(refusals[1], { sub: "carol", actors: ["carol", "ci-bot"] });
});

/** The resident set size of this process (the gateway runs in it), in bytes. */
const rss = () => process.memoryUsage().rss;

async function stalledResult(
  t: Test,
  token: string,
  resource: string,
  sql: string,
): Promise<{ raw: Raw; firstRow: Buffer }> {
  const port = g.gw.listeners.postgres?.port as number;
  const raw = await rawSession(port, token, resource);
  const start = raw.received().length;
  raw.socket.write(frame("Q", Buffer.from(`${sql}\0`)));
  await until("the result to flow", () => raw.total() - start > 8 * 1024 * 1024);
  raw.socket.pause(); // the client stops reading
  const firstRow = frames(raw.received(), start).find((f) => f.type === "D")?.body as Buffer;
  t.ok(firstRow, "rows arrived before the client stopped reading");

  await sleep(1000);
  const base = rss();
  let peak = base;
  for (let i = 0; i < 20; i++) {
    await sleep(500);
    peak = Math.max(peak, rss());
  }
  const growth = (peak - base) / 1e6;
  t.ok(growth < 100, `memory stays flat while the client does not read (+${growth.toFixed(1)} MB)`);

  const direct = await g.direct();
  t.teardown(() => direct.end());
  const act = await direct.query(
    "SELECT state, wait_event FROM pg_stat_activity WHERE query = $1 AND pid <> pg_backend_pid()",
    [sql],
  );
  t.equal(act.rows.length, 1, "the upstream query is still there");
  t.match(act.rows[0], { state: "active", wait_event: "ClientWrite" }, "stalled writing, not finished");
  return { raw, firstRow };
}

t.test(
  "a client that stops reading a huge result: memory flat, the query stalls, the gateway recovers",
  async (t) => {
    const sql = "SELECT repeat('x', 1000) FROM generate_series(1, 2000000)"; // ~2 GB
    const { raw } = await stalledResult(t, await g.tokenFor("bob"), "staging-db", sql);

    // Meanwhile other sessions work.
    const other = await client(g.url(await g.tokenFor("alice"), "staging-db"));
    t.equal((await other.query("SELECT count(*)::int AS n FROM orders")).rows[0].n > 0, true);

    // Reading again: the result flows again.
    const before = raw.total();
    raw.socket.resume();
    await until("more of the result", () => raw.total() - before > 50 * 1024 * 1024, 60_000);
    t.pass("the result flows again once the client reads");

    // Going away: the upstream query ends too, and the gateway goes on.
    raw.socket.destroy();
    const direct = await g.direct();
    t.teardown(() => direct.end());
    await until("the upstream query to end", async () => {
      const r = await direct.query("SELECT 1 FROM pg_stat_activity WHERE query = $1", [sql]);
      return r.rows.length === 0;
    });
    t.equal((await other.query("SELECT 1 AS x")).rows[0].x, 1, "the gateway goes on");
    await other.end();
  },
);

t.test("the same holds for a masked result", async (t) => {
  // alice on the production database: ssn is masked, row by row, into the gateway's own buffers.
  const sql = "SELECT u.ssn, repeat('x', 1000) AS pad FROM users u, generate_series(1, 400000)";
  const { raw, firstRow } = await stalledResult(t, await g.tokenFor("alice"), "orders-db", sql);
  t.match(firstRow.toString("latin1"), /\*{7}\d{4}/, "the rows are masked");
  raw.socket.destroy();
  const other = await client(g.url(await g.tokenFor("bob"), "staging-db"));
  t.equal((await other.query("SELECT 1 AS x")).rows[0].x, 1);
  await other.end();
});

t.test("a message over max_message_bytes is refused from its header, never buffered", async (t) => {
  const port = g.gw.listeners.postgres?.port as number;
  const raw = await rawSession(port, await g.tokenFor("bob"), "staging-db");
  const start = raw.received().length;
  const before = rss();
  // A Query announcing 512 MiB, of which only 1 KiB is sent: the answer cannot wait for the rest.
  const head = Buffer.alloc(5);
  head[0] = 0x51;
  head.writeInt32BE(512 * 1024 * 1024, 1);
  raw.socket.write(Buffer.concat([head, Buffer.from("SELECT '"), Buffer.alloc(1024, 0x78)]));
  const e = await raw.error(start);
  t.equal(e.C, "54000");
  t.match(e.M, /message of 536870912 bytes exceeds the gateway's limit of 1048576 bytes/);
  await raw.closed;
  t.ok(rss() - before < 64 * 1024 * 1024, "nothing near the announced size was allocated");

  // A real Query over the limit (2 MiB of text), sent whole by node-postgres: refused the same way.
  const c = await client(g.url(await g.tokenFor("bob"), "staging-db"));
  const big = await refusedWith(c.query(`SELECT '${"x".repeat(2 * 1024 * 1024)}' AS big`));
  if (big.code) t.equal(big.code, "54000", big.message);
  else t.match(big.message, /Connection terminated|ECONNRESET|EPIPE/, "or the connection was cut first");
  await c.end().catch(() => {});

  const other = await client(g.url(await g.tokenFor("bob"), "staging-db"));
  t.equal((await other.query("SELECT 1 AS x")).rows[0].x, 1, "other sessions are not affected");
  await other.end();
});

t.test("deep nesting is refused before the parser, quickly, with pg.statement_too_deep", async (t) => {
  const c = await client(g.url(await g.tokenFor("bob"), "staging-db"));
  t.teardown(() => c.end());
  // The event loop must not stall while such statements are refused.
  let last = Date.now();
  let worstGap = 0;
  const ticker = setInterval(() => {
    const now = Date.now();
    worstGap = Math.max(worstGap, now - last);
    last = now;
  }, 5);
  t.teardown(() => clearInterval(ticker));

  const cases = {
    "10,000 nested parentheses": `SELECT ${"(".repeat(10_000)}1${")".repeat(10_000)}`,
    "10,000 nested sub-selects": `SELECT ${"(SELECT ".repeat(10_000)}1${")".repeat(10_000)}`,
    "100,000 chained operators": `SELECT 1${"+1".repeat(100_000)}`,
  };
  for (const [name, sql] of Object.entries(cases)) {
    const started = Date.now();
    const err = await refusedWith(c.query(sql));
    t.equal(err.code, "54001", name);
    t.match(err.message, /nested too deeply to analyze safely/, name);
    t.match(err.detail, /pg\.statement_too_deep/, name);
    t.ok(Date.now() - started < 5_000, `${name}: refused in ${Date.now() - started} ms`);
  }
  // The extended protocol (Parse) too.
  const ext = await refusedWith(
    c.query({ text: `SELECT $1::int + ${"(".repeat(5_000)}1${")".repeat(5_000)}`, values: [1] }),
  );
  t.equal(ext.code, "54001");
  t.match(ext.detail, /pg\.statement_too_deep/);

  t.equal((await c.query("SELECT ((((1)))) AS x")).rows[0].x, 1, "the session goes on");
  clearInterval(ticker);
  t.ok(worstGap < 1_000, `the event loop was never blocked for long (worst gap ${worstGap} ms)`);
});

t.test("max_statement_depth is configurable (within its safe bound)", async (t) => {
  const nested = `SELECT ${"(".repeat(30)}1${")".repeat(30)} AS x`;
  const bob = await g.tokenFor("bob");
  const usual = await client(g.url(bob, "staging-db"));
  t.equal((await usual.query(nested)).rows[0].x, 1, "30 levels pass the default limit");
  await usual.end();

  // The analyzer's limit is per process (one PostgreSQL listener per gateway): restored afterwards.
  t.teardown(() => initAnalyzer());
  const l = await extraListener(t, { max_statement_depth: 50 });
  const strict = await client(l.url(bob));
  t.teardown(() => strict.end());
  const err = await refusedWith(strict.query(nested));
  t.equal(err.code, "54001");
  t.match(err.detail, /pg\.statement_too_deep/);
  t.equal((await strict.query("SELECT (((1))) AS x")).rows[0].x, 1);
});
