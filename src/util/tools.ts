// Locates the external tools pamgate drives (the OPA CLI). scripts/bootstrap installs pinned versions into the
// project's .tools/bin; PAMGATE_OPA overrides; PATH is the last resort.
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** The package root (where package.json, policies/ and .tools/ live), from src/ or dist/. */
export const PACKAGE_ROOT = fileURLToPath(new URL("../../", import.meta.url));

export function packagePath(...parts: string[]): string {
  return [PACKAGE_ROOT.replace(/\/$/, ""), ...parts].join("/");
}

let version: string | undefined;

/** pamgate's version, from its package.json ("unknown" if that cannot be read). */
export function packageVersion(): string {
  if (version === undefined) {
    try {
      version = (JSON.parse(readFileSync(packagePath("package.json"), "utf8")) as { version: string })
        .version;
    } catch {
      version = "unknown";
    }
  }
  return version;
}

export class ToolMissingError extends Error {
  override name = "ToolMissingError";
}

const found = new Map<string, string>();

/** Returns the path of `name`, or throws telling how to install it. */
export function findTool(name: "opa" | "regal"): string {
  const cached = found.get(name);
  if (cached) return cached;
  const fromEnv = process.env[`PAMGATE_${name.toUpperCase()}`];
  const local = packagePath(".tools", "bin", name);
  let path: string | undefined;
  if (fromEnv && existsSync(fromEnv)) path = fromEnv;
  else if (existsSync(local)) path = local;
  else {
    try {
      path = execFileSync("sh", ["-c", `command -v ${name}`], { encoding: "utf8" }).trim() || undefined;
    } catch {
      path = undefined;
    }
  }
  if (!path)
    throw new ToolMissingError(`${name} CLI not found: run scripts/bootstrap (installs it into .tools/bin)`);
  found.set(name, path);
  return path;
}
