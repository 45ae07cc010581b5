// Commands that evaluate policy need a bundle; when none is named they build the example policy set, so the
// demo and `pamgate eval` work straight after `npm ci`.
import { mkdir } from "node:fs/promises";
import { dirname } from "node:path";
import { buildBundle } from "../bundles/build.js";
import { packagePath } from "../util/tools.js";

export const DEFAULT_BUNDLE = packagePath("build", "bundle.tar.gz");

/** Returns `path` if given, else (re)builds the example policies into build/bundle.tar.gz and returns that. */
export async function bundleOrExample(path: string | undefined): Promise<string> {
  if (path) return path;
  await mkdir(dirname(DEFAULT_BUNDLE), { recursive: true });
  await buildBundle({ policies: packagePath("policies"), output: DEFAULT_BUNDLE });
  return DEFAULT_BUNDLE;
}
