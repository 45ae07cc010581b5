// The wasm conformance suite: every fixture (input → expected verdict) is evaluated by OPA's own Rego
// evaluator (`opa eval`) and by the compiled policy.wasm in Node, and all three must agree. `opa test -t wasm`
// does not work on standard OPA builds, so this is how a divergence between Rego and its wasm compilation —
// a builtin that behaves differently, a construct the wasm planner handles differently — is caught.
import { execFile } from "node:child_process";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isDeepStrictEqual, promisify } from "node:util";
import { findTool } from "../util/tools.js";
import { nowFromRfc3339, type PolicyInput, type Verdict } from "./contract.js";
import { evaluateVerdict, serializeInput } from "./engine.js";
import type { WasmPolicy } from "./wasm-policy.js";

const run = promisify(execFile);

export interface Fixture {
  name: string;
  file: string;
  /** The input serialized exactly as both evaluators see it. */
  inputJson: string;
  expected: Verdict;
}

export interface ConformanceResult {
  name: string;
  file: string;
  ok: boolean;
  /** What went wrong, one line per disagreement. */
  problems: string[];
}

export async function loadFixtures(dir: string): Promise<Fixture[]> {
  const names = (await readdir(dir)).filter((f) => f.endsWith(".json")).sort();
  const fixtures: Fixture[] = [];
  for (const file of names) {
    const path = join(dir, file);
    let raw: { name?: string; input?: PolicyInput & { now: { rfc3339: string } }; expected?: Verdict };
    try {
      raw = JSON.parse(await readFile(path, "utf8"));
    } catch (err) {
      throw new Error(`fixture ${path} is not valid JSON: ${(err as Error).message}`);
    }
    if (!raw.input || !raw.expected) throw new Error(`fixture ${path} needs "input" and "expected"`);
    // JSON.parse rounds nanoseconds beyond 2^53; rebuild `now` exactly from its RFC 3339 form.
    const input = { ...raw.input, now: nowFromRfc3339(raw.input.now.rfc3339) };
    fixtures.push({
      name: raw.name ?? file,
      file: path,
      inputJson: serializeInput(input),
      expected: raw.expected,
    });
  }
  return fixtures;
}

/** Evaluates every fixture with `opa eval` in one process (the fixtures are passed in as data). */
async function evalWithOpa(policies: string, capabilities: string, fixtures: Fixture[]): Promise<unknown[]> {
  const dir = await mkdtemp(join(tmpdir(), "pamgate-conformance-"));
  try {
    const dataFile = join(dir, "fixtures.json");
    await writeFile(dataFile, `{"pamgate_conformance":[${fixtures.map((f) => f.inputJson).join(",")}]}`);
    const query = "[v | some x in data.pamgate_conformance; v := data.pamgate.main.verdict with input as x]";
    const { stdout } = await run(
      findTool("opa"),
      ["eval", "--format", "json", "--capabilities", capabilities, "-b", policies, "-d", dataFile, query],
      { maxBuffer: 64 * 1024 * 1024 },
    );
    const out = JSON.parse(stdout) as { result?: Array<{ expressions: Array<{ value: unknown[] }> }> };
    const values = out.result?.[0]?.expressions[0]?.value;
    if (!Array.isArray(values) || values.length !== fixtures.length) {
      throw new Error(`opa eval returned ${values?.length ?? 0} verdicts for ${fixtures.length} fixtures`);
    }
    return values;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export async function runConformance(opts: {
  policies: string;
  capabilities: string;
  fixturesDir: string;
  wasm: WasmPolicy;
}): Promise<ConformanceResult[]> {
  const fixtures = await loadFixtures(opts.fixturesDir);
  const rego = await evalWithOpa(opts.policies, opts.capabilities, fixtures);
  return fixtures.map((f, i) => {
    const byRego = rego[i];
    const byWasm = evaluateVerdict(opts.wasm, f.inputJson).verdict;
    const problems: string[] = [];
    if (!isDeepStrictEqual(byRego, f.expected)) problems.push(`opa eval gave ${JSON.stringify(byRego)}`);
    if (!isDeepStrictEqual(byWasm, f.expected)) problems.push(`policy.wasm gave ${JSON.stringify(byWasm)}`);
    if (problems.length > 0) problems.push(`expected ${JSON.stringify(f.expected)}`);
    return { name: f.name, file: f.file, ok: problems.length === 0, problems };
  });
}
