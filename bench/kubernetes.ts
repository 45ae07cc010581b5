// npm run bench:kubernetes — the Kubernetes gateway against the real kube-apiserver directly, in one run:
//   (1) request round trips, keep-alive, sequential (BENCH_KUBE_REQUESTS, default 300 each, rotating paths): a
//       get of one ConfigMap and a list of 50, p50/p99 — direct (the gateway's own admin credentials), through a
//       bare Node HTTPS relay (bench/kube-relay.ts: forwards with the same credentials, no token check, policy,
//       impersonation or audit — the floor of a second hop in Node) and through pamgate;
//   (2) a list of BENCH_KUBE_SECRETS (default 5,000) Secrets: direct vs pamgate masking every value (alice is not
//       in platform-admins), wall time and MB/s (median of BENCH_KUBE_RUNS, default 3);
//   (3) watch throughput: a watch of a namespace through each path at once while BENCH_KUBE_WATCH (default 1,000)
//       Secrets are created, events per second each path delivered (pamgate masks them).
// The API server is test/helpers/kube-apiserver.ts (etcd + kube-apiserver, built by scripts/bootstrap); the
// gateway runs in this process. Prints one JSON line; progress on stderr; never asserts.
import { Agent, request } from "node:https";
import { availableParallelism } from "node:os";
import { createLogger } from "../src/util/log.js";
import { type KubeTestGateway, startKubeTestGateway } from "../test/helpers/kube-gateway.js";
import { startKubeRelay } from "./kube-relay.js";

const REQUESTS = Number(process.env.BENCH_KUBE_REQUESTS ?? 300);
const SECRETS = Number(process.env.BENCH_KUBE_SECRETS ?? 5000);
const RUNS = Number(process.env.BENCH_KUBE_RUNS ?? 3);
const WATCH = Number(process.env.BENCH_KUBE_WATCH ?? 1000);
const log = (msg: string) => process.stderr.write(`bench:kubernetes ${msg}\n`);

type PathName = "direct" | "relay" | "pamgate";
const PATHS: readonly PathName[] = ["direct", "relay", "pamgate"];

interface Target {
  host: string;
  port: number;
  prefix: string;
  agent: Agent;
  headers: () => Record<string, string>;
}

interface Response {
  status: number;
  bytes: number;
  body: Buffer | null;
  ms: number;
}

function call(t: Target, method: string, path: string, body?: unknown, keep = false): Promise<Response> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = request(
      {
        method,
        host: t.host,
        port: t.port,
        path: t.prefix + path,
        agent: t.agent,
        headers: {
          accept: "application/json",
          ...(data ? { "content-type": "application/json", "content-length": data.length } : {}),
          ...t.headers(),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        let bytes = 0;
        res.on("data", (c: Buffer) => {
          bytes += c.length;
          if (keep) chunks.push(c);
        });
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            bytes,
            body: keep ? Buffer.concat(chunks) : null,
            ms: performance.now() - start,
          }),
        );
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(data);
  });
}

const percentile = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] as number) : 0;
};
const median = (xs: number[]) => percentile(xs, 50);
const r2 = (x: number) => +x.toFixed(2);
const r3 = (x: number) => +x.toFixed(3);

