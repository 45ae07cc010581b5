// The HTTP bundle source's poller (BundlePoller) against a real node:http server that speaks the OPA bundle service protocol.
import { once } from "node:events";
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import tap from "tap";
import {
  BundleDownloadError,
  BundlePoller,
  type BundlePollerOptions,
  nextPollDelay,
} from "../../src/bundles/http-poller.js";

/** A bundle server whose answers the tests change as they go. */
interface FakeServer {
  url: string;
  requests: IncomingHttpHeaders[];
  bundle: { body: Buffer; etag: string };
  /** Overrides the normal answer (e.g. to send a 500 or stall). */
  handler?: (res: ServerResponse) => void;
  /** Send the body in chunks without Content-Length. */
  chunked: boolean;
}

async function startServer(t: Pick<typeof tap, "teardown">): Promise<FakeServer> {
  const state: FakeServer = {
    url: "",
    requests: [],
    bundle: { body: Buffer.from("bundle-v1"), etag: '"v1"' },
    chunked: false,
  };
  const server: Server = createServer((req, res) => {
    state.requests.push(req.headers);
    if (state.handler) return state.handler(res);
    if (req.headers["if-none-match"] === state.bundle.etag) {
      res.writeHead(304, { etag: state.bundle.etag }).end();
      return;
    }
    const { body, etag } = state.bundle;
    if (state.chunked) {
      res.writeHead(200, { etag, "content-type": "application/gzip" });
      for (let i = 0; i < body.length; i += 1024) res.write(body.subarray(i, i + 1024));
      res.end();
    } else {
      res
        .writeHead(200, { etag, "content-type": "application/gzip", "content-length": body.length })
        .end(body);
    }
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/bundles/pamgate.tar.gz`;
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  return state;
}

/** A source with recorded callbacks; `reject` makes onBundle throw while set. */
function source(server: FakeServer, extra: Partial<BundlePollerOptions> = {}) {
  const got: { archive: string; etag: string | null }[] = [];
  const errors: Error[] = [];
  const ctl = { reject: false };
  const src = new BundlePoller({
    url: server.url,
    onBundle: async (archive, etag) => {
      if (ctl.reject) throw new Error("bundle rejected: bad signature");
      got.push({ archive: archive.toString(), etag });
    },
    onError: (err) => errors.push(err),
    ...extra,
  });
  return { src, got, errors, ctl };
}

/** Waits (up to 2 s) until `cond` holds. */
async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !cond(); i++) await sleep(10);
  if (!cond()) throw new Error("condition not reached in time");
}

tap.test("downloads, then sends the ETag and takes 304 as unchanged", async (t) => {
  const server = await startServer(t);
  const { src, got } = source(server, { token: "s3cret" });

  t.equal(await src.pollOnce(), "updated");
  t.same(got, [{ archive: "bundle-v1", etag: '"v1"' }]);
  t.equal(server.requests[0]?.authorization, "Bearer s3cret");
  t.equal(server.requests[0]?.["if-none-match"], undefined, "nothing to revalidate on the first poll");
  t.equal(server.requests[0]?.["accept-encoding"], "identity", "no transparent decoding of a gzip layer");

  t.equal(await src.pollOnce(), "not-modified");
  t.equal(server.requests[1]?.["if-none-match"], '"v1"');
  t.equal(got.length, 1, "304 does not call onBundle");

  server.bundle = { body: Buffer.from("bundle-v2"), etag: '"v2"' };
  t.equal(await src.pollOnce(), "updated");
  t.same(got[1], { archive: "bundle-v2", etag: '"v2"' });
  t.equal(server.requests[2]?.["if-none-match"], '"v1"');
});

tap.test("concurrent pollOnce calls share one request", async (t) => {
  const server = await startServer(t);
  const { src, got } = source(server);
  t.same(await Promise.all([src.pollOnce(), src.pollOnce()]), ["updated", "updated"]);
  t.equal(server.requests.length, 1);
  t.equal(got.length, 1);
});

tap.test("an HTTP error names the status and the URL", async (t) => {
  const server = await startServer(t);
  server.handler = (res) => res.writeHead(500).end("boom");
  const { src } = source(server);
  const err = await src.pollOnce().catch((e: unknown) => e);
  t.type(err, BundleDownloadError);
  t.equal((err as BundleDownloadError).status, 500);
  t.equal((err as Error).message, `GET ${server.url} returned HTTP 500 Internal Server Error`);
});

tap.test("a network error names the URL and the cause", async (t) => {
  // A port that was just free: nothing listens there any more.
  const probe = createServer().listen(0, "127.0.0.1");
  await once(probe, "listening");
  const { port } = probe.address() as AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  const url = `http://127.0.0.1:${port}/bundle.tar.gz`;
  const src = new BundlePoller({ url, onBundle: async () => {}, onError: () => {} });
  const err = (await src.pollOnce().catch((e: unknown) => e)) as Error;
  t.match(err.message, `GET ${url} failed: connect ECONNREFUSED`);
});

tap.test("a query string is not repeated in messages", async (t) => {
  const server = await startServer(t);
  server.handler = (res) => res.writeHead(403).end();
  const { src } = source(server, { url: `${server.url}?X-Amz-Signature=abc` });
  const err = (await src.pollOnce().catch((e: unknown) => e)) as Error;
  t.equal(err.message, `GET ${server.url}?… returned HTTP 403 Forbidden`);
});

tap.test("a body over maxBytes is refused, declared or streamed", async (t) => {
  const server = await startServer(t);
  server.bundle = { body: Buffer.alloc(10_000, 1), etag: '"big"' };
  for (const chunked of [false, true]) {
    server.chunked = chunked;
    const { src, got } = source(server, { maxBytes: 4096 });
    const err = (await src.pollOnce().catch((e: unknown) => e)) as Error;
    t.equal(
      err.message,
      `GET ${server.url}: bundle is larger than the limit of 4096 bytes`,
      `chunked: ${chunked}`,
    );
    t.equal(got.length, 0);
  }
});

tap.test("a rejected bundle is downloaded again on the next poll", async (t) => {
  const server = await startServer(t);
  const { src, got, ctl } = source(server);
  ctl.reject = true;
  await t.rejects(src.pollOnce(), /bundle rejected: bad signature/);
  ctl.reject = false;
  t.equal(await src.pollOnce(), "updated", "not a 304: the rejected ETag was not remembered");
  t.equal(server.requests[1]?.["if-none-match"], undefined);
  t.same(got, [{ archive: "bundle-v1", etag: '"v1"' }]);

  // A rejection after an accepted bundle keeps the accepted bundle's ETag.
  server.bundle = { body: Buffer.from("bundle-v2"), etag: '"v2"' };
  ctl.reject = true;
  await t.rejects(src.pollOnce());
  ctl.reject = false;
  t.equal(await src.pollOnce(), "updated");
  t.equal(server.requests[3]?.["if-none-match"], '"v1"');
});

tap.test("background polling reports errors, backs off, and stops", async (t) => {
  const server = await startServer(t);
  const { src, got, errors, ctl } = source(server, { minDelayMs: 5, maxDelayMs: 10 });
  ctl.reject = true;
  src.start();
  src.start(); // idempotent
  await until(() => errors.length >= 2);
  t.match(errors[0]?.message, /bundle rejected/, "onBundle's error goes to onError");
  ctl.reject = false;
  await until(() => got.length === 1 && server.requests.length >= got.length + errors.length + 2);
  await src.stop();
  const count = server.requests.length;
  await sleep(50);
  t.equal(server.requests.length, count, "no request after stop()");
  t.ok(server.requests.slice(-1)[0]?.["if-none-match"], "later polls revalidate");
});

tap.test(
  "background polling reports each successful poll to onPoll, after a delay given to start()",
  async (t) => {
    const server = await startServer(t);
    const polls: string[] = [];
    const { src, got } = source(server, { minDelayMs: 5, maxDelayMs: 10, onPoll: (r) => polls.push(r) });
    t.equal(await src.pollOnce(), "updated", "a first poll of its own, as HttpBundleSource makes");
    src.start(src.nextDelay(false));
    await until(() => polls.length >= 2);
    await src.stop();
    t.same(
      polls.slice(0, 2),
      ["not-modified", "not-modified"],
      "pollOnce() is not reported, the loop's polls are",
    );
    t.equal(got.length, 1);
    t.ok(src.nextDelay(true) <= 10, "a retry delay stays within maxDelayMs");
  },
);

tap.test("stop() cancels a download in progress without reporting it", async (t) => {
  const server = await startServer(t);
  server.handler = (res) => res.writeHead(200, { "content-length": "100" }).write("partial"); // never ends
  const { src, got, errors } = source(server);
  src.start();
  await until(() => server.requests.length === 1);
  await src.stop();
  t.same(errors, []);
  t.same(got, []);
});

tap.test("a stalled server times out", async (t) => {
  const server = await startServer(t);
  server.handler = () => undefined; // never answers
  const { src } = source(server, { timeoutMs: 50 });
  await t.rejects(src.pollOnce(), { message: `GET ${server.url} timed out after 50 ms` });
});

tap.test("delays: jittered between min and max, exponential backoff after failures", async (t) => {
  t.equal(
    nextPollDelay(0, 1000, 2000, () => 0),
    1000,
  );
  t.equal(
    nextPollDelay(0, 1000, 2000, () => 0.5),
    1500,
  );
  const mid = () => 0.5; // no jitter
  t.same(
    [1, 2, 3, 4, 5, 10].map((n) => nextPollDelay(n, 60_000, 120_000, mid)),
    [500, 1000, 2000, 4000, 8000, 120_000],
  );
  t.equal(
    nextPollDelay(1, 60_000, 120_000, () => 0),
    400,
    "-20 % jitter",
  );
  t.equal(
    nextPollDelay(10, 60_000, 120_000, () => 0.999),
    120_000,
    "never above maxDelayMs",
  );
  t.equal(nextPollDelay(1, 5, 10, mid), 10, "capped by a small maxDelayMs");
  t.throws(
    () =>
      new BundlePoller({
        url: "http://x/",
        minDelayMs: 10,
        maxDelayMs: 5,
        onBundle: async () => {},
        onError: () => {},
      }),
    RangeError,
  );
  t.throws(
    () => new BundlePoller({ url: "not a url", onBundle: async () => {}, onError: () => {} }),
    TypeError,
  );
});
