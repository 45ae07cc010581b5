// npm run bench:decision — the example policy on realistic inputs, in one run:
//   (a) in-process: @open-policy-agent/opa-wasm through pamgate's DecisionEngine (serialize, eval, validate);
//   (b) OPA's own server (`opa run --server`) over loopback REST, same policy sources and revision (as a Rego
//       bundle: OPA built with `go install` has no wasm engine), same inputs;
//   (c) hot reload: how long after a bundle file is replaced the new revision answers, over 100 reloads,
//       with evaluations running throughout, counting any that fail.
// Prints one JSON line. Targets (issue 2): in-process p99 ≤ 50 µs; ≥ 20× faster than REST at p50; reload
// ≤ 100 ms with no failed evaluation.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from "node:fs/promises";
import { Agent, request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildBundle } from "../src/bundles/build.js";
import { loadBundleArchive } from "../src/bundles/bundle.js";
import { FileBundleSource } from "../src/bundles/file-source.js";
import { BundleManager } from "../src/bundles/manager.js";
import { DecisionEngine, serializeInput } from "../src/decision/engine.js";
import { samples } from "../src/demo/samples.js";
import { findTool, packagePath } from "../src/util/tools.js";
import { freePort } from "../test/helpers/postgres.js";

const FLOOR_POLICY = `package pamgate.main

verdict := {"action": "allow", "reasons": [{"code": "bench.floor", "message": "constant"}], "mask": [], "approval": null}
`;

const IN_PROCESS_N = Number(process.env.BENCH_N ?? 50_000);
const REST_N = Number(process.env.BENCH_REST_N ?? 5_000);
const RELOADS = Number(process.env.BENCH_RELOADS ?? 100);

function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

function summarize(samplesNs: Float64Array) {
  const s = samplesNs.slice().sort();
  return {
    n: s.length,
    p50_us: +(percentile(s, 50) / 1000).toFixed(2),
    p99_us: +(percentile(s, 99) / 1000).toFixed(2),
  };
}

async function benchInProcess(engine: DecisionEngine, inputs: ReturnType<typeof samples>) {
  for (let i = 0; i < 5_000; i++)
    engine.evaluate((inputs[i % inputs.length] as (typeof inputs)[number]).input);
  const times = new Float64Array(IN_PROCESS_N);
  for (let i = 0; i < IN_PROCESS_N; i++) {
    const input = (inputs[i % inputs.length] as (typeof inputs)[number]).input;
    const t0 = process.hrtime.bigint();
    const d = engine.evaluate(input);
    times[i] = Number(process.hrtime.bigint() - t0);
    if (d.verdict.reasons[0]?.code.startsWith("engine."))
      throw new Error(`engine failure: ${d.verdict.reasons[0].message}`);
  }
  return summarize(times);
}

async function benchOpaRest(bundle: string, inputs: ReturnType<typeof samples>) {
  const port = await freePort();
  const opa: ChildProcess = spawn(
    findTool("opa"),
    ["run", "--server", "--addr", `127.0.0.1:${port}`, "--log-level", "error", "--bundle", bundle],
    { stdio: ["ignore", "ignore", "inherit"] },
  );
  try {
    const url = `http://127.0.0.1:${port}/v1/data/pamgate/main/verdict`;
    for (let i = 0; ; i++) {
      try {
        const r = await fetch(`http://127.0.0.1:${port}/health?bundles`);
        if (r.ok) break;
      } catch {}
      if (i > 200) throw new Error("opa server did not become healthy");
      await new Promise((r) => setTimeout(r, 50));
    }
    // The same bytes the wasm engine sees, wrapped in OPA's {"input": …} envelope.
    const bodies = inputs.map((s) => `{"input":${serializeInput(s.input)}}`);
    // A keep-alive node:http client, the cheapest way a sidecar's caller can reach it.
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const post = (body: string) =>
      new Promise<void>((resolve, reject) => {
        const req = request(
          url,
          { method: "POST", agent, headers: { "content-type": "application/json" } },
          (res) => {
            const chunks: Buffer[] = [];
            res.on("data", (c: Buffer) => chunks.push(c));
            res.on("end", () => {
              const json = JSON.parse(Buffer.concat(chunks).toString()) as { result?: { action?: string } };
              if (json.result?.action) resolve();
              else reject(new Error(`opa returned no verdict: ${JSON.stringify(json)}`));
            });
          },
        );
        req.on("error", reject);
        req.end(body);
      });
    for (let i = 0; i < 500; i++) await post(bodies[i % bodies.length] as string);
    const times = new Float64Array(REST_N);
    for (let i = 0; i < REST_N; i++) {
      const t0 = performance.now();
      await post(bodies[i % bodies.length] as string);
      times[i] = (performance.now() - t0) * 1e6;
    }
    return summarize(times);
  } finally {
    opa.kill();
  }
}

