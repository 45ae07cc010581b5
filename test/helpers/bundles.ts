// Builds small, purpose-made bundles with the real OPA CLI for tests of the engine and the loader.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { type BundleLoadOptions, loadBundleArchive } from "../../src/bundles/bundle.js";
import type { PolicyInput } from "../../src/decision/contract.js";
import { nowFromRfc3339 } from "../../src/decision/contract.js";
import type { ActivePolicy } from "../../src/decision/engine.js";
import { findTool, packagePath } from "../../src/util/tools.js";

export const CAPABILITIES = packagePath("policies", "capabilities.json");

/** Compiles `files` (path → content, Rego and data.json) to a wasm bundle and returns the archive bytes. */
export function buildTestBundle(
  files: Record<string, string>,
  opts: { revision?: string; entrypoints?: string[]; extraArgs?: string[] } = {},
): Buffer {
  const dir = mkdtempSync(join(tmpdir(), "pamgate-test-bundle-"));
  try {
    for (const [name, content] of Object.entries(files)) {
      const path = join(dir, "src", name);
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, content);
    }
    const out = join(dir, "bundle.tar.gz");
    const args = ["build", "-t", "wasm", "--bundle", "--revision", opts.revision ?? "test-rev", "-o", out];
    for (const e of opts.entrypoints ?? ["pamgate/main/verdict"]) args.push("-e", e);
    args.push(...(opts.extraArgs ?? []), join(dir, "src"));
    execFileSync(findTool("opa"), args, { stdio: ["ignore", "ignore", "pipe"] });
    return readFileSync(out);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A policy returning `verdict` as given (Rego source of the value), for engine tests. */
export function verdictPolicy(verdictRego: string, revision = "test-rev"): Buffer {
  return buildTestBundle(
    { "main.rego": `package pamgate.main\n\nverdict := ${verdictRego}\n` },
    { revision },
  );
}

export async function activeFrom(archive: Buffer, options?: BundleLoadOptions): Promise<ActivePolicy> {
  return loadBundleArchive(archive, "test", options);
}

/** A valid policy input with overridable parts. */
export function sampleInput(overrides: Partial<PolicyInput> = {}): PolicyInput {
  return {
    protocol: "postgres",
    resource: { name: "orders-db", kind: "postgres", labels: { env: "production" } },
    identity: {
      sub: "alice",
      iss: "https://idp.example.com",
      email: "alice@example.com",
      groups: ["engineering"],
      client_id: null,
      actors: [{ sub: "alice" }],
    },
    command: { statement: "select", category: "read", tables: { read: ["public.orders"], write: [] } },
    session: { id: "s-1" },
    now: nowFromRfc3339("2026-11-26T08:00:01.123456789Z"),
    ...overrides,
  };
}
