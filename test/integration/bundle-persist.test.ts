// The last good HTTP bundle survives a restart while the bundle server is down: a real gateway (embedded store,
// development issuer, control-plane API) polls a real HTTP bundle server on loopback for a signed bundle,
// persists it, is restarted after the server has stopped, and starts on the persisted copy — verified like any
// bundle, so a copy that no longer verifies is refused. When the server is back the source catches up.
import { generateKeyPairSync } from "node:crypto";
import { once } from "node:events";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import t from "tap";
import { buildBundle } from "../../src/bundles/build.js";
import { BundleCache } from "../../src/bundles/bundle-cache.js";
import type { GatewayConfig } from "../../src/config/schema.js";
import { type Gateway, startGateway } from "../../src/gateway/gateway.js";

const verdict = (code: string) =>
  `package pamgate.main\n\nverdict := {"action": "allow", "reasons": [{"code": "${code}", "message": "${code}"}], "mask": [], "approval": null}\n`;

async function waitFor(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** What /readyz and /v1/status answer, as far as these tests look. */
interface StatusBody {
  reasons?: string[];
  components: Record<string, { state: string; message?: string; details?: Record<string, unknown> }>;
  [key: string]: unknown;
}

/** A bundle server for one archive at a time, with ETags. */
async function bundleServer(bundle: { body: Buffer; etag: string }, port = 0): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.headers["if-none-match"] === bundle.etag) return void res.writeHead(304).end();
    res.writeHead(200, { etag: bundle.etag, "content-type": "application/gzip" }).end(bundle.body);
  });
  server.listen(port, "127.0.0.1");
  await once(server, "listening");
  return server;
}

async function stopServer(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
}

