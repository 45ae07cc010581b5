// The limits of the Kubernetes listener, against a real gateway (in this process) in front of a real
// kube-apiserver, with kubectl, node's HTTPS client and raw sockets: the authentication timeout (TLS handshake and
// the first authenticated request), the limit on connections pending authentication, and sessions per identity —
// a Kubernetes session lasts as long as its connection, and ends when the connection closes. Timings have generous
// bounds only.
import type { ClientRequest, IncomingMessage } from "node:http";
import { Agent, request } from "node:https";
import { connect, type Socket } from "node:net";
import { connect as tlsConnect } from "node:tls";
import t from "tap";
import type { Identity } from "../../src/decision/contract.js";
import type { AdapterListener } from "../../src/proxy/adapter.js";
import { kubernetesAdapter } from "../../src/proxy/kubernetes/adapter.js";
import { silentLogger } from "../../src/util/log.js";
import { KUBE_APISERVER_MISSING, kubeApiServerAvailable } from "../helpers/kube-apiserver.js";
import { type KubeTestGateway, startKubeTestGateway } from "../helpers/kube-gateway.js";

if (!kubeApiServerAvailable()) {
  t.plan(0, KUBE_APISERVER_MISSING);
  process.exit(0);
}

let g: KubeTestGateway;
t.before(async () => {
  g = await startKubeTestGateway((base) => ({
    listeners: {
      ...base.listeners,
      kubernetes: {
        ...(base.listeners.kubernetes as NonNullable<typeof base.listeners.kubernetes>),
        auth_timeout_s: 3,
      },
    },
    limits: { sessions_per_identity: 2 },
  }));
  for (const user of ["alice", "carol"])
    await g.api.kubectl([
      "create",
      "clusterrolebinding",
      `${user}-admin`,
      "--clusterrole=cluster-admin",
      `--user=${user}`,
    ]);
  // A watch sends its response headers with its first event: the existing objects come first.
  await g.api.kubectl(["-n", "default", "create", "configmap", "seed", "--from-literal=a=b"]);
});
t.teardown(() => g?.stop());

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, check: () => boolean | Promise<boolean>, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

function portOf(url: string): number {
  return Number(new URL(url).port);
}

interface Raw {
  socket: Socket;
  text(): string;
  closed: Promise<void>;
}

function watchSocket(socket: Socket): Raw {
  let text = "";
  socket.on("data", (c: Buffer) => {
    text += c.toString("utf8");
  });
  socket.on("error", () => {});
  return { socket, text: () => text, closed: new Promise((r) => socket.once("close", () => r())) };
}

async function rawConnect(port: number): Promise<Raw> {
  const socket = connect(port, "127.0.0.1");
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", () => resolve());
    socket.once("error", reject);
  });
  return watchSocket(socket);
}

/** A request through `agent`; resolves with the response as soon as its headers are in. */
function get(
  port: number,
  path: string,
  token: string,
  agent: Agent | false = false,
): { req: ClientRequest; res: Promise<IncomingMessage> } {
  let req: ClientRequest | null = null;
  const res = new Promise<IncomingMessage>((resolve, reject) => {
    req = request(
      {
        hostname: "127.0.0.1",
        port,
        path,
        method: "GET",
        ca: g.api.caPem,
        agent,
        headers: { authorization: `Bearer ${token}` },
      },
      resolve,
    );
    req.on("error", reject);
    req.end();
  });
  return { req: req as unknown as ClientRequest, res };
}

async function body(res: IncomingMessage): Promise<string> {
  let text = "";
  for await (const c of res) text += c;
  return text;
}

function details(listener?: AdapterListener): {
  pending_auth: number;
  refused_pending_limit: number;
  auth_timeouts: number;
} {
  const d = ((listener ? listener.status() : g.gw.status.get("listener:kubernetes"))?.details ??
    {}) as Record<string, unknown>;
  return {
    pending_auth: Number(d.pending_auth),
    refused_pending_limit: Number(d.refused_pending_limit),
    auth_timeouts: Number(d.auth_timeouts),
  };
}

t.test("auth_timeout_s: TLS handshake and first authenticated request, or a 408 and the door", async (t) => {
  const port = portOf(g.kubeUrl);
  const alice = await g.tokenFor("alice");
  // A watch is an authenticated connection that lasts: the timeout does not apply to it.
  const watch = get(port, "/api/v1/namespaces/default/configmaps?watch=1", alice);
  const watchRes = await watch.res;
  t.equal(watchRes.statusCode, 200);
  let events = "";
  watchRes.on("data", (c: Buffer) => {
    events += c;
  });
  t.teardown(() => watch.req.destroy());

  const started = Date.now();
  const noTls = await rawConnect(port); // never starts TLS
  const plain = connect(port, "127.0.0.1");
  const idle = watchSocket(tlsConnect({ socket: plain, rejectUnauthorized: false })); // TLS, then no request
  await new Promise((r) => idle.socket.once("secureConnect", r));

  await noTls.closed;
  t.equal(noTls.text(), "", "no TLS: nothing can be said, the connection is closed");
  await idle.closed;
  const elapsed = Date.now() - started;
  t.ok(elapsed >= 2500 && elapsed < 20_000, `closed after ${elapsed} ms`);
  t.match(idle.text(), /^HTTP\/1\.1 408 /, "after TLS: 408");
  const status = JSON.parse(idle.text().slice(idle.text().indexOf("\r\n\r\n") + 4));
  t.match(status, {
    kind: "Status",
    code: 408,
    message: /not completed within 3 s \(listeners\.kubernetes\.auth_timeout_s\)/,
    details: { causes: [{ reason: "k8s.auth_timeout" }] },
  });

  // The watch outlived the timeout and still delivers.
  await g.api.kubectl(["-n", "default", "create", "configmap", "limits-probe", "--from-literal=a=b"]);
  await until("the watch event", () => events.includes("limits-probe"));
  t.pass("the authenticated watch goes on past the timeout");
  t.ok(details().auth_timeouts >= 2);
});

