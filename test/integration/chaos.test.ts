// Chaos, and what the client sees: a whole gateway (real PostgreSQL as the target and another as the approval
// store, an external OIDC issuer, the example bundle, the audit spool on a small tmpfs) while its parts fail one
// at a time and come back. Every failure decides something the user can act on, and nothing else breaks:
//   - the target database down mid-session, and back;
//   - the identity provider down: tokens still verify with the cached keys; a token needing a key it has not
//     seen is refused as issuer_unreachable;
//   - the audit disk full: commands blocked with audit.unavailable, /readyz 503, and back when there is room;
//   - the approval store down: statements needing an approval blocked with approval.unavailable, others go on;
//   - the bundle file corrupted under load: the last good policy keeps deciding, no statement fails.
// kill -9 under load (statements seen upstream vs decision records) and a restart on the same spool are in
// replicas.test.ts and audit-crash.test.ts.
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import t from "tap";
import { startTestGateway, type TestGateway } from "../helpers/gateway.js";
import { startTestIdp, type TestIdp } from "../helpers/idp.js";
import { type PostgresServer, startPostgres } from "../helpers/postgres.js";

const isRoot = process.getuid?.() === 0;
if (!isRoot) {
  t.plan(0, "chaos tests mount a tmpfs for the audit spool and need root (CI runs as root)");
  process.exit(0);
}

const tmp = mkdtempSync(join(tmpdir(), "pamgate-chaos-"));
const spoolMount = join(tmp, "spool-fs");
mkdirSync(spoolMount);
// Small enough to fill quickly, large enough for the spool's first segment and a few thousand records.
execFileSync("mount", ["-t", "tmpfs", "-o", "size=8m", "tmpfs", spoolMount]);
t.teardown(() => {
  execFileSync("umount", ["-l", spoolMount]);
  rmSync(tmp, { recursive: true, force: true });
});

const idp: TestIdp = await startTestIdp(t, {
  users: { alice: { email: "alice@example.com", groups: ["engineering"] } },
});
const store: PostgresServer = await startPostgres();
t.teardown(() => store.stop());
const ic = idp.issuerConfig();
const g: TestGateway = await startTestGateway((_db, base) => ({
  listeners: { ...base.listeners, api: { host: "127.0.0.1", port: 0 } },
  identity: { issuers: [{ issuer: ic.issuer, audience: ic.audience, allow_insecure_http: true }] },
  store: { type: "postgres", url: store.url },
  audit: { dir: join(spoolMount, "audit") },
}));
t.teardown(() => g.stop());
const api = `http://127.0.0.1:${g.gw.api?.port}`;

async function session(token?: string): Promise<pg.Client> {
  const c = new pg.Client({
    connectionString: g.url(token ?? (await idp.tokenFor("alice"))),
    connectionTimeoutMillis: 10_000,
  });
  // What the server said when it ended the session (node-postgres reports it here, not on the query).
  c.on("error", (err) => errors.set(c, [...(errors.get(c) ?? []), err.message]));
  await c.connect();
  return c;
}
const errors = new WeakMap<pg.Client, string[]>();

/** What the client got: the rows' count, or the error's SQLSTATE and message. */
async function attempt(
  c: pg.Client,
  sql: string,
): Promise<{ ok: true } | { code?: string; message: string }> {
  try {
    await c.query(sql);
    return { ok: true };
  } catch (err) {
    return { code: (err as pg.DatabaseError).code, message: (err as Error).message };
  }
}

