// The HTTP sink in OPA's decision log upload protocol, received by a collector that accepts what OPA sends
// (POST, Content-Encoding: gzip, a JSON array of events): every decision arrives across a collector outage
// (stopped, then restarted on the same port) and across 5xx answers, with exponential backoff; and a spool that
// fills up during an outage blocks new records and takes them again once the collector drains it.
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { gunzipSync } from "node:zlib";
import t from "tap";
import { AuditTrail, AuditUnavailableError } from "../../src/audit/index.js";
import type { Decision } from "../../src/decision/contract.js";
import { serializeInput } from "../../src/decision/engine.js";
import { sampleInput } from "../helpers/bundles.js";

function decision(i: number): Decision {
  return {
    decision_id: `20000000-0000-4000-8000-${String(i).padStart(12, "0")}`,
    verdict: { action: "allow", reasons: [{ code: "pg.read", message: "ok" }], mask: [], approval: null },
    revision: "rev-http",
    eval_ns: 7000,
    input_json: serializeInput(sampleInput()),
    policy: { has: () => true, evaluate: () => ["/input/identity/email"] },
  };
}

interface Upload {
  at: number;
  events: Array<Record<string, unknown>>;
}

/** A decision log collector: what OPA's upload protocol needs, and nothing more. */
class Collector {
  uploads: Upload[] = [];
  requests: number[] = [];
  problems: string[] = [];
  /** Answer the next N requests with this status instead of 200. */
  failNext = 0;
  failStatus = 503;
  private server: Server | null = null;
  port = 0;

  async start(port = 0): Promise<void> {
    const server = createServer((req, res) => {
      this.requests.push(Date.now());
      this.read(req).then(
        (body) => {
          if (req.method !== "POST" || req.url !== "/logs") this.problems.push(`${req.method} ${req.url}`);
          if (req.headers["content-encoding"] !== "gzip") this.problems.push("not gzip");
          if (req.headers["content-type"] !== "application/json") this.problems.push("not json");
          if (req.headers.authorization !== "Bearer collector-token") this.problems.push("no auth header");
          if (this.failNext > 0) {
            this.failNext--;
            res.writeHead(this.failStatus).end("try later");
            return;
          }
          this.uploads.push({ at: Date.now(), events: JSON.parse(gunzipSync(body).toString("utf8")) });
          res.writeHead(200).end();
        },
        () => res.writeHead(400).end(),
      );
    });
    this.server = server;
    await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
    this.port = (server.address() as AddressInfo).port;
  }