async function benchReload(dir: string, inputs: ReturnType<typeof samples>) {
  // Two bundles differing only in revision; the test is how fast the swap is seen, not what they decide.
  const a = join(dir, "a.tar.gz");
  const b = join(dir, "b.tar.gz");
  const policies = packagePath("policies");
  await buildBundle({ policies, output: a, revision: "rev-a" });
  await buildBundle({ policies, output: b, revision: "rev-b" });
  const bytes = { "rev-a": await readFile(a), "rev-b": await readFile(b) };
  const live = join(dir, "live.tar.gz");
  await writeFile(live, bytes["rev-a"]);

  const engine = new DecisionEngine();
  const manager = new BundleManager(engine);
  await manager.addSource(new FileBundleSource({ path: live }));
  let evaluations = 0;
  let failed = 0;
  let running = true;
  // Load: evaluations keep running on the event loop between file-system events.
  const load = (async () => {
    while (running) {
      for (let i = 0; i < 20; i++) {
        const d = engine.evaluate((inputs[evaluations % inputs.length] as (typeof inputs)[number]).input);
        evaluations++;
        if (d.verdict.reasons[0]?.code.startsWith("engine.")) failed++;
      }
      await new Promise((r) => setImmediate(r));
    }
  })();
  const latencies = new Float64Array(RELOADS);
  for (let i = 0; i < RELOADS; i++) {
    const want = i % 2 === 0 ? "rev-b" : "rev-a";
    await writeFile(`${live}.tmp`, bytes[want]);
    const t0 = process.hrtime.bigint();
    await rename(`${live}.tmp`, live);
    while (engine.revision !== want) {
      if (Number(process.hrtime.bigint() - t0) > 5e9) throw new Error(`reload ${i} not seen within 5 s`);
      await new Promise((r) => setTimeout(r, 1));
    }
    latencies[i] = Number(process.hrtime.bigint() - t0);
  }
  running = false;
  await load;
  await manager.close();
  const s = latencies.slice().sort();
  return {
    reloads: RELOADS,
    p50_ms: +(percentile(s, 50) / 1e6).toFixed(2),
    p99_ms: +(percentile(s, 99) / 1e6).toFixed(2),
    max_ms: +((s[s.length - 1] as number) / 1e6).toFixed(2),
    evaluations_during: evaluations,
    failed_evaluations: failed,
  };
}

async function main() {
  const dir = await mkdtemp(join(tmpdir(), "pamgate-bench-"));
  try {
    const bundle = join(dir, "bundle.tar.gz");
    const regoBundle = join(dir, "rego-bundle.tar.gz");
    const { revision } = await buildBundle({ policies: packagePath("policies"), output: bundle });
    // OPA's server gets the same sources and revision as a Rego bundle: go-installed OPA has no wasm engine.
    await buildBundle({ policies: packagePath("policies"), output: regoBundle, revision, target: "rego" });
    const inputs = samples();
    const engine = new DecisionEngine();
    engine.activate(await loadBundleArchive(await readFile(bundle), bundle));
    const inProcess = await benchInProcess(engine, inputs);
    // The floor: a constant-verdict policy through the same path. What is left above it is the example policy.
    const floorBundle = join(dir, "floor.tar.gz");
    await mkdir(join(dir, "floor"));
    await writeFile(join(dir, "floor", "floor.rego"), FLOOR_POLICY);
    await buildBundle({
      policies: join(dir, "floor"),
      output: floorBundle,
      entrypoints: ["pamgate/main/verdict"],
    });
    const floorEngine = new DecisionEngine();
    floorEngine.activate(await loadBundleArchive(await readFile(floorBundle), floorBundle));
    const floor = await benchInProcess(floorEngine, inputs);
    const rest = await benchOpaRest(regoBundle, inputs);
    const reload = await benchReload(dir, inputs);
    const result = {
      bench: "decision",
      revision,
      inputs: inputs.length,
      in_process: inProcess,
      in_process_constant_policy: floor,
      opa_rest: rest,
      rest_over_in_process_p50: +(rest.p50_us / inProcess.p50_us).toFixed(1),
      rest_over_in_process_p99: +(rest.p99_us / inProcess.p99_us).toFixed(1),
      reload,
      targets: {
        in_process_p99_le_50us: inProcess.p99_us <= 50,
        faster_than_rest_p50_ge_20x: rest.p50_us / inProcess.p50_us >= 20,
        reload_le_100ms: reload.max_ms <= 100,
        no_failed_evaluation: reload.failed_evaluations === 0,
      },
    };
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
