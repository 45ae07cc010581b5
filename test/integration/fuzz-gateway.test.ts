// The running gateway under a flood of malformed PostgreSQL frames (issue #15): a whole gateway (real
// PostgreSQL, the dev issuer, the example policy) serves a bystander session that queries in a loop, while many
// concurrent raw sockets send fast-check-generated garbage — bad lengths, truncated messages, garbage type bytes,
// oversized lengths, valid start-up followed by garbage, bad SSLRequest/CancelRequest, half-open connections,
// resets mid-frame — before authentication, and, in authenticated sessions, messages that are garbage in content
// (SQL the parser rejects, unknown statements and portals, COPY outside COPY, fast-path calls) interleaved with
// pauses and ended by a framing error. Asserted: every connection ends (an error or a close) within its deadline;
// no fuzzed session ever receives a raw value of a masked column, and each can still run a masked query correctly
// at its end; the bystander never fails and keeps making progress; the process's RSS stays bounded; the gateway
// still accepts new sessions. The counts go out as a tap comment.
//
// Knobs: FUZZ_FRAMES (default 100000), FUZZ_CONCURRENCY (default 48 raw sockets at once).
import { connect } from "node:net";
import v8 from "node:v8";
import vm from "node:vm";
import fc from "fast-check";
import pg from "pg";
import t from "tap";
import { startTestGateway, type TestGateway } from "../helpers/gateway.js";
import {
  arbMalformedConnection,
  arbSessionKiller,
  arbSessionStep,
  fe,
  type MalformedConnection,
  type SessionStep,
} from "../helpers/pg-frames.js";
import { type BackendFrame, dataRowValues, errorField, RawPgClient } from "../helpers/pg-raw-client.js";

const TARGET_FRAMES = Number(process.env.FUZZ_FRAMES ?? 100_000);
const CONCURRENCY = Number(process.env.FUZZ_CONCURRENCY ?? 48);
/**
 * The flood stops starting batches after this long (FUZZ_BUDGET_S, default 200 s), so that a machine too loaded
 * to send FUZZ_FRAMES in time fails the frame count with a message rather than the runner's timeout.
 */
const BUDGET_MS = Number(process.env.FUZZ_BUDGET_S ?? 200) * 1000;
/**
 * Every connection must be closed within this: the gateway's own bound for a connection that has not
 * authenticated is its start-up timeout (30 s by default); the margin is for a loaded machine. Most close in
 * milliseconds (the slowest of each kind is in the report).
 */
const DEADLINE_MS = 45_000;
/** How long a connection that waits for an answer waits before it half-closes. */
const NUDGE_MS = 300;
/** Raw values of masked columns in the seed data (src/demo/seed.sql): no fuzzed session may ever see one. */
const RAW_SECRETS = ["123-45-6789", "987-65-4321", "555-12-3456", "ada@example.com", "grace@example.com"];
/** Loopback source addresses the flood rotates through, so its connections do not exhaust one address's ports. */
const SOURCES = Array.from({ length: 8 }, (_, i) => `127.0.0.${i + 1}`);

// A forced GC makes the RSS samples comparable; without --expose-gc, enable it at run time.
const gc: () => void =
  (globalThis as { gc?: () => void }).gc ??
  (() => {
    v8.setFlagsFromString("--expose-gc");
    return vm.runInNewContext("gc") as () => void;
  })();

let g: TestGateway;
let port: number;
t.before(async () => {
  g = await startTestGateway();
  port = g.gw.listeners.postgres?.port as number;
});
t.teardown(() => g?.stop());

// --- regressions: the session's expectations must follow the server's error-skip -----------------------------------

/** The frames of the next result up to ReadyForQuery, as text rows (the DataRows) and errors. */
function rows(frames: BackendFrame[] | null): { rows: Array<Array<string | null>>; errors: string[] } {
  return {
    rows: (frames ?? []).filter((f) => f.type === "D").map(dataRowValues),
    errors: (frames ?? [])
      .filter((f) => f.type === "E")
      .map((f) => `${errorField(f, "C")} ${errorField(f, "M")}`),
  };
}

const MASKED_SQL = "SELECT name, ssn FROM users WHERE id IN (1, 2) ORDER BY id";
const MASKED_ROWS = [
  ["Ada Lovelace", "*******6789"],
  ["Grace Hopper", "*******4321"],
];

