#!/usr/bin/env node
// The pamgate command. Runs the compiled dist/ (npm run build) when it is up to date, so production runs no
// TypeScript loader; otherwise the TypeScript sources through tsx, so a checkout works without a build step.
// "Up to date": dist/.build-stamp is newer than every file under src/ and web/ (a stale build never runs).
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));

function builtAndCurrent() {
  const stamp = join(root, "dist", ".build-stamp");
  if (!existsSync(stamp)) return false;
  if (process.env.PAMGATE_RUN_SOURCES === "1") return false;
  const src = join(root, "src");
  if (!existsSync(src)) return true; // an installed package: dist/ is all there is
  const built = statSync(stamp).mtimeMs;
  for (const dir of [src, join(root, "web")]) {
    if (!existsSync(dir)) continue;
    for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
      if (entry.isFile() && statSync(join(entry.parentPath, entry.name)).mtimeMs > built) return false;
    }
  }
  return true;
}

if (builtAndCurrent()) {
  await import("../dist/cli/main.js");
} else {
  const { register } = await import("tsx/esm/api");
  register();
  await import("../src/cli/main.ts");
}
