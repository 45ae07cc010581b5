// The package as it is published: `npm run build` compiles src/ to dist/, and a package holding only what
// package.json's "files" names (bin/, dist/, policies/, …; no src/, no test/) runs its command without TypeScript
// and without tsx. Built into a temp folder, so the checkout's own dist/ is left alone.
import { execFileSync, spawnSync } from "node:child_process";
import {
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import t from "tap";
import { findTool, packagePath } from "../../src/util/tools.js";

const pkg = JSON.parse(readFileSync(packagePath("package.json"), "utf8")) as {
  version: string;
  files: string[];
};

t.test("a package of dist/ alone runs: --version, and samples through the compiled code", async (t) => {
  const dir = t.testdir();
  execFileSync(process.execPath, [packagePath("scripts", "build.mjs"), "--out", join(dir, "dist")], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  t.ok(existsSync(join(dir, "dist", "cli", "main.js")), "compiled");
  t.ok(existsSync(join(dir, "dist", "demo", "seed.sql")), "the files the code reads beside it are copied");
  for (const f of pkg.files) {
    if (f === "dist/") continue;
    cpSync(packagePath(f), join(dir, f), { recursive: true });
  }
  cpSync(packagePath("package.json"), join(dir, "package.json"));
  t.notOk(existsSync(join(dir, "src")), "no TypeScript sources in the package");
  // The dependencies, but not tsx: were anything to load it, the command would fail to start.
  mkdirSync(join(dir, "node_modules"));
  for (const name of readdirSync(packagePath("node_modules")))
    if (name !== "tsx" && name !== ".bin")
      symlinkSync(packagePath("node_modules", name), join(dir, "node_modules", name));

  const run = (args: string[]) =>
    spawnSync(process.execPath, [join(dir, "bin", "pamgate.js"), ...args], {
      cwd: dir,
      encoding: "utf8",
      env: { ...process.env, PAMGATE_OPA: findTool("opa") },
    });
  const version = run(["--version"]);
  t.equal(version.status, 0, version.stderr);
  t.equal(version.stdout, `pamgate ${pkg.version}\n`, "runs without tsx");

  const samples = run(["samples"]);
  t.equal(samples.status, 0, samples.stderr);
  t.match(samples.stdout, /block/, "the compiled gateway code evaluates the example policy");
});

t.test("in a checkout, dist/ runs only while it is newer than every source file", async (t) => {
  const dir = t.testdir();
  cpSync(packagePath("bin"), join(dir, "bin"), { recursive: true });
  cpSync(packagePath("src"), join(dir, "src"), { recursive: true });
  cpSync(packagePath("policies"), join(dir, "policies"), { recursive: true });
  cpSync(packagePath("package.json"), join(dir, "package.json"));
  symlinkSync(packagePath("node_modules"), join(dir, "node_modules"));
  // A stand-in for a build, recognisable by what it prints.
  mkdirSync(join(dir, "dist", "cli"), { recursive: true });
  writeFileSync(join(dir, "dist", "cli", "main.js"), 'process.stdout.write("ran dist\\n");\n');
  const stamp = join(dir, "dist", ".build-stamp");
  writeFileSync(stamp, "now\n");
  const later = new Date(Date.now() + 60_000);
  utimesSync(stamp, later, later);
  const run = (env: Record<string, string> = {}) =>
    spawnSync(process.execPath, [join(dir, "bin", "pamgate.js"), "--version"], {
      cwd: dir,
      encoding: "utf8",
      env: { ...process.env, ...env },
    });
  t.equal(run().stdout, "ran dist\n", "a current build is what runs");
  t.equal(
    run({ PAMGATE_RUN_SOURCES: "1" }).stdout,
    `pamgate ${pkg.version}\n`,
    "unless the sources are asked for",
  );
  const edited = new Date(Date.now() + 120_000);
  utimesSync(join(dir, "src", "util", "tools.ts"), edited, edited);
  t.equal(
    run().stdout,
    `pamgate ${pkg.version}\n`,
    "a source edited after the build: the sources run, not the stale build",
  );
});