t.test(
  "regression: a Query the server discards after an extended-protocol error does not unmask the next",
  async (t) => {
    const c = await RawPgClient.login(port, await g.tokenFor("alice"));
    t.teardown(() => c.close());
    // A Parse that fails on the server, answered before anything else is sent: the server now discards every
    // message until Sync — including the Query sent next, which gets no answer at all.
    c.write(fe.parse("", "SELECT * FROM no_such_table"));
    c.write(fe.flush());
    t.ok(await c.until((f) => f.type === "E", 10_000), "the Parse failed");
    c.write(fe.query("SELECT 1"));
    await c.quiet(100, 1000);
    c.write(fe.sync());
    t.ok(await c.until((f) => f.type === "Z", 10_000), "Sync answered");
    const r = rows(await c.query(MASKED_SQL));
    t.same(r, { rows: MASKED_ROWS, errors: [] }, "the masked query is masked");
    t.notOk(
      RAW_SECRETS.some((s) => c.received().includes(s)),
      "no raw value reached the client",
    );
  },
);

t.test(
  "regression: an error of Sync itself (a deferred constraint) does not unmask a pipelined query",
  async (t) => {
    const direct = await g.direct();
    await direct.query(
      "CREATE TABLE IF NOT EXISTS public.fuzz_deferred (id int REFERENCES public.orders(id) DEFERRABLE INITIALLY DEFERRED)",
    );
    await direct.end();
    const c = await RawPgClient.login(port, await g.tokenFor("alice"));
    t.teardown(() => c.close());
    // The INSERT succeeds; the implicit COMMIT at Sync fails (ErrorResponse, then ReadyForQuery, no skip). The
    // masked Query is already queued behind the Sync when that error arrives (the INSERT sleeps first).
    c.write(
      Buffer.concat([
        fe.parse("", "INSERT INTO fuzz_deferred SELECT 999999 FROM pg_sleep(0.5)"),
        fe.bind("", ""),
        fe.execute(""),
        fe.sync(),
        fe.query(MASKED_SQL),
      ]),
    );
    let zs = 0;
    t.ok(await c.until((f) => f.type === "Z" && ++zs === 2, 15_000), "both ReadyForQuery arrived");
    const commitError = c.frames.find((f) => f.type === "E");
    t.equal(commitError && errorField(commitError, "C"), "23503", "the COMMIT at Sync failed");
    t.same(
      c.frames.filter((f) => f.type === "D").map(dataRowValues),
      MASKED_ROWS,
      "the pipelined masked query is masked",
    );
    t.notOk(
      RAW_SECRETS.some((s) => c.received().includes(s)),
      "no raw value reached the client",
    );
  },
);

// --- the flood ----------------------------------------------------------------------------------------------------

interface ConnOutcome {
  kind: string;
  frames: number;
  /** The gateway closed (or we reset) before the deadline. */
  ended: boolean;
  /** A FATAL ErrorResponse arrived. */
  fatal: boolean;
  ms: number;
}

const FATAL = Buffer.from("SFATAL\0");

/** One malformed pre-authentication connection, run to its end. */
function runMalformed(c: MalformedConnection, localAddress: string): Promise<ConnOutcome> {
  return new Promise((resolve) => {
    const start = Date.now();
    const socket = connect({ host: "127.0.0.1", port, localAddress, allowHalfOpen: true });
    socket.setNoDelay(true);
    let received = Buffer.alloc(0);
    let fatal = false;
    let done = false;
    const finish = (ended: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(deadline);
      clearTimeout(nudge);
      socket.destroy();
      resolve({ kind: c.kind, frames: c.frames, ended, fatal, ms: Date.now() - start });
    };
    const deadline = setTimeout(() => finish(false), DEADLINE_MS);
    // A case that waits for the gateway's answer and gets none within NUDGE_MS (its frame is incomplete, as
    // the gateway reads it) half-closes: the gateway must then close too. (Waiting out the start-up timeout
    // is the slow clients' job, below.)
    let nudge: NodeJS.Timeout | undefined;
    socket.on("data", (d: Buffer) => {
      received = received.length < 4096 ? Buffer.concat([received, d]) : received;
      if (!fatal && received.includes(FATAL)) {
        fatal = true;
        socket.end(); // read the error: close, as a client does
      }
    });
    socket.on("error", () => finish(true));
    socket.on("close", () => finish(true));
    socket.on("end", () => socket.end());
    socket.once("connect", async () => {
      for (const chunk of c.chunks) {
        if (done || socket.destroyed) return;
        socket.write(chunk);
        await new Promise((r) => setImmediate(r));
      }
      if (done) return;
      if (c.ending === "reset") socket.resetAndDestroy();
      else if (c.ending === "end" || c.ending === "half") socket.end();
      else nudge = setTimeout(() => !done && socket.end(), NUDGE_MS);
    });
  });
}

