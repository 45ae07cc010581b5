// npm run bench:audit — durable records per second and the latency of the record call, at 1, 16 and 256
// concurrent writers (sessions), with realistic decision events: the example policy's decisions on the sample
// commands, masked by its system.log.mask rule and serialized once (about 1 KB each), as the proxies record them.
// Each record() resolves only after its batch is written and fdatasync'd. Also measured: the whole decision path
// of a proxy (build the event, mask it, record it) at 256 writers. Prints one JSON line.
// Target (issue 4): ≥ 50,000 records/s at 256 writers with p99 ≤ 5 ms.
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AuditTrail } from "../src/audit/index.js";
import { nodeIo, type SpoolIo } from "../src/audit/io.js";
import { buildBundle } from "../src/bundles/build.js";
import { loadBundleArchive } from "../src/bundles/bundle.js";
import type { Decision } from "../src/decision/contract.js";
import { DecisionEngine } from "../src/decision/engine.js";
import { samples } from "../src/demo/samples.js";
import { packagePath } from "../src/util/tools.js";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
const WARMUP_SECONDS = Number(process.env.BENCH_WARMUP_SECONDS ?? 0.5);
const WRITERS = (process.env.BENCH_WRITERS ?? "1,16,256").split(",").map(Number);
const BATCH_BYTES = process.env.BENCH_BATCH_BYTES ? Number(process.env.BENCH_BATCH_BYTES) : undefined;
const TARGET = { writers: 256, records_per_s: 50_000, p99_ms: 5 };

function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

/** Counts write and fdatasync calls, so records per batch can be reported. */
function countingIo() {
  const counts = { writes: 0, syncs: 0 };
  const io: SpoolIo = {
    ...nodeIo,
    writeAll: (fd, buf, pos) => {
      counts.writes++;
      return nodeIo.writeAll(fd, buf, pos);
    },
    fdatasync: (fd) => {
      counts.syncs++;
      return nodeIo.fdatasync(fd);
    },
  };
  return { io, counts };
}

interface Result {
  records_per_s: number;
  p50_ms: number;
  p99_ms: number;
  max_ms: number;
  records: number;
  records_per_fsync: number;
}

/** `writers` concurrent loops of `op` for SECONDS (after a warm-up); each op is timed. */
async function run(
  writers: number,
  op: (i: number) => Promise<unknown>,
  counts: { syncs: number },
): Promise<Result> {
  let phase: "warmup" | "measure" | "stop" = "warmup";
  let n = 0;
  let times = new Float64Array(1 << 20);
  let i = 0;
  const loops = Array.from({ length: writers }, async (_, w) => {
    let k = w;
    while (phase !== "stop") {
      const t0 = performance.now();
      await op(k);
      const dt = performance.now() - t0;
      k += writers;
      if (phase === "measure") {
        if (n === times.length) {
          const bigger = new Float64Array(times.length * 2);
          bigger.set(times);
          times = bigger;
        }
        times[n++] = dt;
      }
    }
  });
  await new Promise((r) => setTimeout(r, WARMUP_SECONDS * 1000));
  phase = "measure";
  const syncs0 = counts.syncs;
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, SECONDS * 1000));
  phase = "stop";
  const elapsed = (performance.now() - t0) / 1000;
  const syncs = counts.syncs - syncs0;
  await Promise.all(loops);
  i = n;
  const sorted = times.subarray(0, i).sort();
  return {
    records_per_s: Math.round(i / elapsed),
    p50_ms: +percentile(sorted, 50).toFixed(3),
    p99_ms: +percentile(sorted, 99).toFixed(3),
    max_ms: +(sorted[sorted.length - 1] ?? 0).toFixed(3),
    records: i,
    records_per_fsync: +(i / Math.max(1, syncs)).toFixed(1),
  };
}

async function main() {
  const root = await mkdtemp(join(tmpdir(), "pamgate-bench-audit-"));
  try {
    // Realistic events: the example policy's decisions, masked by its own mask rule, serialized once.
    const bundle = join(root, "bundle.tar.gz");
    await buildBundle({ policies: packagePath("policies"), output: bundle, revision: "bench" });
    const engine = new DecisionEngine();
    engine.activate(await loadBundleArchive(await readFile(bundle), bundle));
    const decisions: Decision[] = samples().map((s) => engine.evaluate(s.input));

    const result: Record<string, unknown> = { bench: "audit" };
    const byWriters: Record<string, Result> = {};
    let eventBytes = 0;
    for (const writers of WRITERS) {
      const { io, counts } = countingIo();
      const dir = join(root, `spool-${writers}`);
      const audit = await AuditTrail.open({ dir, maxBytes: 16 * 1024 ** 3, batchBytes: BATCH_BYTES }, { io });
      const events = decisions.map((d) => audit.decisionEvent(d));
      eventBytes = Math.round(events.reduce((n, e) => n + Buffer.byteLength(e.json), 0) / events.length);
      byWriters[String(writers)] = await run(
        writers,
        (k) => audit.recordEvent(events[k % events.length] as (typeof events)[number]),
        counts,
      );
      await audit.close();
      await rm(dir, { recursive: true, force: true });
    }
    result.event_bytes = eventBytes;
    result.writers = byWriters;

    // The proxies' whole path per command: event built and masked (wasm mask rule), then recorded.
    if (process.env.BENCH_DECISION_PATH !== "0") {
      const { io, counts } = countingIo();
      const dir = join(root, "spool-decision-path");
      const audit = await AuditTrail.open({ dir, maxBytes: 16 * 1024 ** 3, batchBytes: BATCH_BYTES }, { io });
      result.record_decision_256 = await run(
        256,
        (k) => audit.recordDecision(decisions[k % decisions.length] as Decision),
        counts,
      );
      await audit.close();
    }

    const at = byWriters[String(TARGET.writers)];
    result.target = TARGET;
    result.target_met = at ? at.records_per_s >= TARGET.records_per_s && at.p99_ms <= TARGET.p99_ms : null;
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

await main();
