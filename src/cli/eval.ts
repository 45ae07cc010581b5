// `pamgate eval --input FILE [--bundle PATH]`: evaluates one policy input exactly as the gateway would and
// prints the decision. `now` may be omitted (the current time is used) or given as {"rfc3339": "…"}.
import { readFile } from "node:fs/promises";
import { loadBundleArchive } from "../bundles/bundle.js";
import { currentTime, nowFromRfc3339, type PolicyInput } from "../decision/contract.js";
import { DecisionEngine } from "../decision/engine.js";
import { inputProblem } from "../decision/schemas.js";
import { CliError, parse } from "./args.js";
import { bundleOrExample } from "./example-bundle.js";

/** Reads a policy input from a JSON file, filling in `now`, and rejects one that breaks the contract. */
export async function readInputFile(path: string): Promise<PolicyInput> {
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(await readFile(path, "utf8"));
  } catch (err) {
    throw new CliError(`input ${path}: ${(err as Error).message}`);
  }
  const given = raw.now as { rfc3339?: unknown } | undefined;
  const now = typeof given?.rfc3339 === "string" ? nowFromRfc3339(given.rfc3339) : currentTime();
  const input = { ...raw, now: { rfc3339: now.rfc3339, ns: 0 } };
  const problem = inputProblem(input);
  if (problem) throw new CliError(`input ${path} does not follow the policy contract: ${problem}`);
  return { ...(raw as unknown as PolicyInput), now };
}

export async function evalCommand(argv: string[]): Promise<number> {
  const { values } = parse("eval", argv, {
    input: { type: "string", short: "i" },
    bundle: { type: "string", short: "b" },
  });
  if (!values.input) throw new CliError("eval: --input FILE is required");
  const input = await readInputFile(values.input);
  const bundle = await bundleOrExample(values.bundle);
  const engine = new DecisionEngine();
  engine.activate(await loadBundleArchive(await readFile(bundle), bundle));
  const { input_json: _, ...decision } = engine.evaluate(input);
  process.stdout.write(`${JSON.stringify(decision, null, 2)}\n`);
  return 0;
}
