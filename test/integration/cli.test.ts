// The pamgate command as a user runs it: real processes, real opa, real git repositories in temp dirs.
import { execFileSync, spawnSync } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { cpSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import t, { type Test } from "tap";
import { readBundleArchive } from "../../src/bundles/archive.js";
import { packagePath } from "../../src/util/tools.js";
import { sampleInput } from "../helpers/bundles.js";

const BIN = packagePath("bin", "pamgate.js");

function pamgate(args: string[], cwd = packagePath()) {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd, encoding: "utf8" });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function git(cwd: string, ...args: string[]) {
  return execFileSync("git", ["-c", "user.email=t@example.com", "-c", "user.name=t", ...args], {
    cwd,
    encoding: "utf8",
  }).trim();
}

/** A git repository holding a copy of the example policies, committed once. */
function policyRepo(t: Test): string {
  const dir = t.testdir();
  cpSync(packagePath("policies"), join(dir, "policies"), { recursive: true });
  git(dir, "init", "-q");
  git(dir, "add", ".");
  git(dir, "commit", "-qm", "policies");
  return dir;
}

t.test("bundle build stamps the git commit, marks a dirty tree, and is byte-reproducible", async (t) => {
  const repo = policyRepo(t);
  const sha = git(repo, "rev-parse", "HEAD");
  const a = join(repo, "a.tar.gz");
  const b = join(repo, "b.tar.gz");
  const built = pamgate(["bundle", "build", "--policies", join(repo, "policies"), "-o", a]);
  t.equal(built.code, 0, built.stderr);
  t.match(built.stdout, `revision ${sha})`);
  t.equal(pamgate(["bundle", "build", "--policies", join(repo, "policies"), "-o", b]).code, 0);

  const filesA = await readBundleArchive(readFileSync(a));
  const filesB = await readBundleArchive(readFileSync(b));
  t.ok(
    filesA.get("/policy.wasm")?.equals(filesB.get("/policy.wasm") as Buffer),
    "policy.wasm is byte-identical",
  );
  t.ok(readFileSync(a).equals(readFileSync(b)), "the whole archive is byte-identical");
  t.equal(JSON.parse(filesA.get("/.manifest")?.toString() ?? "{}").revision, sha);

  writeFileSync(join(repo, "policies", "pamgate", "main.rego"), "\n# local edit\n", { flag: "a" });
  const dirty = pamgate(["bundle", "build", "--policies", join(repo, "policies"), "-o", a]);
  t.match(dirty.stdout, `revision ${sha}-dirty)`);

  const explicit = pamgate([
    "bundle",
    "build",
    "--policies",
    join(repo, "policies"),
    "-o",
    a,
    "--revision",
    "v1.2.3",
  ]);
  t.match(explicit.stdout, "revision v1.2.3)");
});

t.test("bundle build reports OPA's own error for a broken policy", async (t) => {
  const dir = t.testdir({
    policies: {
      "main.rego": "package pamgate.main\n\nverdict := {\n",
    },
  });
  const r = pamgate(["bundle", "build", "--policies", join(dir, "policies"), "-o", join(dir, "x.tar.gz")]);
  t.equal(r.code, 1);
  t.match(r.stderr, /opa build failed for .*policies/);
  t.match(r.stderr, /rego_parse_error/);
  t.notMatch(r.stderr, /\n\s+at /, "no stack trace");
});