  private read(req: IncomingMessage): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => resolve(Buffer.concat(chunks)));
      req.on("error", reject);
    });
  }

  async stop(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (!s) return;
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }

  ids(): Set<string> {
    return new Set(this.uploads.flatMap((u) => u.events.map((e) => e.decision_id as string)));
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}/logs`;
  }
}

const headers = { Authorization: "Bearer collector-token" };

t.test("OPA's upload protocol: gzip'd JSON arrays of decision events, nothing else", async (t) => {
  const collector = new Collector();
  await collector.start();
  t.teardown(() => collector.stop());
  const dir = t.testdir();
  const audit = await AuditTrail.open({ dir, sinks: [{ type: "http", url: collector.url, headers }] });
  const rec = audit.openTerminalRecording("s1", { width: 80, height: 24 });
  rec.output("hello");
  for (let i = 0; i < 100; i++) await audit.recordDecision(decision(i));
  await rec.close();
  t.ok(await audit.waitForSinks(10_000));
  await audit.close();
  t.same(collector.problems, []);
  t.equal(collector.ids().size, 100);
  const events = collector.uploads.flatMap((u) => u.events);
  t.equal(events.length, 100, "recordings and seals are not decision events: not sent");
  const e = events[0] as Record<string, unknown>;
  t.match(e, {
    path: "pamgate/main/verdict",
    bundles: { pamgate: { revision: "rev-http" } },
    labels: { version: String },
    metrics: { timer_rego_query_eval_ns: 7000 },
    erased: ["/input/identity/email"],
    result: { action: "allow" },
  });
  t.ok(collector.uploads.length < 100, `${collector.uploads.length} uploads: batched`);
});

t.test("a collector outage and 5xx answers lose nothing; retries back off", async (t) => {
  const collector = new Collector();
  await collector.start();
  t.teardown(() => collector.stop());
  const dir = t.testdir();
  const audit = await AuditTrail.open({
    dir,
    sinks: [{ type: "http", url: collector.url, headers, timeoutMs: 2000 }],
    backoff: { initialMs: 40, maxMs: 600 },
  });
  let i = 0;
  let writing = true;
  const writer = (async () => {
    while (writing) {
      await audit.recordDecision(decision(i++));
      if (i % 10 === 0) await new Promise((r) => setTimeout(r, 2));
    }
  })();
  await new Promise((r) => setTimeout(r, 200));
  const port = collector.port;
  await collector.stop();
  const outageStart = Date.now();
  await new Promise((r) => setTimeout(r, 1000));
  const status = audit.status().sinks[0];
  t.ok(
    (status?.failures ?? 0) >= 3,
    `${status?.failures} failed attempts during the outage: ${status?.last_error}`,
  );
  t.ok((status?.failures ?? 0) <= 8, "backing off, not hammering");
  t.ok((status?.lag ?? 0) > 0, "records wait in the spool");

  collector.failNext = 3; // back, but overloaded for three requests
  await collector.start(port);
  const back = Date.now();
  await new Promise((r) => setTimeout(r, 100));
  writing = false;
  await writer;
  t.ok(await audit.waitForSinks(20_000), "caught up");
  await audit.close();
  const ids = collector.ids();
  t.equal(ids.size, i, `all ${i} decisions arrived`);
  for (let n = 0; n < i; n++) {
    if (!ids.has(decision(n).decision_id)) {
      t.fail(`decision ${n} missing`);
      break;
    }
  }
  const duringRestart = collector.requests.filter((r) => r >= back);
  t.ok(duringRestart.length >= 4, "the 503s were retried");
  const gaps = duringRestart.slice(1, 4).map((r, k) => r - (duringRestart[k] as number));
  t.ok(
    gaps.every((g) => g >= 10),
    `retries are spaced out (${gaps.join(", ")} ms) after ${back - outageStart} ms down`,
  );
});

t.test(
  "a spool filled during an outage blocks new records, then recovers when the collector drains it",
  async (t) => {
    const collector = new Collector();
    await collector.start();
    const port = collector.port;
    await collector.stop();
    t.teardown(() => collector.stop());
    const dir = t.testdir();
    const audit = await AuditTrail.open({
      dir,
      maxBytes: 128 * 1024,
      segmentBytes: 16 * 1024,
      sinks: [{ type: "http", url: `http://127.0.0.1:${port}/logs`, headers }],
      backoff: { initialMs: 20, maxMs: 100 },
    });
    let recorded = 0;
    let refusal: unknown;
    for (;;) {
      try {
        await audit.recordDecision(decision(recorded));
        recorded++;
      } catch (err) {
        refusal = err;
        break;
      }
    }
    t.ok(refusal instanceof AuditUnavailableError, "the spool refuses: the command would be blocked");
    t.match((refusal as Error).message, /^audit spool full: \d+ bytes of 131072$/);
    t.equal(audit.status().spool.available, false);

    await collector.start(port);
    let accepted = false;
    for (let k = 0; k < 100 && !accepted; k++) {
      await new Promise((r) => setTimeout(r, 50));
      accepted = await audit.recordDecision(decision(recorded)).then(
        () => true,
        () => false,
      );
    }
    t.ok(accepted, "records are accepted again once shipped segments are released");
    recorded++;
    t.ok(await audit.waitForSinks(10_000));
    await audit.close();
    t.equal(collector.ids().size, recorded, "every record that was accepted reached the collector");
  },
);
