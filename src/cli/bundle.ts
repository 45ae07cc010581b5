// `pamgate bundle build` and `pamgate bundle inspect`.
import { createHash } from "node:crypto";
import { mkdir, readFile } from "node:fs/promises";
import { dirname } from "node:path";
import { readBundleArchive } from "../bundles/archive.js";
import { buildBundle } from "../bundles/build.js";
import { loadBundleFiles, readManifest } from "../bundles/bundle.js";
import { verifyBundleSignature } from "../bundles/signing.js";
import { packagePath } from "../util/tools.js";
import { CliError, parse } from "./args.js";
import { DEFAULT_BUNDLE } from "./example-bundle.js";

export async function bundleCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === "build") return build(rest);
  if (sub === "inspect") return inspect(rest);
  throw new CliError(`bundle: expected "build" or "inspect", got ${sub ? `"${sub}"` : "nothing"}`);
}

async function build(argv: string[]): Promise<number> {
  const { values } = parse("bundle build", argv, {
    policies: { type: "string", default: packagePath("policies") },
    output: { type: "string", short: "o", default: DEFAULT_BUNDLE },
    revision: { type: "string" },
    "signing-key": { type: "string" },
    "signing-alg": { type: "string" },
    capabilities: { type: "string" },
  });
  await mkdir(dirname(values.output), { recursive: true });
  const { revision, output } = await buildBundle({
    policies: values.policies,
    output: values.output,
    revision: values.revision,
    // Default: the builtins of this pamgate's wasm engine (its policies/capabilities.json).
    capabilities: values.capabilities,
    signingKey: values["signing-key"],
    signingAlg: values["signing-alg"],
  });
  process.stdout.write(`built ${output} (revision ${revision})\n`);
  return 0;
}

async function inspect(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    "bundle inspect",
    argv,
    {
      "verification-key": { type: "string" },
      "verification-alg": { type: "string" },
      "verification-key-id": { type: "string" },
      format: { type: "string", default: "text" },
    },
    1,
  );
  const path = positionals[0] ?? DEFAULT_BUNDLE;
  const files = await readBundleArchive(await readFile(path));
  const manifest = readManifest(files);
  let signature = files.has("/.signatures.json")
    ? "present, not verified (pass --verification-key)"
    : "not signed";
  const keyPath = values["verification-key"];
  if (keyPath) {
    const result = await verifyBundleSignature(files, {
      key: await readFile(keyPath, "utf8"),
      algorithm: values["verification-alg"],
      keyId: values["verification-key-id"],
    });
    signature = `verified${result.keyId ? ` with key "${result.keyId}"` : ""} (${result.files} files)`;
  }
  const policy = await loadBundleFiles(files, path);
  const report = {
    bundle: path,
    revision: manifest.revision ?? "",
    roots: manifest.roots ?? [""],
    entrypoints: policy.policy.entrypoints.sort(),
    signature,
    files: [...files]
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([name, bytes]) => ({
        name,
        size: bytes.length,
        sha256: createHash("sha256").update(bytes).digest("hex"),
      })),
  };
  if (values.format === "json") {
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    return 0;
  }
  const lines = [
    `bundle       ${report.bundle}`,
    `revision     ${report.revision || "(none)"}`,
    `roots        ${JSON.stringify(report.roots)}`,
    `entrypoints  ${report.entrypoints.join(", ")}`,
    `signature    ${report.signature}`,
    "files",
    ...report.files.map(
      (f) => `  ${f.name.padEnd(40)} ${String(f.size).padStart(9)} B  sha256:${f.sha256.slice(0, 16)}`,
    ),
  ];
  process.stdout.write(`${lines.join("\n")}\n`);
  return 0;
}