/** Runs `jobs` with at most `limit` in flight. */
async function pool<T, R>(
  jobs: readonly T[],
  limit: number,
  run: (job: T, i: number) => Promise<R>,
): Promise<R[]> {
  const out: R[] = new Array(jobs.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, jobs.length) }, async () => {
      for (let i = next++; i < jobs.length; i = next++) out[i] = await run(jobs[i] as T, i);
    }),
  );
  return out;
}

interface SessionOutcome {
  frames: number;
  /** The session ran its steps, then a masked query at the end (masked, or refused with an error). */
  checked: boolean;
  leaked: boolean;
  /** The killer frame got a FATAL error or a close. */
  ended: boolean;
  problem?: string;
}

let markers = 0;

/** One authenticated session: garbage steps, a masked query that must stay masked, then a framing error. */
async function runSession(
  token: string,
  steps: SessionStep[],
  killer: { kind: string; bytes: Buffer; reset: boolean },
  localAddress: string,
): Promise<SessionOutcome> {
  const c = await RawPgClient.login(port, token, { localAddress });
  let frames = 0;
  try {
    for (const s of steps) {
      if (c.closed) break;
      if (s.kind === "pause") await c.quiet(10, 300);
      else {
        c.write(s.bytes);
        frames++;
        // Let the gateway's answers flow back now and then (a client that never reads stalls on backpressure).
        if (frames % 64 === 0) await new Promise((r) => setImmediate(r));
      }
    }
    let checked = false;
    let problem: string | undefined;
    if (!c.closed) {
      // End any COPY, extended-protocol sequence or transaction the steps left open; a marker query tells
      // when every answer to the steps has arrived; then the masked query must come back masked.
      const marker = `fuzz-end-${++markers}`;
      c.write(
        Buffer.concat([
          fe.copyFail("fuzz"),
          fe.sync(),
          fe.query("ROLLBACK"),
          fe.query(`SELECT '${marker}' AS m`),
        ]),
      );
      frames += 4;
      const seen = await c.until((f) => f.type === "D" && dataRowValues(f)[0] === marker, 30_000);
      if (seen && (await c.until((f) => f.type === "Z", 30_000, c.lastMatch + 1))) {
        const r = rows(await c.query(MASKED_SQL, 30_000));
        checked = JSON.stringify(r) === JSON.stringify({ rows: MASKED_ROWS, errors: [] });
        if (!checked) problem = `masked query gave ${JSON.stringify(r)}; last frames ${c.describe()}`;
      } else problem = `no answer to the marker query; last frames ${c.describe()}`;
    }
    const leaked = RAW_SECRETS.some((s) => c.received().includes(s));
    // The framing error ends the session: a FATAL ErrorResponse, or (after a reset) nothing at all.
    if (c.closed) return { frames, checked, leaked, ended: true, problem };
    c.write(killer.bytes);
    frames++;
    if (killer.reset) {
      c.socket.resetAndDestroy();
      return { frames, checked, leaked, ended: true, problem };
    }
    const ended =
      (await c.until((f) => f.type === "E" && errorField(f, "S") === "FATAL", DEADLINE_MS)) || c.closed;
    if (!ended) problem = `no FATAL for ${killer.kind}: ${c.describe()}`;
    return { frames, checked, leaked, ended, problem };
  } finally {
    c.close();
  }
}