t.test("signed bundles: build with a key, inspect verifies, a wrong key is named", async (t) => {
  const dir = t.testdir();
  const key = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const other = generateKeyPairSync("rsa", { modulusLength: 2048 });
  writeFileSync(join(dir, "private.pem"), key.privateKey.export({ type: "pkcs8", format: "pem" }));
  writeFileSync(join(dir, "public.pem"), key.publicKey.export({ type: "spki", format: "pem" }));
  writeFileSync(join(dir, "other.pem"), other.publicKey.export({ type: "spki", format: "pem" }));
  const bundle = join(dir, "signed.tar.gz");
  const build = pamgate([
    "bundle",
    "build",
    "-o",
    bundle,
    "--signing-key",
    join(dir, "private.pem"),
    "--revision",
    "r1",
  ]);
  t.equal(build.code, 0, build.stderr);

  const unverified = pamgate(["bundle", "inspect", bundle]);
  t.equal(unverified.code, 0, unverified.stderr);
  t.match(unverified.stdout, /revision\s+r1/);
  t.match(unverified.stdout, /entrypoints\s+pamgate\/main\/verdict, system\/log\/mask/);
  t.match(unverified.stdout, /signature\s+present, not verified/);
  t.match(unverified.stdout, /\/policy\.wasm/);

  const verified = pamgate(["bundle", "inspect", bundle, "--verification-key", join(dir, "public.pem")]);
  t.equal(verified.code, 0, verified.stderr);
  t.match(verified.stdout, /signature\s+verified/);

  const wrong = pamgate(["bundle", "inspect", bundle, "--verification-key", join(dir, "other.pem")]);
  t.equal(wrong.code, 1);
  t.match(wrong.stderr, /signature does not verify/);

  const json = pamgate(["bundle", "inspect", bundle, "--format", "json"]);
  t.equal(JSON.parse(json.stdout).revision, "r1");
});

t.test("eval prints the decision for an input file and rejects a bad one by name", async (t) => {
  const input = sampleInput();
  const dir = t.testdir({
    "input.json": JSON.stringify({ ...input, now: { rfc3339: input.now.rfc3339 } }),
    "no-identity.json": JSON.stringify({ ...input, identity: undefined, now: undefined }),
    "broken.json": "{",
  });
  const bundle = join(dir, "b.tar.gz");
  t.equal(pamgate(["bundle", "build", "-o", bundle, "--revision", "eval-rev"]).code, 0);

  const ok = pamgate(["eval", "--input", join(dir, "input.json"), "--bundle", bundle]);
  t.equal(ok.code, 0, ok.stderr);
  const decision = JSON.parse(ok.stdout);
  t.equal(decision.revision, "eval-rev");
  t.equal(decision.verdict.action, "allow");
  t.match(decision.decision_id, /^[0-9a-f-]{36}$/);

  const missing = pamgate(["eval", "--input", join(dir, "no-identity.json"), "--bundle", bundle]);
  t.equal(missing.code, 2);
  t.match(
    missing.stderr,
    /does not follow the policy contract: \(root\) must have required property 'identity'/,
  );

  const broken = pamgate(["eval", "--input", join(dir, "broken.json"), "--bundle", bundle]);
  t.equal(broken.code, 2);
  t.match(broken.stderr, /broken\.json: .*JSON/);

  const noFlag = pamgate(["eval"]);
  t.equal(noFlag.code, 2);
  t.match(noFlag.stderr, /--input FILE is required/);

  const unknown = pamgate(["frobnicate"]);
  t.equal(unknown.code, 2);
  t.match(unknown.stderr, /unknown command "frobnicate"/);
});

t.test("policy test fails, naming the fixture, when wasm, Rego and the expectation disagree", async (t) => {
  const fixture = JSON.parse(
    readFileSync(join(packagePath("test", "policies", "fixtures"), "pg-ddl-approve.json"), "utf8"),
  );
  fixture.expected = { ...fixture.expected, action: "allow" };
  const dir = t.testdir({ fixtures: { "wrong.json": JSON.stringify(fixture) } });
  const r = pamgate(["policy", "test", "--fixtures", join(dir, "fixtures")]);
  t.equal(r.code, 1);
  t.match(r.stdout, /FAIL\s+wasm conformance\s+0 of 1 fixtures agree/);
  t.match(r.stdout, /wrong\.json/);
  t.match(r.stdout, /opa eval gave .*"action":"approve"/);
  t.match(r.stdout, /policy\.wasm gave .*"action":"approve"/);
  t.match(r.stdout, /ok\s+opa test/);
});

t.test("samples shows all four verdicts", async (t) => {
  const r = pamgate(["samples"]);
  t.equal(r.code, 0, r.stderr);
  for (const action of ["ALLOW", "MASK", "BLOCK", "APPROVE"]) t.match(r.stdout, `→ ${action}`);
  t.match(r.stdout, /ci-bot for alice/);
});
