// Turns the files of a bundle into a policy the engine can activate, rejecting anything malformed with an
// error that says which file and why. Nothing here touches the active policy: a rejected candidate costs nothing.
import { VERDICT_ENTRYPOINT } from "../decision/contract.js";
import type { ActivePolicy } from "../decision/engine.js";
import { WasmPolicy } from "../decision/wasm-policy.js";
import { type BundleFiles, BundleFormatError, readBundleArchive } from "./archive.js";
import { type VerificationConfig, verifyBundleSignature } from "./signing.js";

export interface Manifest {
  revision?: string;
  roots?: string[];
  wasm?: Array<{ entrypoint: string; module: string }>;
  metadata?: Record<string, unknown>;
  rego_version?: number;
}

export interface BundleLoadOptions {
  /** When set, the bundle must carry a valid OPA signature for this key. */
  verification?: VerificationConfig;
  /** Entrypoints the wasm module must export; the verdict entrypoint is always required. */
  entrypoints?: readonly string[];
}

function parseJson(files: BundleFiles, path: string): unknown {
  const raw = files.get(path);
  if (!raw) return undefined;
  try {
    return JSON.parse(raw.toString("utf8"));
  } catch (err) {
    throw new BundleFormatError(`${path} is not valid JSON: ${(err as Error).message}`);
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * Merges every data.json of the bundle into one document, each under the path of its directory, the way OPA
 * does (`/a/b/data.json` becomes `data.a.b`). `opa build -t wasm` writes one root /data.json, but hand-made
 * bundles may nest them.
 */
export function mergeBundleData(files: BundleFiles): Record<string, unknown> {
  const root: Record<string, unknown> = {};
  const paths = [...files.keys()].filter((p) => p === "/data.json" || p.endsWith("/data.json")).sort();
  for (const path of paths) {
    const value = parseJson(files, path);
    if (!isObject(value)) throw new BundleFormatError(`${path} must hold a JSON object`);
    const segments = path.split("/").slice(1, -1);
    let node = root;
    for (const seg of segments) {
      const child = node[seg];
      if (child === undefined) node[seg] = {};
      else if (!isObject(child))
        throw new BundleFormatError(`${path} conflicts with a non-object value at ${seg}`);
      node = node[seg] as Record<string, unknown>;
    }
    for (const [k, v] of Object.entries(value)) {
      if (k in node) throw new BundleFormatError(`${path} redefines data key "${k}"`);
      node[k] = v;
    }
  }
  return root;
}

export function readManifest(files: BundleFiles): Manifest {
  const manifest = parseJson(files, "/.manifest");
  if (manifest === undefined) return {};
  if (!isObject(manifest)) throw new BundleFormatError("/.manifest must hold a JSON object");
  return manifest as Manifest;
}

/** Finds the policy module: the one the manifest names for the verdict entrypoint, else /policy.wasm. */
function wasmModule(files: BundleFiles, manifest: Manifest): Buffer {
  const declared = manifest.wasm?.find((w) => w.entrypoint === VERDICT_ENTRYPOINT)?.module;
  const path = declared ?? "/policy.wasm";
  const wasm = files.get(path.startsWith("/") ? path : `/${path}`);
  if (!wasm) {
    throw new BundleFormatError(
      `bundle has no ${path}; build it with opa build -t wasm -e ${VERDICT_ENTRYPOINT} (a Rego-only bundle cannot be evaluated in-process)`,
    );
  }
  return wasm;
}

/** Verifies (when configured), parses and instantiates a bundle. Throws a named error on any problem. */
export async function loadBundleFiles(
  files: BundleFiles,
  source: string,
  options: BundleLoadOptions = {},
): Promise<ActivePolicy> {
  if (options.verification) await verifyBundleSignature(files, options.verification);
  const manifest = readManifest(files);
  const data = mergeBundleData(files);
  const wasm = wasmModule(files, manifest);
  const required = [VERDICT_ENTRYPOINT, ...(options.entrypoints ?? [])];
  const policy = await WasmPolicy.load(wasm, data, required);
  return { policy, revision: manifest.revision ?? "", source, loadedAt: new Date() };
}

/** Reads a .tar.gz bundle and loads it. */
export async function loadBundleArchive(
  archive: Buffer,
  source: string,
  options: BundleLoadOptions = {},
): Promise<ActivePolicy> {
  return loadBundleFiles(await readBundleArchive(archive), source, options);
}