t.test("a restart while the bundle server is down starts on the persisted bundle", async (t) => {
  const dir = t.testdir({ policies: { one: { "main.rego": verdict("persist.one") } } });
  const key = generateKeyPairSync("ec", { namedCurve: "P-256" });
  await writeFile(join(dir, "key.pem"), key.privateKey.export({ type: "pkcs8", format: "pem" }));
  await writeFile(join(dir, "pub.pem"), key.publicKey.export({ type: "spki", format: "pem" }));
  const build = async (name: string, revision: string, signed: boolean) => {
    const output = join(dir, `${name}.tar.gz`);
    await buildBundle({
      policies: join(dir, "policies", "one"),
      output,
      revision,
      entrypoints: ["pamgate/main/verdict"],
      signingKey: signed ? join(dir, "key.pem") : undefined,
      signingAlg: signed ? "ES256" : undefined,
    });
    return readFile(output);
  };
  const bundle = { body: await build("one", "persist-1", true), etag: '"one"' };
  let server = await bundleServer(bundle);
  const { port } = server.address() as AddressInfo;
  t.teardown(() => stopServer(server));
  const url = `http://127.0.0.1:${port}/bundles/pamgate.tar.gz`;

  const storeDir = join(dir, "store");
  const config: GatewayConfig = {
    listeners: { api: { host: "127.0.0.1", port: 0 } },
    // No cache_dir: with an embedded store it defaults to <store dir>/bundle-cache.
    policy: { url, verification: { key_file: join(dir, "pub.pem"), algorithm: "ES256" } },
    identity: { dev_issuer: {} },
    resources: [],
    store: { type: "embedded", dir: storeDir },
  };
  const extras = { devUsers: { alice: { groups: ["engineering"] } } };
  const api = async (gw: Gateway, path: string, token?: string) => {
    const res = await fetch(`http://127.0.0.1:${gw.api?.port}${path}`, {
      headers: token ? { authorization: `Bearer ${token}` } : {},
    });
    return { status: res.status, body: (await res.json()) as StatusBody };
  };

  // 1. The server is up: its bundle is activated and persisted.
  let gw = await startGateway(config, extras);
  t.equal(gw.engine.revision, "persist-1", "the first start waits for the server's bundle");
  t.match(gw.status.get("bundle:http"), { state: "ok", message: `bundle rev persist-1 from ${url}` });
  const cacheDir = join(storeDir, "bundle-cache");
  const cached = new BundleCache(cacheDir, url);
  t.same(await readFile(cached.path), bundle.body, "the archive is persisted as downloaded");
  t.same(
    (await readdir(cacheDir)).filter((f) => f.endsWith(".tmp")),
    [],
    "no temporary file is left behind",
  );
  t.equal((await api(gw, "/readyz")).status, 200);
  await gw.close();

  // 2. The server is down: the restart starts on the persisted copy, and says so.
  await stopServer(server);
  gw = await startGateway(config, extras);
  t.equal(gw.engine.revision, "persist-1", "started on the persisted bundle");
  const source = gw.status.get("bundle:http");
  t.equal(source?.state, "warn");
  t.match(
    source?.message,
    new RegExp(
      `^serving persisted bundle rev persist-1; bundle server unreachable: GET ${url} failed: connect ECONNREFUSED`,
    ),
  );
  const ready = await api(gw, "/readyz");
  t.equal(ready.status, 200, "a warning does not make the gateway unready");
  t.match(ready.body.components["bundle:http"], { state: "warn", message: /serving persisted bundle/ });
  t.notOk(ready.body.components["bundle:http"]?.details, "no details without a token");
  const token = await (gw.devIssuer as NonNullable<Gateway["devIssuer"]>).tokenFor("alice");
  const full = await api(gw, "/v1/status", token);
  t.equal(full.status, 200);
  t.match(full.body, {
    state: "warn",
    ready: true,
    components: {
      engine: { state: "ok", details: { revision: "persist-1" } },
      "bundle:http": { state: "warn", details: { persisted: true, cache_file: cached.path } },
      store: { state: "ok" },
      "identity.verifier": { state: "ok" },
    },
  });
  t.match(gw.engine.status().source, `${cached.path} (persisted from ${url})`);

  // 3. The server comes back with a new bundle: the source catches up and the warning clears.
  bundle.body = await build("two", "persist-2", true);
  bundle.etag = '"two"';
  server = await bundleServer(bundle, port);
  await waitFor("the server's bundle", () => gw.engine.revision === "persist-2");
  await waitFor("the source to be ok", () => gw.status.get("bundle:http")?.state === "ok");
  t.same(await readFile(cached.path), bundle.body, "the new bundle replaced the persisted one");
  await gw.close();

  // 4. A persisted copy is verified like any bundle: an unsigned one is refused, and the gateway is not ready.
  await stopServer(server);
  await writeFile(cached.path, await build("unsigned", "tampered", false));
  gw = await startGateway(config, extras);
  t.teardown(() => gw.close());
  t.equal(gw.engine.revision, null, "nothing unverified was activated");
  const refused = gw.status.get("bundle:http");
  t.equal(refused?.state, "error");
  t.match(
    refused?.message,
    /^no bundle from .*bundle server unreachable: .*ECONNREFUSED.*; the persisted bundle was rejected: .*not signed/,
  );
  const unready = await api(gw, "/readyz");
  t.equal(unready.status, 503);
  t.match(unready.body.reasons, [/no policy bundle is loaded/, /the persisted bundle was rejected/]);
});

t.test("without a cache directory nothing is persisted, and the status says so", async (t) => {
  const { HttpBundleSource } = await import("../../src/bundles/http-source.js");
  const { BundleManager } = await import("../../src/bundles/manager.js");
  const { DecisionEngine } = await import("../../src/decision/engine.js");
  const { freePort } = await import("../helpers/postgres.js");
  const manager = new BundleManager(new DecisionEngine());
  t.teardown(() => manager.close());
  const source = new HttpBundleSource({ url: `http://127.0.0.1:${await freePort()}/b.tar.gz` });
  await manager.addSource(source);
  t.match(source.status(), {
    state: "error",
    message:
      /bundle server unreachable: .*ECONNREFUSED.*; no bundle is persisted \(no cache directory configured\)/,
  });
});
