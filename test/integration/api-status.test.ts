// Readiness of a whole gateway reads every component's status: a full audit spool blocks every statement, so
// the gateway must say it is not ready (503 naming audit.spool), not "ready" as it did while only the bundle
// and the store were checked. Real parts: PostgreSQL, the development issuer, the embedded store, the spool.
import { join } from "node:path";
import t from "tap";
import { isAuditUnavailable } from "../../src/audit/index.js";
import { startTestGateway } from "../helpers/gateway.js";

t.test("a gateway whose audit spool is full answers /readyz 503 naming audit.spool", async (t) => {
  const tg = await startTestGateway({
    listeners: { postgres: { host: "127.0.0.1", port: 0 }, api: { host: "127.0.0.1", port: 0 } },
    // The smallest spool there is (64 KiB), so a few records fill it.
    audit: { dir: join(t.testdir(), "audit"), max_bytes: 64 * 1024 },
  });
  t.teardown(() => tg.stop());
  const { gw } = tg;
  const audit = gw.audit;
  if (!audit) throw new Error("the test gateway has an audit trail");
  const readyz = async () => {
    const res = await fetch(`http://127.0.0.1:${gw.api?.port}/readyz`);
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };

  const before = await readyz();
  t.equal(before.status, 200, "ready while the spool has room");
  t.match(before.body, {
    components: {
      engine: { state: "ok" },
      "bundle:file": { state: "ok" },
      "audit.spool": { state: "ok" },
      "identity.verifier": { state: "ok" },
      store: { state: "ok" },
      "listener:postgres": { state: "ok", message: /listening on 127\.0\.0\.1:\d+/ },
      "postgres.analyzer": { state: "ok" },
    },
  });

  // Filled to the last byte: large records first, then ever smaller ones until even a tiny one is refused
  // (a spool that refused a large record may still take a small decision record).
  let refused: unknown = null;
  for (const size of [8000, 1000, 100, 1]) {
    refused = null;
    for (let i = 0; i < 1000 && refused === null; i++) {
      await audit.record("test.fill", { pad: "x".repeat(size) }).catch((err: unknown) => {
        refused = err;
      });
    }
  }
  t.ok(isAuditUnavailable(refused), "the spool refuses even the smallest record");

  const full = await readyz();
  t.equal(full.status, 503);
  t.match(full.body, {
    status: "not_ready",
    state: "error",
    ready: false,
    reasons: [/^audit spool full: \d+ bytes of 65536; every command is blocked/],
    components: { "audit.spool": { state: "error", message: /audit spool full/ }, engine: { state: "ok" } },
  });

  // And indeed a statement is blocked, with the same reason.
  const run = await tg.psql(await tg.tokenFor("alice"), "SELECT 1");
  t.not(run.code, 0);
  t.match(run.stderr, /audit spool full/);
});
