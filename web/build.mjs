// Builds the web console: web/src (Preact, TypeScript) bundled by esbuild into
//
//   <outdir>/index.html
//   <outdir>/assets/app.js                   the app (ESM)
//   <outdir>/assets/app.css                  style.css and asciinema-player's stylesheet
//   <outdir>/assets/chunks/player-<hash>.js  asciinema-player, loaded by the session page only (most of the
//                                            code: approvers never download it)
//
// The gateway serves it at /console/ (index.html refers to /console/assets/…). Called by the gateway at startup
// when it runs from its sources, and by scripts/build.mjs for dist/web; or by hand: node web/build.mjs <outdir>.
import { copyFile, mkdir, stat } from "node:fs/promises";
import { dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import * as esbuild from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));

/**
 * @param {{ outdir: string, minify?: boolean, sourcemap?: boolean }} options
 * @returns {Promise<{ files: Record<string, number> }>} the files written (relative to outdir) and their sizes
 */
export async function buildConsole({ outdir, minify = true, sourcemap = false }) {
  if (!outdir) throw new Error("buildConsole: outdir is required");
  const out = resolve(outdir);
  await mkdir(join(out, "assets"), { recursive: true });
  const result = await esbuild.build({
    absWorkingDir: here,
    entryPoints: { app: join(here, "src", "main.tsx") },
    outdir: join(out, "assets"),
    entryNames: "[name]",
    chunkNames: "chunks/[name]-[hash]",
    bundle: true,
    splitting: true,
    format: "esm",
    platform: "browser",
    target: ["es2022", "chrome100", "firefox100", "safari16"],
    jsx: "automatic",
    jsxImportSource: "preact",
    tsconfig: join(here, "tsconfig.json"),
    minify,
    sourcemap: sourcemap ? "linked" : false,
    legalComments: minify ? "eof" : "inline",
    charset: "utf8",
    define: { "process.env.NODE_ENV": JSON.stringify(minify ? "production" : "development") },
    logLevel: "silent",
    metafile: true,
    write: true,
  });
  await copyFile(join(here, "index.html"), join(out, "index.html"));
  const files = { "index.html": (await stat(join(out, "index.html"))).size };
  for (const [path, { bytes }] of Object.entries(result.metafile.outputs)) {
    files[relative(out, resolve(here, path)).split(sep).join("/")] = bytes;
  }
  return { files };
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const outdir = process.argv[2];
  if (!outdir) {
    console.error("usage: node web/build.mjs <outdir> [--no-minify] [--sourcemap]");
    process.exit(2);
  }
  const started = performance.now();
  try {
    const { files } = await buildConsole({
      outdir,
      minify: !process.argv.includes("--no-minify"),
      sourcemap: process.argv.includes("--sourcemap"),
    });
    const { gzipSync } = await import("node:zlib");
    const { readFile } = await import("node:fs/promises");
    const width = Math.max(...Object.keys(files).map((f) => f.length));
    for (const [f, size] of Object.entries(files)) {
      const gz = gzipSync(await readFile(join(resolve(outdir), f))).length;
      console.log(
        `${f.padEnd(width)} ${String(size).padStart(8)} bytes  (${String(gz).padStart(6)} gzipped)`,
      );
    }
    console.log(`built the console into ${resolve(outdir)} in ${Math.round(performance.now() - started)} ms`);
  } catch (err) {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  }
}
