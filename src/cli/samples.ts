// `pamgate samples`: builds the example policy bundle and shows the verdict for each
// sample command of an engineer and of a CI bot acting for her, without starting the gateway.

import { readFile } from "node:fs/promises";
import { loadBundleArchive } from "../bundles/bundle.js";
import { DecisionEngine } from "../decision/engine.js";
import { samples } from "../demo/samples.js";
import { parse } from "./args.js";
import { bundleOrExample } from "./example-bundle.js";

export async function samplesCommand(argv: string[]): Promise<number> {
  const { values } = parse("samples", argv, { bundle: { type: "string", short: "b" } });
  const bundle = await bundleOrExample(values.bundle);
  const engine = new DecisionEngine();
  engine.activate(await loadBundleArchive(await readFile(bundle), bundle));
  const out = [`pamgate samples — bundle ${bundle}, revision ${engine.revision}`, ""];
  for (const s of samples()) {
    const d = engine.evaluate(s.input);
    const v = d.verdict;
    out.push(`${s.who.padEnd(17)} ${s.input.protocol.padEnd(10)} ${s.text}`);
    out.push(`  → ${v.action.toUpperCase()}  ${v.reasons.map((r) => `[${r.code}] ${r.message}`).join("; ")}`);
    if (v.mask.length > 0)
      out.push(`    mask: ${v.mask.map((m) => `${m.field} (${m.strategy})`).join(", ")}`);
    if (v.approval) {
      out.push(
        `    approval: ${v.approval.min_approvals} of [${v.approval.groups.join(", ")}], grant for ${v.approval.ttl_s}s`,
      );
    }
    out.push(`    decision ${d.decision_id} in ${(d.eval_ns / 1000).toFixed(0)} µs`);
  }
  out.push("", "Try your own: pamgate eval --input my-input.json   (see docs/policy-contract.md)");
  process.stdout.write(`${out.join("\n")}\n`);
  return 0;
}
