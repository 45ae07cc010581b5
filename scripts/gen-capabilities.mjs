// Writes policies/capabilities.json: exactly the builtins the wasm target can run, for `opa check`, `opa build`
// and `pamgate policy test` (`--capabilities policies/capabilities.json`).
//
// The builtin list and the wasm ABI versions come from @open-policy-agent/opa-wasm's own capabilities.json (the
// builtins compiled into policy.wasm plus the ones the SDK implements in JavaScript). That file predates OPA 1.0, so
// it lacks the language features OPA 1.x needs to even parse Rego v1 ("rego_v1 feature required for parsing v1
// Rego"); those are added here. Deliberately left out, although `opa capabilities --current` lists them:
// "template_strings" (needs internal.template_string, which the wasm target lacks) and "rego_v2"/"rego_v2_import"
// (a newer language version the wasm SDK has not been checked against).
//
// Also left out: builtins whose answer is not a function of the input — `rand.intn`. The gateway reuses a
// verdict for an identical input within the same second (src/decision/engine.ts), which is only right because
// a policy is a pure function of its input; a policy that draws random numbers fails to build instead.
//
// Usage: node scripts/gen-capabilities.mjs [--check]   (--check: fail if the committed file is out of date)
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(import.meta.url);
// The package's "exports" hide package.json, so resolve its entry point and walk up to the package root.
let sdkDir = dirname(require.resolve("@open-policy-agent/opa-wasm"));
while (!existsSync(join(sdkDir, "capabilities.json")) && dirname(sdkDir) !== sdkDir) sdkDir = dirname(sdkDir);
const sdk = JSON.parse(readFileSync(join(sdkDir, "capabilities.json"), "utf8"));

if (!Array.isArray(sdk.builtins) || sdk.builtins.length === 0) {
  throw new Error(`${sdkDir}/capabilities.json has no builtins`);
}

const IMPURE = new Set(["rand.intn"]);

const capabilities = {
  builtins: [...sdk.builtins]
    .filter((b) => !IMPURE.has(b.name))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)),
  // The keywords Rego v1 made standard; listed so modules that still `import future.keywords.*` keep loading.
  future_keywords: ["contains", "every", "if", "in"],
  // What OPA 1.x itself advertises for Rego v1 (`opa capabilities --version v1.10.0`).
  features: ["keywords_in_refs", "rego_v1"],
  wasm_abi_versions: sdk.wasm_abi_versions,
};

// The example policy repository carries a copy, as a real policy repository would (examples/policy-repo).
const outs = [
  join(root, "policies", "capabilities.json"),
  join(root, "examples", "policy-repo", "capabilities.json"),
];
const text = `${JSON.stringify(capabilities, null, 2)}\n`;

for (const out of outs) {
  if (process.argv.includes("--check")) {
    let current = "";
    try {
      current = readFileSync(out, "utf8");
    } catch {
      // missing counts as out of date
    }
    if (current !== text) {
      console.error(`${out} is out of date; run node scripts/gen-capabilities.mjs`);
      process.exit(1);
    }
    console.log(`${out} is up to date (${capabilities.builtins.length} builtins)`);
  } else {
    writeFileSync(out, text);
    console.log(`wrote ${out} (${capabilities.builtins.length} builtins)`);
  }
}
