// `pamgate policy test`: everything a policy change must pass, in one run with one readable summary —
// opa check --strict, opa test with enforced coverage, Regal (when installed), a wasm build with the restricted
// capabilities, and the wasm conformance suite.
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { buildBundle } from "../bundles/build.js";
import { loadBundleArchive } from "../bundles/bundle.js";
import { runConformance } from "../decision/conformance.js";
import { findTool, packagePath } from "../util/tools.js";
import { CliError, parse } from "./args.js";

const run = promisify(execFile);

interface Step {
  name: string;
  status: "pass" | "fail" | "skip";
  summary: string;
  details?: string;
}

async function opa(args: string[]): Promise<{ ok: boolean; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(findTool("opa"), args, { maxBuffer: 64 * 1024 * 1024 });
    return { ok: true, stdout, stderr };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    return { ok: false, stdout: e.stdout ?? "", stderr: e.stderr || e.message };
  }
}

interface OpaTestResult {
  package: string;
  name: string;
  fail?: boolean;
  error?: { message?: string };
  location?: { file: string; row: number };
}

/**
 * opa check and opa test load the policy folder and the tests as loose files, where every .json below them is
 * data: the schemas, capabilities and conformance fixtures would collide with data.json, and bad-capability/
 * fails on purpose (it proves the capabilities bite).
 */
const LOOSE_IGNORES = ["schemas", "capabilities.json", "fixtures", "bad-capability"].flatMap((i) => [
  "--ignore",
  i,
]);

async function checkStep(caps: string, policies: string, tests: string): Promise<Step> {
  const r = await opa(["check", "--strict", "--capabilities", caps, ...LOOSE_IGNORES, policies, tests]);
  return r.ok
    ? { name: "opa check --strict", status: "pass", summary: "no errors" }
    : { name: "opa check --strict", status: "fail", summary: "errors", details: r.stderr || r.stdout };
}

async function testStep(caps: string, policies: string, tests: string, minCoverage: number): Promise<Step[]> {
  const r = await opa([
    "test",
    "--capabilities",
    caps,
    ...LOOSE_IGNORES,
    "--format",
    "json",
    policies,
    tests,
  ]);
  let results: OpaTestResult[];
  try {
    results = JSON.parse(r.stdout) as OpaTestResult[];
  } catch {
    return [{ name: "opa test", status: "fail", summary: "did not run", details: r.stderr || r.stdout }];
  }
  const failed = results.filter((t) => t.fail || t.error);
  const steps: Step[] = [
    {
      name: "opa test",
      status: failed.length === 0 && results.length > 0 ? "pass" : "fail",
      summary: `${results.length - failed.length} passed, ${failed.length} failed`,
      details: failed
        .map(
          (t) =>
            `${t.location?.file ?? t.package}:${t.location?.row ?? "?"} ${t.name}${t.error?.message ? `: ${t.error.message}` : ""}`,
        )
        .join("\n"),
    },
  ];
  const c = await opa([
    "test",
    "--capabilities",
    caps,
    ...LOOSE_IGNORES,
    "--coverage",
    "--format",
    "json",
    policies,
    tests,
  ]);
  try {
    const report = JSON.parse(c.stdout) as {
      coverage: number;
      files: Record<
        string,
        { coverage?: number; not_covered?: Array<{ start: { row: number }; end: { row: number } }> }
      >;
    };
    // Coverage is of the policies themselves, not of the test files.
    const uncovered = Object.entries(report.files)
      .filter(([file, f]) => !file.includes("_test") && (f.not_covered?.length ?? 0) > 0)
      .map(
        ([file, f]) =>
          `${file}: lines ${f.not_covered?.map((n) => `${n.start.row}-${n.end.row}`).join(", ")}`,
      );
    steps.push({
      name: "coverage",
      status: report.coverage >= minCoverage ? "pass" : "fail",
      summary: `${report.coverage.toFixed(1)}% (minimum ${minCoverage}%)`,
      details: report.coverage >= minCoverage ? undefined : uncovered.join("\n"),
    });
  } catch {
    steps.push({ name: "coverage", status: "fail", summary: "no report", details: c.stderr });
  }
  return steps;
}

async function regalStep(policies: string): Promise<Step> {
  let regal: string;
  try {
    regal = findTool("regal");
  } catch {
    return {
      name: "regal lint",
      status: "skip",
      summary: "regal is not installed (scripts/bootstrap installs it where the Go module proxy serves it)",
    };
  }
  try {
    await run(regal, ["lint", policies]);
    return { name: "regal lint", status: "pass", summary: "no violations" };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    return { name: "regal lint", status: "fail", summary: "violations", details: e.stdout || e.stderr };
  }
}

async function buildAndConformance(policies: string, caps: string, fixtures: string): Promise<Step[]> {
  const dir = await mkdtemp(join(tmpdir(), "pamgate-policy-test-"));
  try {
    const output = join(dir, "bundle.tar.gz");
    let revision: string;
    try {
      ({ revision } = await buildBundle({ policies, output, capabilities: caps }));
    } catch (err) {
      return [
        { name: "wasm build", status: "fail", summary: "opa build failed", details: (err as Error).message },
      ];
    }
    const active = await loadBundleArchive(await readFile(output), output);
    const build: Step = { name: "wasm build", status: "pass", summary: `revision ${revision}` };
    const results = await runConformance({
      policies,
      capabilities: caps,
      fixturesDir: fixtures,
      wasm: active.policy,
    });
    const bad = results.filter((r) => !r.ok);
    return [
      build,
      {
        name: "wasm conformance",
        status: bad.length === 0 && results.length > 0 ? "pass" : "fail",
        summary: `${results.length - bad.length} of ${results.length} fixtures agree (opa eval = policy.wasm = expected)`,
        details: bad.map((r) => `${r.file} (${r.name}):\n    ${r.problems.join("\n    ")}`).join("\n"),
      },
    ];
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export async function policyCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub !== "test") throw new CliError(`policy: expected "test", got ${sub ? `"${sub}"` : "nothing"}`);
  const { values } = parse("policy test", rest, {
    policies: { type: "string", default: packagePath("policies") },
    tests: { type: "string", default: packagePath("test", "policies") },
    fixtures: { type: "string" },
    capabilities: { type: "string" },
    "min-coverage": { type: "string", default: "90" },
  });
  const minCoverage = Number(values["min-coverage"]);
  if (!Number.isFinite(minCoverage)) throw new CliError(`policy test: --min-coverage must be a number`);
  const caps = values.capabilities ?? join(values.policies, "capabilities.json");
  const fixtures = values.fixtures ?? join(values.tests, "fixtures");

  const steps: Step[] = [
    await checkStep(caps, values.policies, values.tests),
    ...(await testStep(caps, values.policies, values.tests, minCoverage)),
    await regalStep(values.policies),
    ...(await buildAndConformance(values.policies, caps, fixtures)),
  ];

  const mark = { pass: "ok  ", fail: "FAIL", skip: "skip" } as const;
  const out = ["pamgate policy test"];
  for (const s of steps) {
    out.push(`  ${mark[s.status]}  ${s.name.padEnd(20)} ${s.summary}`);
    if (s.status === "fail" && s.details)
      out.push(
        ...s.details
          .trim()
          .split("\n")
          .map((l) => `        ${l}`),
      );
  }
  const failed = steps.filter((s) => s.status === "fail").length;
  const passed = steps.filter((s) => s.status === "pass").length;
  out.push(`policy: ${passed} passed, ${failed} failed, ${steps.length - passed - failed} skipped`);
  process.stdout.write(`${out.join("\n")}\n`);
  return failed === 0 ? 0 : 1;
}
