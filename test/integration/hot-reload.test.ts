// Hot-loading with real files, real chokidar events and real opa builds: a new bundle file becomes active, a bad
// one is rejected while the last good policy keeps answering, and evaluations never fail during a swap.
import { rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import t from "tap";
import { FileBundleSource, PolicyFolderSource } from "../../src/bundles/file-source.js";
import { HttpBundleSource } from "../../src/bundles/http-source.js";
import { BundleManager } from "../../src/bundles/manager.js";
import { DecisionEngine } from "../../src/decision/engine.js";
import { sampleInput, verdictPolicy } from "../helpers/bundles.js";

const verdictFor = (action: string, code: string) =>
  `{"action": "${action}", "reasons": [{"code": "${code}", "message": "${code}"}], "mask": [], "approval": null}`;

/** Replaces a file the way deploy tools should: write aside, then rename over it. */
async function replaceAtomically(path: string, content: Buffer | string) {
  await writeFile(`${path}.tmp`, content);
  await rename(`${path}.tmp`, path);
}

function waitFor<T>(what: string, check: () => T | undefined, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const tick = () => {
      const v = check();
      if (v !== undefined && v !== false) return resolve(v);
      if (Date.now() > deadline) return reject(new Error(`timed out waiting for ${what}`));
      setTimeout(tick, 5);
    };
    tick();
  });
}

t.test("watching a bundle file: swap on change, reject bad bundles, keep answering", async (t) => {
  const dir = t.testdir();
  const path = join(dir, "bundle.tar.gz");
  const v1 = verdictPolicy(verdictFor("allow", "rev.one"), "rev-1");
  const v2 = verdictPolicy(verdictFor("block", "rev.two"), "rev-2");
  await writeFile(path, v1);

  const engine = new DecisionEngine();
  const loads: Array<{ ok: boolean; error?: string }> = [];
  const manager = new BundleManager(engine, { onLoad: (r) => loads.push(r) });
  t.teardown(() => manager.close());
  const source = new FileBundleSource({ path });
  await manager.addSource(source);
  t.equal(engine.revision, "rev-1", "initial load succeeds");
  t.match(source.status(), { state: "ok", details: { revision: "rev-1" } });

  await replaceAtomically(path, v2);
  await waitFor("rev-2", () => engine.revision === "rev-2");
  t.equal(engine.evaluate(sampleInput()).verdict.reasons[0]?.code, "rev.two");

  const before = loads.length;
  await replaceAtomically(path, "this is not a bundle");
  await waitFor("rejection", () => loads.length > before);
  t.equal(engine.revision, "rev-2", "the last good bundle stays active");
  t.match(loads.at(-1)?.error, /rejected: bundle is not a valid gzip archive/);
  t.match(engine.status().last_error?.message, /not a valid gzip archive/);
  t.equal(engine.evaluate(sampleInput()).verdict.reasons[0]?.code, "rev.two", "and keeps answering");
  t.match(source.status(), { state: "warn", message: /revision rev-2 stays active.*not a valid gzip/ });
  t.match(engine.componentStatus(), { state: "warn", message: /revision rev-2 stays active/ });

  await replaceAtomically(path, v1);
  await waitFor("rev-1 again", () => engine.revision === "rev-1");
  t.equal(source.status().state, "ok");
});

t.test("a missing bundle file at start leaves the engine failing closed", async (t) => {
  const engine = new DecisionEngine();
  const manager = new BundleManager(engine);
  t.teardown(() => manager.close());
  t.equal(await manager.loadFile(join(t.testdir(), "absent.tar.gz")), false);
  const d = engine.evaluate(sampleInput());
  t.equal(d.verdict.reasons[0]?.code, "engine.no_bundle");
  t.match(engine.status().last_error?.message, /cannot be read/);
  t.match(engine.componentStatus(), {
    state: "not_ready",
    message: /no policy bundle is loaded.*cannot be read/,
  });

  const watched = new FileBundleSource({ path: join(t.testdir(), "absent.tar.gz") });
  await manager.addSource(watched);
  t.match(watched.status(), {
    state: "error",
    message: /no bundle was activated: bundle file .* cannot be read/,
  });
});

