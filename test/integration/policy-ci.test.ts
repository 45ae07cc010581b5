// The policy-repository CI template (examples/policy-repo): its ci.sh run for real on a copy in a temp git
// repository, with this checkout's opa and pamgate. A good commit is checked, built, signed and published; the
// published bundle names the commit, its signature verifies with the public key, and pamgate's bundle manager —
// what a gateway runs — activates it with verification on and decides as the fixtures say. A syntax error, a
// failing unit test, low coverage, a disagreeing fixture, an uncommitted tree and an unsigned publish each make
// ci.sh fail with the step named.
import { execFileSync, spawnSync } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { cpSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import t, { type Test } from "tap";
import { readBundleArchive } from "../../src/bundles/archive.js";
import { readManifest } from "../../src/bundles/bundle.js";
import { BundleManager } from "../../src/bundles/manager.js";
import { verifyBundleSignature } from "../../src/bundles/signing.js";
import { nowFromRfc3339, type PolicyInput } from "../../src/decision/contract.js";
import { DecisionEngine } from "../../src/decision/engine.js";
import { findTool, packagePath } from "../../src/util/tools.js";

// Real processes, several runs of the pamgate command (through tsx in a checkout): slow on a busy 2-core machine.
t.setTimeout(15 * 60_000);

const EXAMPLE = packagePath("examples", "policy-repo");

function git(cwd: string, ...args: string[]): string {
  return execFileSync("git", ["-c", "user.email=ci@example.com", "-c", "user.name=ci", ...args], {
    cwd,
    encoding: "utf8",
  }).trim();
}

interface Repo {
  dir: string;
  privateKey: string;
  publicKey: string;
  published: string;
}

/** A copy of the example in a fresh git repository, with a signing key pair (the public half committed). */
function policyRepo(t: Test): Repo {
  const root = t.testdir();
  const dir = join(root, "repo");
  cpSync(EXAMPLE, dir, { recursive: true });
  const pair = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const privateKey = join(root, "bundle-signing.pem"); // outside the repository, as a CI secret is
  writeFileSync(privateKey, pair.privateKey.export({ type: "pkcs8", format: "pem" }));
  const publicKey = join(dir, "keys", "bundle-signing.pub.pem");
  writeFileSync(publicKey, pair.publicKey.export({ type: "spki", format: "pem" }));
  git(dir, "init", "-q");
  git(dir, "add", ".");
  git(dir, "commit", "-qm", "policies");
  return { dir, privateKey, publicKey, published: join(root, "published") };
}

function ci(repo: Repo, env: Record<string, string> = {}) {
  const r = spawnSync("bash", [join(repo.dir, "ci.sh")], {
    cwd: repo.dir,
    encoding: "utf8",
    env: {
      ...process.env,
      OPA: findTool("opa"),
      PAMGATE: `${process.execPath} ${packagePath("bin", "pamgate.js")}`,
      SIGNING_KEY_FILE: repo.privateKey,
      PUBLISH_DIR: repo.published,
      ...env,
    },
  });
  return { code: r.status, out: `${r.stdout}${r.stderr}`, stderr: r.stderr };
}

/** Changes a file in the repository and commits it. */
function commit(repo: Repo, file: string, change: (text: string) => string): void {
  const path = join(repo.dir, file);
  writeFileSync(path, change(existsSync(path) ? readFileSync(path, "utf8") : ""));
  git(repo.dir, "add", ".");
  git(repo.dir, "commit", "-qm", `change ${file}`);
}

t.test("the example's capabilities.json is pamgate's own", async (t) => {
  t.equal(
    readFileSync(join(EXAMPLE, "capabilities.json"), "utf8"),
    readFileSync(packagePath("policies", "capabilities.json"), "utf8"),
    "scripts/gen-capabilities.mjs writes both",
  );
});

t.test("a good commit is checked, built, signed, verified and published; a gateway loads it", async (t) => {
  const repo = policyRepo(t);
  const sha = git(repo.dir, "rev-parse", "HEAD");
  const r = ci(repo);
  t.equal(r.code, 0, r.out);
  for (const step of [
    "preflight",
    "opa fmt",
    "opa check --strict",
    "opa test",
    "coverage",
    "conformance (pamgate policy test)",
    "build + sign",
    "verify",
    "publish",
  ])
    t.match(r.out, `==> ${step}\n`, `step ${step} ran`);
  t.match(r.out, /PASS: 9\/9/, "the unit tests");
  t.match(r.out, /100% \(minimum 90%\)/, "the coverage");
  t.match(r.out, /wasm conformance\s+3 of 3 fixtures agree/, "the wasm conformance");
  t.match(r.out, /signature: verified/);
  t.match(r.out, `ci.sh: ok — build/pamgate.tar.gz, revision ${sha}`);

  const published = join(repo.published, "pamgate.tar.gz");
  t.ok(existsSync(join(repo.published, `pamgate-${sha}.tar.gz`)), "also published under its commit");
  const archive = readFileSync(published);
  const files = await readBundleArchive(archive);
  t.equal(readManifest(files).revision, sha, "the bundle's revision is the commit");
  const verified = await verifyBundleSignature(files, { key: readFileSync(repo.publicKey, "utf8") });
  t.ok(verified.files > 0, "the signature verifies with the public key");
  const other = generateKeyPairSync("rsa", { modulusLength: 2048 }).publicKey.export({
    type: "spki",
    format: "pem",
  });
  await t.rejects(
    verifyBundleSignature(files, { key: other.toString() }),
    /signature/,
    "and not with another key",
  );

  // What a gateway does with policy.bundle + policy.verification: the bundle manager verifies and activates it.
  const engine = new DecisionEngine();
  const manager = new BundleManager(engine, { verification: { key: readFileSync(repo.publicKey, "utf8") } });
  t.equal(await manager.loadFile(published), true, "pamgate's loader accepts it with verification on");
  t.equal(engine.revision, sha);
  const fixture = JSON.parse(
    readFileSync(join(EXAMPLE, "tests", "fixtures", "pg-read-pii-mask.json"), "utf8"),
  );
  const input = { ...fixture.input, now: nowFromRfc3339(fixture.input.now.rfc3339) } as PolicyInput;
  t.same(engine.evaluate(input).verdict, fixture.expected, "and decides as the fixture expects");
  await manager.close();
});

t.test("a syntax error fails at the first step that parses Rego, with OPA's message", async (t) => {
  const repo = policyRepo(t);
  commit(repo, "policies/pamgate/main.rego", (s) => `${s}\nbroken := {\n`);
  const r = ci(repo);
  t.equal(r.code, 1);
  t.match(r.stderr, /ci\.sh: FAILED at "opa fmt": opa fmt cannot parse the policies/);
  t.match(r.out, /rego_parse_error/, "OPA's own message");
  t.notOk(existsSync(repo.published), "nothing is published");
});

t.test("a builtin the wasm target lacks fails at opa check", async (t) => {
  const repo = policyRepo(t);
  commit(repo, "policies/pamgate/clock.rego", () => "package pamgate.clock\n\nnow_ns := time.now_ns()\n");
  const r = ci(repo);
  t.equal(r.code, 1);
  t.match(r.stderr, 'ci.sh: FAILED at "opa check --strict": opa check --strict found errors');
  t.match(r.out, /undefined function time\.now_ns/);
});

t.test("a failing unit test fails at opa test, naming the test", async (t) => {
  const repo = policyRepo(t);
  commit(repo, "tests/main_test.rego", (s) =>
    s.replace(
      'v.action == "block"\n\tv.reasons[0].code == "example.production_write"',
      'v.action == "allow"',
    ),
  );
  const r = ci(repo);
  t.equal(r.code, 1, r.out);
  t.match(r.stderr, 'ci.sh: FAILED at "opa test": unit tests failed');
  t.match(r.out, /test_production_write_is_blocked: FAIL/);
});

t.test("coverage below the minimum fails, naming the lines no test reaches", async (t) => {
  const repo = policyRepo(t);
  commit(
    repo,
    "policies/pamgate/untested.rego",
    () =>
      "package pamgate.untested\n\nbig(x) if {\n\tx > 100\n\tx < 1000\n}\n\nsmall(x) if {\n\tx < 10\n\tx > 0\n}\n\nmedium(x) if {\n\tnot big(x)\n\tnot small(x)\n}\n",
  );
  const r = ci(repo, { MIN_COVERAGE: "95" });
  t.equal(r.code, 1, r.out);
  t.match(r.stderr, /ci\.sh: FAILED at "coverage": coverage [\d.]+% is below the minimum 95%/);
  t.match(r.stderr, /policies\/pamgate\/untested\.rego: lines \d+-\d+/);
});

t.test("a fixture the policy disagrees with fails at conformance", async (t) => {
  const repo = policyRepo(t);
  commit(repo, "tests/fixtures/pg-production-write-block.json", (s) =>
    s.replace('"action": "block"', '"action": "allow"'),
  );
  const r = ci(repo);
  t.equal(r.code, 1, r.out);
  t.match(r.stderr, 'ci.sh: FAILED at "conformance (pamgate policy test)"');
  t.match(r.out, /FAIL\s+wasm conformance\s+2 of 3 fixtures agree/);
});

t.test("an uncommitted tree and an unsigned publish are refused", async (t) => {
  const repo = policyRepo(t);
  writeFileSync(
    join(repo.dir, "policies", "data.json"),
    readFileSync(join(repo.dir, "policies", "data.json")),
  );
  writeFileSync(join(repo.dir, "notes.txt"), "work in progress\n");
  const dirty = ci(repo);
  t.equal(dirty.code, 1);
  t.match(dirty.stderr, 'ci.sh: FAILED at "preflight": uncommitted changes');

  git(repo.dir, "add", ".");
  git(repo.dir, "commit", "-qm", "notes");
  const unsigned = ci(repo, { SIGNING_KEY_FILE: "" });
  t.equal(unsigned.code, 1);
  t.match(unsigned.stderr, 'ci.sh: FAILED at "build + sign": refusing to publish an unsigned bundle');

  const pr = ci(repo, { SIGNING_KEY_FILE: "", PUBLISH_DIR: "" });
  t.equal(pr.code, 0, `a pull request's run: checks and an unsigned build, nothing published\n${pr.out}`);
  t.match(pr.out, /publish\nskipped/);
});
