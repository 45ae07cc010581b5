// `pamgate bundle build`: compiles a policy folder to a wasm bundle with `opa build -t wasm`, stamping the git
// commit as the bundle revision so every decision can be traced to the exact policy source that made it.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { VERDICT_ENTRYPOINT } from "../decision/contract.js";
import { findTool, packagePath } from "../util/tools.js";

const run = promisify(execFile);

/** Entrypoints compiled into every bundle: the verdict, and the decision-log mask rule the audit trail uses. */
export const BUNDLE_ENTRYPOINTS = [VERDICT_ENTRYPOINT, "system/log/mask"] as const;

export interface BuildOptions {
  /** Folder with the Rego sources and data.json. */
  policies: string;
  /** Output .tar.gz path. */
  output: string;
  /** Revision to stamp; defaults to the git commit of `policies` (suffixed "-dirty" when it has changes). */
  revision?: string;
  /** capabilities.json restricting builtins to what the wasm target has. */
  capabilities?: string;
  entrypoints?: readonly string[];
  /**
   * "wasm" (default) compiles policy.wasm for in-process evaluation; "rego" builds a plain bundle of the same
   * sources, which is what OPA's own server evaluates (go-installed OPA has no wasm engine).
   */
  target?: "wasm" | "rego";
  signingKey?: string;
  signingAlg?: string;
}

export class BundleBuildError extends Error {
  override name = "BundleBuildError";
}

async function git(cwd: string, args: string[]): Promise<string | null> {
  try {
    const { stdout } = await run("git", args, { cwd });
    return stdout.trim();
  } catch {
    return null;
  }
}

/**
 * The git commit that holds `dir`, with "-dirty" when files under `dir` differ from it. Outside a git work
 * tree the revision says so rather than pretending to a commit.
 */
export async function gitRevision(dir: string): Promise<string> {
  const sha = await git(dir, ["rev-parse", "HEAD"]);
  if (!sha) return "unversioned";
  const changes = await git(dir, ["status", "--porcelain", "--", "."]);
  return changes ? `${sha}-dirty` : sha;
}

/** Runs `opa build -t wasm` and returns the revision it stamped. OPA's own message is kept on failure. */
export async function buildBundle(options: BuildOptions): Promise<{ revision: string; output: string }> {
  const opa = findTool("opa");
  const revision = options.revision ?? (await gitRevision(options.policies));
  const capabilities = options.capabilities ?? packagePath("policies", "capabilities.json");
  const args = ["build", "-t", options.target ?? "wasm", "--bundle", "--capabilities", capabilities];
  args.push("--revision", revision);
  for (const e of options.entrypoints ?? BUNDLE_ENTRYPOINTS) args.push("-e", e);
  if (options.signingKey) {
    args.push("--signing-key", options.signingKey);
    if (options.signingAlg) args.push("--signing-alg", options.signingAlg);
  }
  args.push("-o", options.output, options.policies);
  try {
    await run(opa, args, { maxBuffer: 16 * 1024 * 1024 });
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    const output = [e.stderr, e.stdout].filter(Boolean).join("\n").trim() || e.message;
    throw new BundleBuildError(`opa build failed for ${options.policies}:\n${output}`);
  }
  return { revision, output: options.output };
}
