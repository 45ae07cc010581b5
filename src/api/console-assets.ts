// The console's built files, held in memory (a few hundred KiB) and served with ETags. A compiled gateway
// (dist/) serves dist/web, which `npm run build` writes; a gateway running from its sources builds web/ with
// esbuild at startup (web/build.mjs, about a second), so an edit to the app never serves a stale bundle.
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, extname, join, relative } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

export interface ConsoleAsset {
  body: Buffer;
  type: string;
  etag: string;
}

export interface ConsoleAssets {
  file(path: string): ConsoleAsset | undefined;
  /** Why there is no app, when there is none. */
  problem?: string;
}

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".woff2": "font/woff2",
};

/** Reads every file under `dir` into memory. */
export async function loadConsoleAssets(dir: string): Promise<ConsoleAssets> {
  const files = new Map<string, ConsoleAsset>();
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const full = join(entry.parentPath, entry.name);
    const body = await readFile(full);
    files.set(relative(dir, full).split("\\").join("/"), {
      body,
      type: TYPES[extname(entry.name)] ?? "application/octet-stream",
      etag: `"${createHash("sha256").update(body).digest("base64url").slice(0, 22)}"`,
    });
  }
  if (!files.has("index.html")) return { file: () => undefined, problem: `${dir} has no index.html` };
  return { file: (path) => files.get(path) };
}

let cached: Promise<ConsoleAssets> | null = null;

/**
 * The console for this gateway: dist/web beside the compiled modules, or web/ built on first use when running
 * from the sources (once per process). Never rejects: a console that cannot be built is reported on its page,
 * and the API goes on without it.
 */
export function consoleAssets(): Promise<ConsoleAssets> {
  cached ??= findOrBuild();
  return cached;
}

async function findOrBuild(): Promise<ConsoleAssets> {
  const here = dirname(fileURLToPath(import.meta.url));
  const built = join(here, "..", "web");
  if (existsSync(join(built, "index.html"))) return loadConsoleAssets(built);
  const builder = join(here, "..", "..", "web", "build.mjs");
  if (!existsSync(builder))
    return { file: () => undefined, problem: `no built console at ${built} and no ${builder} to build it` };
  const out = await mkdtemp(join(tmpdir(), "pamgate-console-"));
  try {
    const { buildConsole } = (await import(pathToFileURL(builder).href)) as {
      buildConsole(options: { outdir: string; minify?: boolean }): Promise<void>;
    };
    await buildConsole({ outdir: out, minify: true });
    return await loadConsoleAssets(out);
  } catch (err) {
    return { file: () => undefined, problem: `building the console failed: ${(err as Error).message}` };
  } finally {
    await rm(out, { recursive: true, force: true });
  }
}
