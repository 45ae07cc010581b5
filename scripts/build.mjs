#!/usr/bin/env node
// npm run build: compiles src/ to dist/ with tsc (tsconfig.build.json), copies the files src/ reads at run time
// beside its modules (seed.sql), bundles the web console into dist/web, and stamps the build. bin/pamgate.js runs dist/ only while the stamp is newer
// than every source file, so an edit never runs stale code; a published package has only dist/.
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const src = join(root, "src");
// --out DIR: build elsewhere (the packaging test builds a package of its own); default dist/.
const outAt = process.argv.indexOf("--out");
const dist = outAt > 0 ? resolve(process.argv[outAt + 1]) : join(root, "dist");
rmSync(dist, { recursive: true, force: true });
execFileSync(
  process.execPath,
  [join(root, "node_modules", "typescript", "bin", "tsc"), "-p", "tsconfig.build.json", "--outDir", dist],
  { cwd: root, stdio: "inherit" },
);
let assets = 0;
for (const entry of readdirSync(src, { recursive: true, withFileTypes: true })) {
  if (!entry.isFile() || entry.name.endsWith(".ts")) continue;
  const from = join(entry.parentPath, entry.name);
  const to = join(dist, from.slice(src.length + 1));
  mkdirSync(dirname(to), { recursive: true });
  copyFileSync(from, to);
  assets++;
}
// The web console, bundled by esbuild into dist/web (src/api/console-assets.ts serves it from there).
const { buildConsole } = await import("../web/build.mjs");
await buildConsole({ outdir: join(dist, "web"), minify: true });
writeFileSync(join(dist, ".build-stamp"), `${new Date().toISOString()}\n`);
process.stdout.write(`built ${dist} (${assets} asset file${assets === 1 ? "" : "s"} copied)\n`);
