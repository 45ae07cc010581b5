// Masking conformance: the same policy, inputs and system.log.mask rule, once through OPA's own decision logger
// (`opa run --server` with console decision logs) and once through pamgate (the wasm bundle, in process). The
// logged input and result, `erased` and `masked` must be identical.
import { type ChildProcess, spawn } from "node:child_process";
import { cpSync, mkdirSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import t from "tap";
import { buildDecisionEvent } from "../../src/audit/event.js";
import { type JsonValue, parseExact } from "../../src/audit/json.js";
import { buildBundle } from "../../src/bundles/build.js";
import { loadBundleArchive } from "../../src/bundles/bundle.js";
import type { PolicyInput } from "../../src/decision/contract.js";
import { DecisionEngine } from "../../src/decision/engine.js";
import { ciBotForAlice, samples } from "../../src/demo/samples.js";
import { findTool, packagePath } from "../../src/util/tools.js";
import { sampleInput } from "../helpers/bundles.js";
import { freePort } from "../helpers/postgres.js";

const SYNTHETIC_MASK = `package system.log

mask contains "/input/identity/email"
mask contains "/input/identity/groups/0"
mask contains "/input/does/not/exist"
mask contains "/input/resource/labels/env"
mask contains {"op": "upsert", "path": "/input/command/line", "value": "[x]"} if input.input.protocol == "ssh"
mask contains {"op": "remove", "path": "/input/command/commands"} if input.input.protocol == "ssh"
mask contains {"op": "upsert", "path": "/input/extra/deep", "value": {"k": [1, 2]}}
mask contains {"op": "upsert", "path": "/input/command/tables/read/0", "value": "[table]"}
mask contains "/result/reasons/0/message" if input.result.action == "block"
`;

interface OpaServer {
  url: string;
  logs: Map<string, Record<string, unknown>>;
  proc: ChildProcess;
}

async function startOpa(bundle: string): Promise<OpaServer> {
  const port = await freePort();
  const proc = spawn(
    findTool("opa"),
    ["run", "--server", "--addr", `127.0.0.1:${port}`, "--set", "decision_logs.console=true", "-b", bundle],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  const logs = new Map<string, Record<string, unknown>>();
  let buffered = "";
  proc.stderr?.on("data", (c: Buffer) => {
    buffered += c.toString();
    const lines = buffered.split("\n");
    buffered = lines.pop() ?? "";
    for (const l of lines) {
      if (!l.includes('"Decision Log"')) continue;
      const e = parseExact(l) as Record<string, unknown>;
      logs.set(e.decision_id as string, e);
    }
  });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 200; i++) {
    try {
      if ((await fetch(`${url}/health`)).ok) return { url, logs, proc };
    } catch {}
    await new Promise((r) => setTimeout(r, 50));
  }
  proc.kill();
  throw new Error("opa did not start");
}

/** Asks OPA for the verdict on `inputJson` and returns its decision log event. */
async function opaLogged(opa: OpaServer, inputJson: string): Promise<Record<string, unknown>> {
  const res = await fetch(`${opa.url}/v1/data/pamgate/main/verdict`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: `{"input":${inputJson}}`,
  });
  const { decision_id } = (await res.json()) as { decision_id: string };
  for (let i = 0; i < 200; i++) {
    const e = opa.logs.get(decision_id);
    if (e) return e;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`no decision log for ${decision_id}`);
}

/** Deep equality with key order ignored and exact integers (bigint) compared by value. */
function same(a: JsonValue | undefined, b: JsonValue | undefined): boolean {
  return canonical(a) === canonical(b);
}

function canonical(v: JsonValue | undefined): string {
  if (v === undefined) return "undefined";
  if (typeof v === "bigint") return v.toString();
  if (v === null || typeof v !== "object") return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(canonical).join(",")}]`;
  return `{${Object.keys(v)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`)
    .join(",")}}`;
}

function inputs(): PolicyInput[] {
  const ssh = {
    ...sampleInput(),
    protocol: "ssh" as const,
    resource: { name: "web-1", kind: "ssh" as const, labels: { env: "production" } },
    identity: ciBotForAlice,
    command: {
      request: "exec",
      line: "PGPASSWORD=hunter2 psql -h db",
      commands: [{ program: "psql", args: ["-h", "db"], sudo: false }],
      sudo: false,
    },
  };
  return [...samples().map((s) => s.input), ssh, sampleInput()];
}

for (const [name, maskRego] of [
  ["the example policies' mask rule", null],
  ["a synthetic rule set (removes, upserts, arrays, missing paths, /result)", SYNTHETIC_MASK],
] as const) {
  t.test(name, async (t) => {
    const dir = t.testdir();
    const policies = join(dir, "policies");
    cpSync(packagePath("policies"), policies, { recursive: true });
    if (maskRego) writeFileSync(join(policies, "system", "log.rego"), maskRego);
    mkdirSync(join(dir, "out"));
    const bundle = join(dir, "out", "bundle.tar.gz");
    await buildBundle({ policies, output: bundle, revision: "conformance" });
    const engine = new DecisionEngine();
    engine.activate(await loadBundleArchive(await readFile(bundle), bundle));
    // OPA gets a Rego bundle of the same sources (a go-installed OPA has no wasm engine).
    const regoBundle = join(dir, "out", "rego.tar.gz");
    await buildBundle({ policies, output: regoBundle, revision: "conformance", target: "rego" });
    const opa = await startOpa(regoBundle);
    t.teardown(() => {
      opa.proc.kill();
    });

    let masked = 0;
    for (const input of inputs()) {
      const d = engine.evaluate(input);
      const ours = parseExact(buildDecisionEvent(d, { labels: {}, bundleName: "b" }).json) as Record<
        string,
        JsonValue
      >;
      const theirs = (await opaLogged(opa, d.input_json)) as Record<string, JsonValue>;
      const what = `${input.protocol} ${JSON.stringify(input.command).slice(0, 60)}`;
      t.ok(same(ours.result, theirs.result), `${what}: result`);
      t.ok(same(ours.input, theirs.input), `${what}: input`);
      t.same(ours.erased ?? [], theirs.erased ?? [], `${what}: erased`);
      t.same(ours.masked ?? [], theirs.masked ?? [], `${what}: masked`);
      if (ours.masked || ours.erased) masked++;
    }
    t.ok(masked > 5, `${masked} events were masked`);
  });
}