t.test("no failed evaluation while bundles are swapped under load", async (t) => {
  const dir = t.testdir();
  const path = join(dir, "bundle.tar.gz");
  const bundles = [
    verdictPolicy(verdictFor("allow", "swap.a"), "a"),
    verdictPolicy(verdictFor("allow", "swap.b"), "b"),
  ];
  await writeFile(path, bundles[0] as Buffer);
  const engine = new DecisionEngine();
  const manager = new BundleManager(engine);
  t.teardown(() => manager.close());
  await manager.addSource(new FileBundleSource({ path }));

  let evaluations = 0;
  let failures = 0;
  let running = true;
  const load = (async () => {
    while (running) {
      for (let i = 0; i < 50; i++) {
        const d = engine.evaluate(sampleInput());
        evaluations++;
        if (d.verdict.action !== "allow") failures++;
      }
      await new Promise((r) => setImmediate(r));
    }
  })();
  for (let i = 1; i <= 20; i++) {
    const next = bundles[i % 2] as Buffer;
    const revision = i % 2 === 0 ? "a" : "b";
    await replaceAtomically(path, next);
    await waitFor(`swap ${i}`, () => engine.revision === revision);
  }
  running = false;
  await load;
  t.ok(evaluations > 0, `${evaluations} evaluations ran during 20 swaps`);
  t.equal(failures, 0, "none of them failed");
});

t.test("development mode: a policy folder is rebuilt with opa on change", async (t) => {
  const dir = t.testdir({
    "main.rego": `package pamgate.main\n\nverdict := ${verdictFor("allow", "dev.one")}\n`,
  });
  const engine = new DecisionEngine();
  const errors: string[] = [];
  const manager = new BundleManager(engine, { onLoad: (r) => r.error && errors.push(r.error) });
  t.teardown(() => manager.close());
  // Built with the project's restricted capabilities (the default), and only the verdict entrypoint.
  const source = new PolicyFolderSource({
    build: { policies: dir, revision: "dev", entrypoints: ["pamgate/main/verdict"] },
  });
  await manager.addSource(source);
  t.equal(source.status().state, "ok");
  t.equal(engine.evaluate(sampleInput()).verdict.reasons[0]?.code, "dev.one");

  await writeFile(
    join(dir, "main.rego"),
    `package pamgate.main\n\nverdict := ${verdictFor("allow", "dev.two")}\n`,
  );
  await waitFor(
    "rebuilt policy",
    () => engine.evaluate(sampleInput()).verdict.reasons[0]?.code === "dev.two",
  );

  await writeFile(join(dir, "main.rego"), `package pamgate.main\n\nverdict := {{{\n`);
  await waitFor("build error", () => errors.length > 0);
  t.match(errors.at(-1), /opa build failed.*rego_parse_error/s);
  t.match(source.status(), { state: "warn", message: /revision dev stays active.*rego_parse_error/s });
  t.equal(
    engine.evaluate(sampleInput()).verdict.reasons[0]?.code,
    "dev.two",
    "the last good policy keeps answering",
  );

  await writeFile(
    join(dir, "main.rego"),
    `package pamgate.main\n\nverdict := {"action": "allow", "reasons": [{"code": "dev.t", "message": sprintf("%d", [time.now_ns()])}]}\n`,
  );
  await waitFor("capability error", () => errors.some((e) => /time\.now_ns/.test(e)));
  t.match(errors.at(-1), /time\.now_ns/, "an unsupported builtin fails the build, not production");
});