t.test(`the gateway under ≥ ${TARGET_FRAMES} malformed frames`, async (t) => {
  const alice = await g.tokenFor("alice");

  // The bystander: a real client querying in a loop for the whole test.
  // Bounded waits everywhere: a hang must fail the test, not stall it.
  const bystander = new pg.Client({
    connectionString: g.url(alice),
    query_timeout: 30_000,
    connectionTimeoutMillis: 30_000,
  });
  bystander.on("error", () => {});
  await bystander.connect();
  let bystanderOk = 0;
  const bystanderFailures: string[] = [];
  let lastProgress = Date.now();
  let longestStall = 0;
  let running = true;
  const bystanderLoop = (async () => {
    while (running) {
      try {
        const r = await bystander.query("SELECT id, total FROM orders WHERE id = 42");
        if (r.rows[0]?.total !== "120.50") throw new Error(`unexpected ${JSON.stringify(r.rows)}`);
        bystanderOk++;
        const now = Date.now();
        longestStall = Math.max(longestStall, now - lastProgress);
        lastProgress = now;
      } catch (err) {
        bystanderFailures.push(String(err));
        if (bystanderFailures.length > 20) return;
      }
    }
  })();

  // RSS, sampled after a forced GC.
  const rss: Array<{ at: number; mb: number }> = [];
  const sample = () => {
    gc();
    rss.push({ at: Date.now(), mb: process.memoryUsage().rss / 2 ** 20 });
  };
  await new Promise((r) => setTimeout(r, 1000));
  sample();
  const before = rss[0]?.mb as number;
  const sampler = setInterval(sample, 1000);
  const started = Date.now();
  const progress = setInterval(
    () =>
      t.comment(
        `${((Date.now() - started) / 1000).toFixed(0)} s: ${framesSent} frames, ${connections} connections, ${sessions} sessions, ${bystanderOk} bystander queries`,
      ),
    20_000,
  );

  let framesSent = 0;
  let connections = 0;
  const kinds = new Map<string, { n: number; fatal: number; slowest: number }>();
  const notEnded: string[] = [];
  const sessionProblems: string[] = [];
  let sessions = 0;
  let sessionsChecked = 0;
  let leaks = 0;

  // Pre-authentication garbage, in batches; a batch fails the property if any of its connections hangs.
  const preauthFrames = Math.round(TARGET_FRAMES * 0.3);
  const sessionFrames = TARGET_FRAMES - preauthFrames;
  const BATCH = 500;
  const preauth = fc.assert(
    fc.asyncProperty(
      fc.array(arbMalformedConnection("orders-db"), { minLength: BATCH, maxLength: BATCH }),
      async (batch) => {
        if (Date.now() - started > BUDGET_MS) return true;
        const out = await pool(batch, CONCURRENCY, (c, i) =>
          runMalformed(c, SOURCES[i % SOURCES.length] as string),
        );
        for (const o of out) {
          connections++;
          framesSent += o.frames;
          const k = kinds.get(o.kind) ?? { n: 0, fatal: 0, slowest: 0 };
          k.n++;
          if (o.fatal) k.fatal++;
          k.slowest = Math.max(k.slowest, o.ms);
          kinds.set(o.kind, k);
          if (!o.ended) notEnded.push(o.kind);
        }
        return out.every((o) => o.ended);
      },
    ),
    // Each run is a batch against the real gateway: report the seed, do not shrink (it would replay batches).
    { numRuns: Math.max(1, Math.ceil(preauthFrames / (BATCH * 1.5))), endOnFailure: true },
  );

  // Authenticated sessions with garbage content, several at once.
  const SESSIONS_AT_ONCE = 6;
  const STEPS = 400;
  const authed = fc.assert(
    fc.asyncProperty(
      fc.array(fc.tuple(fc.array(arbSessionStep, { minLength: STEPS, maxLength: STEPS }), arbSessionKiller), {
        minLength: SESSIONS_AT_ONCE,
        maxLength: SESSIONS_AT_ONCE,
      }),
      async (batch) => {
        if (Date.now() - started > BUDGET_MS) return true;
        const out = await Promise.all(
          batch.map(([steps, killer], i) =>
            runSession(alice, steps, killer, SOURCES[i % SOURCES.length] as string).catch(
              (err: unknown): SessionOutcome => ({
                frames: 0,
                checked: false,
                leaked: false,
                ended: false,
                problem: String(err),
              }),
            ),
          ),
        );
        for (const o of out) {
          sessions++;
          framesSent += o.frames;
          if (o.checked) sessionsChecked++;
          if (o.leaked) leaks++;
          if (o.problem) sessionProblems.push(o.problem);
        }
        return out.every((o) => o.ended && !o.leaked && o.checked);
      },
    ),
    {
      numRuns: Math.max(1, Math.ceil(sessionFrames / (SESSIONS_AT_ONCE * STEPS * 0.85))),
      endOnFailure: true,
    },
  );

  // A few slow clients that send part of a start-up packet and then nothing: the gateway's start-up timeout
  // must close them (no hang), without disturbing anything else.
  const slow = Promise.all(
    Array.from({ length: 8 }, (_, i) => {
      const partial = fe.query("x").subarray(0, 3);
      return new Promise<{ closedMs: number; fatalMs: number }>((resolve) => {
        const s = connect({ host: "127.0.0.1", port, localAddress: SOURCES[i % SOURCES.length] });
        const start = Date.now();
        let fatalMs = -1;
        const timer = setTimeout(() => {
          s.destroy();
          resolve({ closedMs: -1, fatalMs });
        }, 60_000);
        s.on("error", () => {});
        s.on("data", (d: Buffer) => {
          if (fatalMs < 0 && d.includes(FATAL)) fatalMs = Date.now() - start;
        });
        s.on("close", () => {
          clearTimeout(timer);
          resolve({ closedMs: Date.now() - start, fatalMs });
        });
        s.once("connect", () => s.write(i % 2 ? partial : Buffer.from([0, 0])));
      });
    }),
  );

  const results = await Promise.allSettled([preauth, authed]);
  clearInterval(progress);
  const floodMs = Date.now() - started;
  const slowMs = await slow;
  clearInterval(sampler);

  // Recovery: the RSS after the flood, once things settled.
  await new Promise((r) => setTimeout(r, 2000));
  sample();
  running = false;
  await bystanderLoop;
  await bystander.end();

  for (const r of results) if (r.status === "rejected") t.fail(String(r.reason).slice(0, 4000));

  // A new session after the flood.
  const fresh = new pg.Client({
    connectionString: g.url(await g.tokenFor("alice")),
    query_timeout: 30_000,
    connectionTimeoutMillis: 30_000,
  });
  await fresh.connect();
  const ok = await fresh.query("SELECT count(*)::int AS n FROM orders WHERE id IN (40, 41, 42)");
  await fresh.end();
  t.equal(ok.rows[0].n, 3, "the gateway accepts and serves a new session after the flood");
  t.equal(g.gw.listeners.postgres?.port, port, "the listener is still up");

  const mbs = rss.map((s) => s.mb);
  const peak = Math.max(...mbs);
  const after = mbs[mbs.length - 1] as number;
  // The trend of the last third of the flood: least-squares slope, in MB over that stretch.
  const during = rss.slice(1, -1);
  const last = during.slice(Math.floor((during.length * 2) / 3));
  let trendMb = 0;
  if (last.length >= 3) {
    const n = last.length;
    const mx = last.reduce((a, s) => a + s.at, 0) / n;
    const my = last.reduce((a, s) => a + s.mb, 0) / n;
    const num = last.reduce((a, s) => a + (s.at - mx) * (s.mb - my), 0);
    const den = last.reduce((a, s) => a + (s.at - mx) ** 2, 0);
    trendMb =
      den > 0 ? (num / den) * ((last[n - 1] as { at: number }).at - (last[0] as { at: number }).at) : 0;
  }

  t.comment(
    [
      `frames sent: ${framesSent} (pre-authentication connections: ${connections}; authenticated sessions: ${sessions}, ${sessionsChecked} checked masked at the end)`,
      `flood: ${(floodMs / 1000).toFixed(1)} s; bystander queries: ${bystanderOk}, failures: ${bystanderFailures.length}, longest stall ${longestStall} ms`,
      `RSS MB: before ${before.toFixed(0)}, peak ${peak.toFixed(0)}, after ${after.toFixed(0)}; trend over the last third ${trendMb.toFixed(1)} MB`,
      `slow clients closed after ${slowMs.map((s) => (s.closedMs / 1000).toFixed(1)).join(", ")} s (FATAL after ${slowMs.map((s) => (s.fatalMs / 1000).toFixed(1)).join(", ")} s)`,
      `listener: ${JSON.stringify(g.gw.status.get("listener:postgres")?.details ?? {})}`,
      `by kind (n / FATAL / slowest ms): ${[...kinds].map(([k, v]) => `${k} ${v.n}/${v.fatal}/${v.slowest}`).join(", ")}`,
    ].join("\n"),
  );

  t.ok(
    framesSent >= TARGET_FRAMES,
    `at least ${TARGET_FRAMES} frames sent (${framesSent}${floodMs > BUDGET_MS ? `; the flood ran out of its ${BUDGET_MS / 1000} s budget — a loaded machine?` : ""})`,
  );
  t.same(notEnded, [], "every malformed connection ended (an error or a close) within its deadline");
  t.same(sessionProblems.slice(0, 5), [], "every fuzzed session stayed consistent and ended with a FATAL");
  t.equal(leaks, 0, "no fuzzed session ever received a raw value of a masked column");
  t.same(bystanderFailures, [], "the bystander saw no failure");
  t.ok(bystanderOk > 50, `the bystander made progress (${bystanderOk} queries)`);
  t.ok(longestStall < 10_000, `the bystander never stalled 10 s (longest ${longestStall} ms)`);
  t.ok(
    slowMs.every((s) => s.closedMs >= 0),
    "slow clients were closed by the gateway's start-up timeout",
  );
  t.ok(peak - before < 150, `RSS grew less than 150 MB (${(peak - before).toFixed(0)})`);
  t.ok(trendMb < 40, `no upward RSS trend in the last third of the flood (${trendMb.toFixed(1)} MB)`);
  const fatalShare = [...kinds.values()].reduce((a, k) => a + k.fatal, 0) / Math.max(1, connections);
  t.ok(
    fatalShare > 0.3,
    `most malformed connections got a clear FATAL error (${(fatalShare * 100).toFixed(0)}%)`,
  );
});