async function eventually<T>(what: string, f: () => Promise<T | undefined>, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await f().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const readyz = async () => {
  const res = await fetch(`${api}/readyz`);
  return { status: res.status, body: await res.text() };
};

const Q = "SELECT id, total FROM orders WHERE id = 42";

t.test("the target database goes down mid-session and comes back", async (t) => {
  const c = await session();
  t.same(await attempt(c, Q), { ok: true });
  await g.db.down();
  const mid = await attempt(c, Q);
  t.notOk("ok" in mid, "the open session's next statement fails");
  const said = errors.get(c) ?? [];
  t.comment(`open session: the server said ${JSON.stringify(said)}; its next query: ${JSON.stringify(mid)}`);
  t.ok(
    said.some((m) => /pamgate lost its connection to resource "orders-db"/.test(m)),
    "the client is told the gateway lost the database (FATAL 08006), not just cut off",
  );
  const refused = await session().then(
    async (s) => ({ connected: true, ...(await attempt(s, Q)) }),
    (err: Error) => ({ connected: false, message: err.message }),
  );
  t.comment(`a new session while it is down sees: ${JSON.stringify(refused)}`);
  t.match(refused, { message: /cannot reach/ }, "a new session is told the resource cannot be reached");
  await g.db.up();
  const back = await eventually("a session after the database is back", async () => {
    const s = await session();
    const r = await attempt(s, Q);
    await s.end();
    return "ok" in r ? r : undefined;
  });
  t.same(back, { ok: true }, "new sessions work again once it is back");
});

t.test(
  "the audit disk fills up: commands are blocked with a reason, and go on once there is room",
  async (t) => {
    const c = await session();
    t.same(await attempt(c, Q), { ok: true });
    // Fill the tmpfs: whatever room is left goes to a filler file.
    const filler = join(spoolMount, "filler");
    try {
      execFileSync("dd", ["if=/dev/zero", `of=${filler}`, "bs=64k", "count=1000"], { stdio: "ignore" });
    } catch {
      // dd stops with "No space left on device": that is the point
    }
    const blocked = await eventually("a blocked statement", async () => {
      const r = await attempt(c, `${Q} /* ${"x".repeat(2000)} */`);
      return "ok" in r ? undefined : r;
    });
    t.comment(`the client sees: ${JSON.stringify(blocked)}`);
    t.match(blocked.message, /audit/i, "blocked because the decision cannot be recorded");
    const ready = await eventually("readiness to drop", async () => {
      const r = await readyz();
      return r.status === 503 ? r : undefined;
    });
    t.match(ready.body, /audit\.spool/, "/readyz is 503 and names the spool");
    rmSync(filler);
    const back = await eventually("statements after room is made", async () => {
      const r = await attempt(c, Q);
      return "ok" in r ? r : undefined;
    });
    t.same(back, { ok: true }, "the same session goes on once there is room again");
    await c.end();
  },
);

t.test(
  "the approval store goes down: approvals are refused with a reason, other statements go on",
  async (t) => {
    const c = await session();
    await store.down();
    t.same(await attempt(c, Q), { ok: true }, "a statement that needs no approval still runs");
    const held = await attempt(c, "ALTER TABLE orders ADD COLUMN IF NOT EXISTS chaos_note text");
    t.comment(`a statement needing approval sees: ${JSON.stringify(held)}`);
    t.notOk("ok" in held, "a statement that needs an approval does not run");
    t.match(
      (held as { message: string }).message,
      /approval/i,
      "and the user is told approvals are unavailable",
    );
    const ready = await eventually("readiness to drop", async () => {
      const r = await readyz();
      return r.status === 503 ? r : undefined;
    });
    t.match(ready.body, /store/, "/readyz names the store");
    await store.up();
    await eventually("readiness back", async () => ((await readyz()).status === 200 ? true : undefined));
    t.pass("ready again once the store is back");
    await c.end();
  },
);

t.test("the bundle file is corrupted under load: the last good policy keeps deciding", async (t) => {
  const bundle = join(g.dir, "bundle.tar.gz"); // where startTestGateway builds it
  const good = join(tmp, "good-bundle.tar.gz");
  copyFileSync(bundle, good);
  const clients = await Promise.all([session(), session(), session()]);
  let stop = false;
  let ok = 0;
  const failures: string[] = [];
  const loops = clients.map(async (c) => {
    while (!stop) {
      const r = await attempt(c, Q);
      if ("ok" in r) ok++;
      else failures.push(r.message);
    }
  });
  await new Promise((r) => setTimeout(r, 300));
  writeFileSync(bundle, "this is not a bundle");
  const status = await eventually("the rejection to show", async () => {
    const res = await fetch(`${api}/v1/status`, {
      headers: { authorization: `Bearer ${await idp.tokenFor("alice")}` },
    });
    const text = await res.text();
    return /error|reject|invalid|gzip|not a/i.test(text) ? text : undefined;
  });
  await new Promise((r) => setTimeout(r, 500));
  stop = true;
  await Promise.all(loops);
  t.same(failures, [], "no statement failed");
  t.ok(ok > 0, `${ok} statements decided meanwhile`);
  t.match(status, /bundle/, "the status names the bundle source's problem");
  copyFileSync(good, bundle);
  await Promise.all(clients.map((c) => c.end()));
});

t.test(
  "the identity provider goes down: cached keys still verify; an unseen key is refused clearly",
  async (t) => {
    const token = await idp.tokenFor("alice");
    const forged = await idp.bad.unknownKey(); // signed by a key the gateway has not fetched
    await idp.stop();
    const c = await session(token);
    t.same(await attempt(c, Q), { ok: true }, "a token of the known key is verified from the cached key set");
    await c.end();
    const refused = await session(forged).then(
      () => ({ message: "connected" }),
      (err: Error) => ({ message: err.message }),
    );
    t.comment(`a token needing an unseen key sees: ${refused.message}`);
    // The key set was fetched moments ago, so the verifier does not hammer the issuer (a cooldown); after it,
    // it asks, and with the issuer down answers issuer_unreachable. Either way: refused, saying why.
    t.match(
      refused.message,
      /is not in the JWKS of .*next refetch|issuer_unreachable|unreachable/,
      "refused, naming the unknown key and when the issuer will be asked again",
    );
  },
);