t.test("HTTP bundle server: polled with ETag, new bundle activated, a bad one rejected", async (t) => {
  const { createServer } = await import("node:http");
  let current = { etag: '"v1"', body: verdictPolicy(verdictFor("allow", "http.one"), "http-1") };
  const seen: Array<string | undefined> = [];
  const server = createServer((req, res) => {
    seen.push(req.headers["if-none-match"]);
    if (req.headers["if-none-match"] === current.etag) {
      res.writeHead(304).end();
      return;
    }
    res.writeHead(200, { etag: current.etag, "content-type": "application/gzip" }).end(current.body);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const { port } = server.address() as { port: number };

  const engine = new DecisionEngine();
  const manager = new BundleManager(engine);
  t.teardown(() => manager.close());
  const source = new HttpBundleSource({
    url: `http://127.0.0.1:${port}/bundles/pamgate.tar.gz`,
    minDelayMs: 20,
    maxDelayMs: 40,
  });
  await manager.addSource(source);
  t.equal(engine.revision, "http-1", "start() waits for the first poll");
  t.match(source.status(), { state: "ok", message: /bundle rev http-1 from http:/ });
  await waitFor("a conditional poll", () => seen.includes('"v1"'));

  current = { etag: '"v2"', body: verdictPolicy(verdictFor("allow", "http.two"), "http-2") };
  await waitFor("second bundle", () => engine.revision === "http-2");
  t.equal(engine.evaluate(sampleInput()).verdict.reasons[0]?.code, "http.two");

  current = { etag: '"v3"', body: Buffer.from("garbage") };
  await waitFor("rejection", () => engine.status().last_error !== null);
  t.match(engine.status().last_error?.message, /not a valid gzip archive/);
  t.equal(engine.revision, "http-2", "the last good bundle stays active");
  await waitFor("the source's warning", () => source.status().state === "warn");
  t.match(source.status().message, /serving bundle rev http-2; the server's bundle was rejected: .*gzip/);
  await manager.close();
});

t.test("with verification on, only bundles signed with the configured key become active", async (t) => {
  const { generateKeyPairSync } = await import("node:crypto");
  const { buildBundle } = await import("../../src/bundles/build.js");
  const dir = t.testdir({
    policies: { "main.rego": `package pamgate.main\n\nverdict := ${verdictFor("allow", "signed.ok")}\n` },
  });
  const key = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const other = generateKeyPairSync("ec", { namedCurve: "P-256" });
  await writeFile(join(dir, "key.pem"), key.privateKey.export({ type: "pkcs8", format: "pem" }));
  await writeFile(join(dir, "other.pem"), other.privateKey.export({ type: "pkcs8", format: "pem" }));
  const build = (output: string, signingKey?: string) =>
    buildBundle({
      policies: join(dir, "policies"),
      output: join(dir, output),
      revision: output,
      entrypoints: ["pamgate/main/verdict"],
      signingKey: signingKey && join(dir, signingKey),
      signingAlg: signingKey && "ES256",
    });
  await build("signed.tar.gz", "key.pem");
  await build("unsigned.tar.gz");
  await build("wrong-key.tar.gz", "other.pem");

  const engine = new DecisionEngine();
  const errors: string[] = [];
  const manager = new BundleManager(engine, {
    verification: {
      key: key.publicKey.export({ type: "spki", format: "pem" }).toString(),
      algorithm: "ES256",
    },
    onLoad: (r) => r.error && errors.push(r.error),
  });
  t.equal(await manager.loadFile(join(dir, "signed.tar.gz")), true);
  t.equal(engine.revision, "signed.tar.gz");
  t.equal(await manager.loadFile(join(dir, "unsigned.tar.gz")), false);
  t.match(errors.at(-1), /not signed/);
  t.equal(await manager.loadFile(join(dir, "wrong-key.tar.gz")), false);
  t.match(errors.at(-1), /signature does not verify/);
  t.equal(engine.revision, "signed.tar.gz", "the verified bundle stays active");
});

t.test(
  "replaceSources (a configuration reload): a new source takes over; one that brings nothing is reported",
  async (t) => {
    const dir = t.testdir();
    const a = join(dir, "a.tar.gz");
    const b = join(dir, "b.tar.gz");
    await writeFile(a, verdictPolicy(verdictFor("allow", "rev.one"), "rev-1"));
    await writeFile(b, verdictPolicy(verdictFor("block", "rev.two"), "rev-2"));
    const engine = new DecisionEngine();
    const manager = new BundleManager(engine);
    t.teardown(() => manager.close());
    await manager.addSource(new FileBundleSource({ path: a }));
    t.equal(engine.revision, "rev-1");

    t.same(await manager.replaceSources([new FileBundleSource({ path: b })], undefined), { ok: true });
    t.equal(engine.revision, "rev-2", "the new source's bundle is active");
    await replaceAtomically(a, verdictPolicy(verdictFor("allow", "rev.three"), "rev-3"));
    await new Promise((r) => setTimeout(r, 300));
    t.equal(engine.revision, "rev-2", "the old source no longer loads anything");

    const missing = await manager.replaceSources(
      [new FileBundleSource({ path: join(dir, "none.tar.gz") })],
      undefined,
    );
    t.match(missing, { ok: false, error: /none\.tar\.gz cannot be read/ });
    t.equal(engine.revision, "rev-2", "the active policy never changed");
    t.same(
      await manager.replaceSources([new FileBundleSource({ path: b })], undefined),
      { ok: true },
      "and a source like the previous one can be put back",
    );
    t.same(
      manager.sources.map((s) => s.status().state),
      ["ok"],
    );
  },
);
