// The status model: the registry's snapshot, and how the audit trail's, the verifier's and the analyzer's own
// state map onto it.
import t from "tap";
import { sinkComponentStatus, spoolComponentStatus } from "../../src/audit/status.js";
import { DecisionEngine } from "../../src/decision/engine.js";
import { AnalyzerStatus } from "../../src/proxy/postgres/analyzer-status.js";
import { type ComponentStatus, StatusRegistry, worstState } from "../../src/status/status.js";

t.test("a snapshot: the worst state, and ready unless something is not_ready or error", async (t) => {
  const status = new StatusRegistry();
  t.same(status.snapshot(), { state: "ok", ready: true, components: {} });

  let spool: ComponentStatus = { state: "ok" };
  status.register("engine", () => ({ state: "ok", message: "revision r1" }));
  status.register("audit.spool", () => spool);
  const offSink = status.register("audit.sink:pg", () => ({ state: "warn", message: "failing" }));
  t.same(status.snapshot(), {
    state: "warn",
    ready: true,
    components: {
      engine: { state: "ok", message: "revision r1" },
      "audit.spool": { state: "ok" },
      "audit.sink:pg": { state: "warn", message: "failing" },
    },
  });

  spool = { state: "error", message: "audit spool full" };
  t.match(status.snapshot(), { state: "error", ready: false });
  spool = { state: "not_ready" };
  t.match(status.snapshot(), { state: "not_ready", ready: false });

  offSink();
  offSink(); // twice is harmless
  t.same(status.names(), ["engine", "audit.spool"]);
  t.same(status.get("audit.spool"), { state: "not_ready" });
  t.equal(status.get("nope"), undefined);
});

t.test("a name is registered once; a broken reporter is an error of its own component", async (t) => {
  const status = new StatusRegistry();
  const off = status.register("listener:postgres", () => ({ state: "ok" }));
  t.throws(() => status.register("listener:postgres", () => ({ state: "ok" })), /already registered/);
  t.throws(() => status.register("has space", () => ({ state: "ok" })), /invalid component name/);
  off();
  status.register("listener:postgres", () => {
    throw new Error("boom");
  });
  status.register("bad", () => ({ state: "fine" }) as unknown as ComponentStatus);
  const snap = status.snapshot();
  t.equal(snap.ready, false, "fails closed");
  t.same(snap.components["listener:postgres"], {
    state: "error",
    message: "listener:postgres: its status could not be read: boom",
  });
  t.match(snap.components.bad, { state: "error", message: /reported an invalid status/ });
});

t.test("severity: ok < warn < not_ready < error", async (t) => {
  t.equal(worstState([]), "ok");
  t.equal(worstState(["ok", "warn"]), "warn");
  t.equal(worstState(["warn", "not_ready", "ok"]), "not_ready");
  t.equal(worstState(["not_ready", "error", "warn"]), "error");
});

t.test("the engine: not_ready without a bundle, naming a rejected candidate", async (t) => {
  const engine = new DecisionEngine();
  t.match(engine.componentStatus(), { state: "not_ready", message: "no policy bundle is loaded yet" });
  engine.recordRejection("bundle signature does not verify");
  t.match(engine.componentStatus(), {
    state: "not_ready",
    message: "no policy bundle is loaded (the last one was rejected: bundle signature does not verify)",
  });
});

const spool = {
  dir: "/var/lib/pamgate/audit",
  spool_id: "s1",
  available: true,
  reason: null,
  used_bytes: 1000,
  max_bytes: 100_000,
  segments: 1,
  last_seq: 10,
  last_hash: "abc",
};

t.test("the spool: error when it refuses records, warn when nearly full", async (t) => {
  t.match(spoolComponentStatus(spool), { state: "ok", details: { used_bytes: 1000, max_bytes: 100_000 } });
  t.match(spoolComponentStatus({ ...spool, used_bytes: 85_000 }), {
    state: "warn",
    message: /audit spool 85 % full \(85000 of 100000 bytes\)/,
  });
  t.match(
    spoolComponentStatus({
      ...spool,
      available: false,
      reason: "audit spool full: 100000 bytes of 100000",
    }),
    {
      state: "error",
      message: "audit spool full: 100000 bytes of 100000; every command is blocked until it can record again",
    },
  );
  t.match(spoolComponentStatus({ ...spool, available: false, spool_id: null }), {
    state: "error",
    message: /audit spool \/var\/lib\/pamgate\/audit is unavailable/,
  });
});

t.test("a sink: warn while failing or far behind, never blocking readiness", async (t) => {
  const shipper = {
    name: "pg",
    sink: "postgres db:5432/audit pamgate_audit",
    shipped_seq: 10,
    lag: 0,
    failures: 0,
    last_error: null,
    last_success: "2026-01-01T00:00:00.000Z",
  };
  t.match(sinkComponentStatus("pg", shipper), { state: "ok", details: { shipped_seq: 10 } });
  t.match(sinkComponentStatus("pg", { ...shipper, failures: 3, lag: 7, last_error: "ECONNREFUSED" }), {
    state: "warn",
    message:
      "audit sink pg (postgres db:5432/audit pamgate_audit) is failing (3 attempts, 7 records behind): ECONNREFUSED",
  });
  t.match(sinkComponentStatus("pg", { ...shipper, lag: 20_000 }), {
    state: "warn",
    message: /20000 records behind/,
  });
  t.match(sinkComponentStatus("pg", undefined), { state: "warn", message: /has not started/ });
});

t.test("the analyzer: not_ready while loading, error when it cannot load or broke", async (t) => {
  let broken: string | null = null;
  const ok = new AnalyzerStatus(() => broken);
  t.match(ok.status(), { state: "not_ready" });
  await ok.track(Promise.resolve());
  t.same(ok.status(), { state: "ok" });
  broken = "the SQL parser failed internally (x); pamgate must be restarted";
  t.same(ok.status(), { state: "error", message: broken });

  const failed = new AnalyzerStatus(() => null);
  await t.rejects(failed.track(Promise.reject(new Error("no wasm"))), /no wasm/);
  t.match(failed.status(), { state: "error", message: /cannot be loaded: no wasm/ });
});

t.test("the verifier: ok once keys are fetched, warn while an issuer cannot be reached", async (t) => {
  const { startTestIdp } = await import("../helpers/idp.js");
  const { freePort } = await import("../helpers/postgres.js");
  const { TokenVerifier } = await import("../../src/identity/verifier.js");
  const idp = await startTestIdp(t);
  const down = `http://127.0.0.1:${await freePort()}`; // nothing listens there
  const verifier = new TokenVerifier([
    idp.issuerConfig(),
    { issuer: down, audience: "pamgate", allowInsecureHttp: true },
  ]);
  t.match(verifier.componentStatus(), { state: "ok" }, "keys are fetched on first use: nothing failed yet");
  const failed = await verifier.warmUp();
  t.same(
    failed.map((f) => f.issuer),
    [down],
  );
  const s = verifier.componentStatus();
  t.equal(s.state, "warn");
  t.match(s.message, `token issuer keys could not be fetched: ${down}: `);
  t.match(s.message, "(no cached keys)");
  t.notMatch(s.message, idp.issuer, "only the failing issuer is named");
  t.match(s.details, { issuers: [{ issuer: idp.issuer, last_error: null }, { issuer: down }] });
});