t.test("max_unauthenticated_connections: beyond it a connection is closed at once", async (t) => {
  const serving = g.api.issueServingCert("pamgate-limits");
  const listener = kubernetesAdapter.createListener({
    config: {
      host: "127.0.0.1",
      port: 0,
      tls: { cert_file: serving.certPath, key_file: serving.keyPath },
      max_unauthenticated_connections: 3,
      auth_timeout_s: 120,
    },
    tls: { cert: Buffer.from(serving.certPem), key: Buffer.from(serving.keyPem) },
    resources: [
      {
        resource: { name: g.cluster, kind: "kubernetes", labels: { env: "staging" } },
        upstream: { kubeconfig: g.api.adminKubeconfigPath },
        secret: "",
      },
    ],
    sessions: g.gw.sessions,
    pipeline: g.gw.pipeline,
    log: silentLogger,
  });
  const { port } = await listener.listen();
  t.teardown(() => listener.close());
  const alice = await g.tokenFor("alice");

  // An authenticated keep-alive connection, made before the hogs.
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  t.teardown(() => agent.destroy());
  const first = await get(port, "/api/v1/namespaces/default/configmaps", alice, agent).res;
  t.equal(first.statusCode, 200);
  await body(first);

  const hogs = await Promise.all([1, 2, 3].map(() => rawConnect(port)));
  await until("3 connections pending", () => details(listener).pending_auth === 3);
  const started = Date.now();
  const over = await rawConnect(port);
  await over.closed;
  t.ok(Date.now() - started < 5_000, "refused at once");
  t.equal(over.text(), "");
  const refused = await get(port, "/version", alice).res.then(
    () => "answered",
    (e: Error) => e.message,
  );
  t.match(refused, /socket hang up|ECONNRESET|disconnected/, "a new client gets no answer");
  t.ok(details(listener).refused_pending_limit >= 2);

  const againReq = get(port, "/api/v1/namespaces/default/configmaps", alice, agent);
  const again = await againReq.res;
  t.equal(again.statusCode, 200, "the authenticated connection is not affected");
  t.ok(againReq.req.reusedSocket, "on the same connection");
  await body(again);

  for (const h of hogs) h.socket.destroy();
  await until("nothing pending", () => details(listener).pending_auth === 0);
  const fresh = await get(port, "/api/v1/namespaces/default/configmaps", alice).res;
  t.equal(fresh.statusCode, 200, "new connections are served again");
  await body(fresh);
});

t.test(
  "limits.sessions_per_identity: the next session is refused (403), and a closed connection frees its slot",
  async (t) => {
    const port = portOf(g.kubeUrl);
    const carol = await g.tokenFor("carol");
    const carolIdentity = { iss: g.gw.devIssuer?.issuer ?? "", sub: "carol" } as Identity;
    // Two watches: two connections, two sessions that last.
    const watches = [1, 2].map(() => get(port, "/api/v1/namespaces/default/configmaps?watch=1", carol));
    for (const w of watches) t.equal((await w.res).statusCode, 200);
    t.teardown(() => {
      for (const w of watches) w.req.destroy();
    });
    t.equal(g.gw.sessions.countFor(carolIdentity), 2);

    const third = await get(port, "/api/v1/namespaces/default/configmaps", carol).res;
    t.equal(third.statusCode, 403);
    const status = JSON.parse(await body(third));
    t.match(status, {
      kind: "Status",
      reason: "Forbidden",
      message: /carol already has 2 sessions open through pamgate.*limits\.sessions_per_identity/,
      details: { causes: [{ reason: "session.identity_limit" }] },
    });
    // Others are not affected (and alice's kubectl fills the discovery cache: a refused discovery request is
    // printed by kubectl as "unknown", whatever the Status says).
    const alice = await g.kubectl(await g.tokenFor("alice"), ["-n", "default", "get", "configmaps"]);
    t.equal(alice.code, 0, `others are not affected: ${alice.stderr}`);
    const kubectl = await g.kubectl(carol, ["-n", "default", "get", "configmaps"]);
    t.not(kubectl.code, 0);
    t.match(
      kubectl.stderr,
      /Error from server \(Forbidden\): pamgate: carol already has 2 sessions open.*\[session\.identity_limit\]/,
      "kubectl prints the reason",
    );

    // Closing a connection ends its session.
    (watches[0] as { req: ClientRequest }).req.destroy();
    await until("carol's first session ended", () => g.gw.sessions.countFor(carolIdentity) === 1);
    const now = await g.kubectl(carol, ["-n", "default", "get", "configmaps", "-o", "name"]);
    t.equal(now.code, 0, now.stderr);
  },
);

t.test("sessions end with their connections: none is left once kubectl is done", async (t) => {
  const alice = await g.tokenFor("alice");
  for (let i = 0; i < 3; i++) {
    const r = await g.kubectl(alice, ["-n", "default", "get", "configmaps", "-o", "name"]);
    t.equal(r.code, 0, r.stderr);
  }
  await until("no kubernetes session left", () => g.gw.sessions.count("kubernetes") === 0);
  t.pass("every session ended when its connection closed");
});