async function main() {
  let g: KubeTestGateway | undefined;
  let relay: Awaited<ReturnType<typeof startKubeRelay>> | undefined;
  const notes = [
    "direct uses the gateway's own admin client certificate; relay is a bare Node HTTPS relay with the same credentials and no policy, impersonation or audit (bench/kube-relay.ts); pamgate decides, records (fsync) and impersonates every request",
    "the API server, etcd, the gateway and the relay share the machine's cores",
  ];
  try {
    log("starting kube-apiserver, etcd and the gateway");
    g = await startKubeTestGateway(undefined, { log: createLogger(process.env.PAMGATE_LOG_LEVEL ?? "warn") });
    const api = g.api;
    relay = await startKubeRelay(api);
    let token = await g.tokenFor("alice");
    const refresh = setInterval(() => {
      void g?.tokenFor("alice").then((t) => {
        token = t;
      });
    }, 240_000);
    refresh.unref();
    await api.kubectl([
      "create",
      "clusterrolebinding",
      "alice-admin",
      "--clusterrole=cluster-admin",
      "--user=alice",
    ]);
    const agentOpts = { keepAlive: true, ca: api.caPem, maxSockets: 16 };
    const targets: Record<PathName, Target> = {
      direct: {
        host: "127.0.0.1",
        port: api.port,
        prefix: "",
        agent: new Agent({ ...agentOpts, cert: api.admin.certPem, key: api.admin.keyPem }),
        headers: () => ({}),
      },
      relay: {
        host: "127.0.0.1",
        port: relay.port,
        prefix: "",
        agent: new Agent(agentOpts),
        headers: () => ({}),
      },
      pamgate: {
        host: "127.0.0.1",
        port: Number(new URL(g.kubeUrl).port),
        prefix: `/clusters/${g.cluster}`,
        agent: new Agent(agentOpts),
        headers: () => ({ authorization: `Bearer ${token}` }),
      },
    };
    const direct = targets.direct;
    for (const ns of ["bench", "secrets", "watch"])
      await call(direct, "POST", "/api/v1/namespaces", { metadata: { name: ns } });
    for (let i = 0; i < 50; i++)
      await call(direct, "POST", "/api/v1/namespaces/bench/configmaps", {
        metadata: { name: `cm-${i}` },
        data: { i: String(i), text: "x".repeat(200) },
      });
    for (const p of PATHS) {
      const r = await call(targets[p], "GET", "/api/v1/namespaces/bench/configmaps/cm-0");
      if (r.status !== 200) throw new Error(`${p} does not work: HTTP ${r.status}`);
    }

    // (1) round trips
    const requests: Record<string, unknown> = {};
    for (const [label, path] of [
      ["get", "/api/v1/namespaces/bench/configmaps/cm-0"],
      ["list_50", "/api/v1/namespaces/bench/configmaps"],
    ] as const) {
      const times: Record<PathName, number[]> = { direct: [], relay: [], pamgate: [] };
      for (let i = 0; i < REQUESTS + 20; i++)
        for (let k = 0; k < PATHS.length; k++) {
          const p = PATHS[(i + k) % PATHS.length] as PathName;
          const r = await call(targets[p], "GET", path);
          if (i >= 20 && r.status === 200) times[p].push(r.ms);
        }
      const stat = (xs: number[]) => ({
        p50: r3(percentile(xs, 50)),
        p99: r3(percentile(xs, 99)),
        n: xs.length,
      });
      const s = { direct: stat(times.direct), relay: stat(times.relay), pamgate: stat(times.pamgate) };
      requests[label] = {
        ...s,
        overhead_p50_ms: r3(s.pamgate.p50 - s.direct.p50),
        overhead_p99_ms: r3(s.pamgate.p99 - s.direct.p99),
        relay_overhead_p50_ms: r3(s.relay.p50 - s.direct.p50),
        pamgate_over_relay_p50_ms: r3(s.pamgate.p50 - s.relay.p50),
      };
      log(`${label} p50 ms: direct ${s.direct.p50}, relay ${s.relay.p50}, pamgate ${s.pamgate.p50}`);
    }

    // (2) a big list of Secrets, masked
    log(`creating ${SECRETS} Secrets`);
    let made = 0;
    const worker = async () => {
      while (made < SECRETS) {
        const i = made++;
        await call(direct, "POST", "/api/v1/namespaces/secrets/secrets", {
          metadata: { name: `s-${i}`, labels: { app: "bench" } },
          data: {
            password: Buffer.from(`hunter-${i}`).toString("base64"),
            cert: Buffer.from("c".repeat(1500)).toString("base64"),
          },
        });
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    const list: Record<string, { ms: number[]; bytes: number }> = {
      direct: { ms: [], bytes: 0 },
      pamgate: { ms: [], bytes: 0 },
    };
    let leaked = false;
    for (let i = 0; i < RUNS; i++)
      for (const p of i % 2 === 0 ? (["direct", "pamgate"] as const) : (["pamgate", "direct"] as const)) {
        const r = await call(
          targets[p],
          "GET",
          "/api/v1/namespaces/secrets/secrets",
          undefined,
          p === "pamgate",
        );
        list[p]?.ms.push(r.ms);
        (list[p] as { bytes: number }).bytes = r.bytes;
        if (p === "pamgate" && r.body?.includes(Buffer.from("hunter-1").toString("base64"))) leaked = true;
        log(`list ${SECRETS} secrets ${p}: ${Math.round(r.ms)} ms, ${r.bytes} bytes`);
      }
    const d = median(list.direct?.ms ?? []);
    const m = median(list.pamgate?.ms ?? []);
    const secretsList = {
      count: SECRETS,
      direct_ms: r2(d),
      pamgate_masked_ms: r2(m),
      ratio: d ? r3(d / m) : 0,
      direct_mb: r2((list.direct?.bytes ?? 0) / 1e6),
      pamgate_mb: r2((list.pamgate?.bytes ?? 0) / 1e6),
      direct_mbps: r2((list.direct?.bytes ?? 0) / 1e6 / (d / 1000)),
      pamgate_mbps: r2((list.pamgate?.bytes ?? 0) / 1e6 / (m / 1000)),
      unmasked_value_seen: leaked,
    };

    // (3) watch throughput, both paths at once
    const watchers = ["direct", "pamgate"].map((p) => {
      const t = targets[p as PathName];
      let events = 0;
      let last = 0;
      let buf = "";
      const req = request({
        method: "GET",
        host: t.host,
        port: t.port,
        path: `${t.prefix}/api/v1/namespaces/watch/secrets?watch=true`,
        agent: new Agent({
          ca: api.caPem,
          ...(p === "direct" ? { cert: api.admin.certPem, key: api.admin.keyPem } : {}),
        }),
        headers: { accept: "application/json", ...t.headers() },
      });
      req.on("response", (res) => {
        res.setEncoding("utf8");
        res.on("data", (c: string) => {
          buf += c;
          let nl = buf.indexOf("\n");
          while (nl >= 0) {
            events++;
            last = performance.now();
            buf = buf.slice(nl + 1);
            nl = buf.indexOf("\n");
          }
        });
      });
      req.on("error", () => {});
      req.end();
      return { p, req, count: () => events, last: () => last };
    });
    await new Promise((r) => setTimeout(r, 1000));
    const start = performance.now();
    made = 0;
    const watchWorker = async () => {
      while (made < WATCH) {
        const i = made++;
        await call(direct, "POST", "/api/v1/namespaces/watch/secrets", {
          metadata: { name: `w-${i}` },
          data: { v: Buffer.from(`watched-${i}`).toString("base64") },
        });
      }
    };
    await Promise.all(Array.from({ length: 8 }, watchWorker));
    const deadline = performance.now() + 30_000;
    while (watchers.some((w) => w.count() < WATCH) && performance.now() < deadline)
      await new Promise((r) => setTimeout(r, 50));
    const watch: Record<string, unknown> = { events: WATCH };
    for (const w of watchers) {
      w.req.destroy();
      watch[`${w.p}_events`] = w.count();
      watch[`${w.p}_events_per_s`] = r2(w.count() / ((w.last() - start) / 1000));
    }
    watch.note =
      "events per second delivered while 8 writers create Secrets as fast as the API server takes them";

    process.stdout.write(
      `${JSON.stringify({
        bench: "kubernetes",
        requests,
        secrets_list: secretsList,
        watch,
        cpu_cores: availableParallelism(),
        node: process.version,
        notes,
      })}\n`,
    );
  } finally {
    await relay?.close().catch(() => {});
    await g?.stop().catch((err) => log(`stopping: ${err}`));
  }
}

await main();
process.exit(0);
