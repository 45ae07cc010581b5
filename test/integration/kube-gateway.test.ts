// The Kubernetes gateway end to end, from real parts: a real kube-apiserver and etcd (built from the pinned
// release by scripts/bootstrap; RBAC on; its audit log read back), the real kubectl of the same release and
// @kubernetes/client-node, talking to pamgate as if it were the API server. What is NOT real: there is no kubelet
// or container runtime here, so exec goes to test/helpers/fake-kubelet.ts — a stand-in node that serves the
// kubelet's stream protocol with the kubelet's own Go library and runs commands as local processes (and dials
// 127.0.0.1:<port> for a port-forward, where a test runs the "pod's" server).
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { request } from "node:https";
import { createRequire } from "node:module";
import { createServer, connect as netConnect, type Socket } from "node:net";
import { join } from "node:path";
import { connect as tlsConnect } from "node:tls";
import * as k8s from "@kubernetes/client-node";
import t from "tap";
import { spoolRecords } from "../../src/audit/reader.js";
import { loadRecording } from "../../src/audit/replay.js";
import { type SpdyFrame, SpdyReader } from "../../src/proxy/kubernetes/spdy.js";
import { type FakeKubelet, fakeKubeletAvailable, startFakeKubelet } from "../helpers/fake-kubelet.js";
import { run } from "../helpers/gateway.js";
import { KUBE_APISERVER_MISSING, kubeApiServerAvailable, kubectlBin } from "../helpers/kube-apiserver.js";
import { type KubeTestGateway, startKubeTestGateway } from "../helpers/kube-gateway.js";
import { Compressor, data, forwardSyns, ping } from "../helpers/spdy-frames.js";

if (!kubeApiServerAvailable()) {
  t.plan(0, KUBE_APISERVER_MISSING);
  process.exit(0);
}

let g: KubeTestGateway;
let kubelet: FakeKubelet | null = null;
const auditDir = () => join(g.dir, "audit");

t.before(async () => {
  g = await startKubeTestGateway();
  const admin = (args: string[], input?: string) => g.api.kubectl(args, input ? { input } : {});
  for (const ns of ["staging", "prod"]) await admin(["create", "namespace", ns]);
  // RBAC in the cluster authorizes the impersonated user: alice and bob get cluster-admin here (the aggregated
  // edit/view roles stay empty without kube-controller-manager, which aggregates them). Bound by user name, since
  // a delegated token carries the person's name but not necessarily their groups.
  for (const user of ["alice", "bob"])
    await admin([
      "create",
      "clusterrolebinding",
      `${user}-admin`,
      "--clusterrole=cluster-admin",
      `--user=${user}`,
    ]);
  await admin(["-n", "staging", "create", "secret", "generic", "db", "--from-literal=password=hunter2"]);
  await admin(["-n", "staging", "create", "configmap", "settings", "--from-literal=mode=fast"]);
  if (fakeKubeletAvailable()) {
    kubelet = await startFakeKubelet(g.api);
    await kubelet.createPod("staging", "web-0");
  }
});
t.teardown(async () => {
  await kubelet?.stop();
  await g?.stop();
});

async function records(kind: string) {
  const out: Array<Record<string, unknown>> = [];
  for await (const r of spoolRecords(auditDir())) if (r.kind === kind) out.push(JSON.parse(r.body));
  return out;
}

/** Transcript entries of every session so far. */
async function transcript(): Promise<Array<Record<string, unknown>>> {
  return (await records("recording"))
    .filter((c) => c.format === "jsonl")
    .flatMap((c) => c.events as Array<Record<string, unknown>>);
}

/** The first transcript entry that matches, waited for (transcripts are flushed in chunks, every 250 ms). */
async function transcriptEntry(match: (e: Record<string, unknown>) => boolean) {
  for (let i = 0; i < 60; i++) {
    const found = (await transcript()).find(match);
    if (found) return found;
    await new Promise((r) => setTimeout(r, 100));
  }
  return undefined;
}

/** A raw HTTPS request to the gateway (for what kubectl never sends). */
function raw(
  method: string,
  path: string,
  opts: { token?: string; headers?: Record<string, string>; body?: string | Buffer } = {},
): Promise<{ status: number; json: Record<string, unknown> | null; text: string }> {
  return new Promise((resolve, reject) => {
    // Not through URL: it would resolve the ../ a test sends.
    const url = new URL(g.kubeUrl);
    const req = request(
      {
        method,
        hostname: url.hostname,
        port: url.port,
        path,
        ca: g.api.caPem,
        headers: {
          ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}),
          ...opts.headers,
        },
      },
      (res) => {
        let text = "";
        res.on("data", (c: Buffer) => {
          text += c.toString();
        });
        res.on("end", () => {
          let json: Record<string, unknown> | null = null;
          try {
            json = JSON.parse(text);
          } catch {}
          resolve({ status: res.statusCode ?? 0, json, text });
        });
      },
    );
    req.on("error", reject);
    req.end(opts.body);
  });
}

t.test("kubectl through pamgate: reads work and the cluster's audit log names the requester", async (t) => {
  const alice = await g.tokenFor("alice");
  const r = await g.kubectl(alice, [
    "-n",
    "staging",
    "get",
    "configmap",
    "settings",
    "-o",
    "jsonpath={.data.mode}",
  ]);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, "fast");
  const event = await g.api.waitForAudit(
    (e) => e.objectRef?.resource === "configmaps" && e.objectRef?.name === "settings" && !!e.impersonatedUser,
  );
  t.equal(event.impersonatedUser?.username, "alice", "the cluster sees alice");
  t.match(event.impersonatedUser?.groups, ["engineering"]);
  t.ok(event.impersonatedUser?.extra?.["pamgate.dev/decision-id"]?.[0], "and the decision id");
  t.equal(event.user.username, "pamgate-test-admin", "authenticated as the gateway's own identity");
  const decisions = await records("decision");
  t.ok(
    decisions.some(
      (d) =>
        d.decision_id === event.impersonatedUser?.extra?.["pamgate.dev/decision-id"]?.[0] &&
        (d.input as { command: { verb: string } }).command.verb === "get",
    ),
    "the decision on record is the one the cluster was told",
  );
});

t.test("delegation: a bot acting for alice is alice to the cluster, with the chain", async (t) => {
  const bot = await g.botFor("alice");
  const r = await g.kubectl(bot, ["-n", "staging", "get", "configmaps", "-o", "name"]);
  t.equal(r.code, 0, r.stderr);
  const event = await g.api.waitForAudit(
    (e) => !!e.impersonatedUser?.extra?.["pamgate.dev/chain"] && e.objectRef?.resource === "configmaps",
  );
  t.equal(event.impersonatedUser?.username, "alice");
  t.same(event.impersonatedUser?.extra?.["pamgate.dev/chain"], ["alice", "ci-bot"]);
});

t.test("Secrets are masked in get, -o yaml, list, Table and last-applied", async (t) => {
  const alice = await g.tokenFor("alice");
  const one = await g.kubectl(alice, [
    "-n",
    "staging",
    "get",
    "secret",
    "db",
    "-o",
    "jsonpath={.data.password}",
  ]);
  t.equal(one.code, 0, one.stderr);
  t.equal(Buffer.from(one.stdout, "base64").toString(), "***", "the value decodes to the redaction marker");
  const yaml = await g.kubectl(alice, ["-n", "staging", "get", "secret", "db", "-o", "yaml"]);
  t.notMatch(yaml.stdout, Buffer.from("hunter2").toString("base64"));
  t.match(yaml.stdout, /password: Kioq/);
  const table = await g.kubectl(alice, ["-n", "staging", "get", "secrets"]);
  t.equal(table.code, 0, table.stderr);
  t.match(table.stdout, /db\s+Opaque\s+1/, "the table still lists it");
  const applied = await g.kubectl(alice, ["-n", "staging", "apply", "-f", "-"], {
    input: JSON.stringify({
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "applied", namespace: "staging" },
      stringData: { token: "s3cr3t-applied" },
    }),
  });
  t.equal(applied.code, 0, applied.stderr);
  const list = await g.kubectl(alice, ["-n", "staging", "get", "secrets", "-o", "json"]);
  t.equal(list.code, 0, list.stderr);
  t.notMatch(list.stdout, /s3cr3t-applied/, "not in the last-applied annotation");
  t.notMatch(list.stdout, Buffer.from("s3cr3t-applied").toString("base64"), "not in data");
  t.notMatch(list.stdout, Buffer.from("hunter2").toString("base64"));
  // Directly, the values are there: masking is pamgate's doing.
  const direct = await g.api.kubectl([
    "-n",
    "staging",
    "get",
    "secret",
    "db",
    "-o",
    "jsonpath={.data.password}",
  ]);
  t.equal(Buffer.from(direct.stdout, "base64").toString(), "hunter2");
});

t.test("client-node through pamgate: a read and a watch of Secrets are masked", async (t) => {
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(g.kubeconfigPath);
  const token = await g.tokenFor("bob");
  kc.users = kc.users.map((u) => ({ ...u, exec: undefined, token }));
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const s = await core.readNamespacedSecret({ name: "db", namespace: "staging" });
  t.equal(s.data?.password, "Kioq");
  const seen: string[] = [];
  const watch = new k8s.Watch(kc);
  const req = await watch.watch(
    "/api/v1/namespaces/staging/secrets",
    {},
    (_type, obj: k8s.V1Secret) => {
      seen.push(JSON.stringify(obj.data));
    },
    () => {},
  );
  await g.api.kubectl([
    "-n",
    "staging",
    "create",
    "secret",
    "generic",
    "watched",
    "--from-literal=k=watch-me",
  ]);
  for (let i = 0; i < 100 && !seen.some((x) => x.includes("k")); i++)
    await new Promise((r) => setTimeout(r, 50));
  req.abort();
  t.ok(seen.length >= 1, "watch events arrived");
  t.notMatch(seen.join(""), Buffer.from("watch-me").toString("base64"), "watch events are masked");
});

t.test("block: a machine may not delete in production; the message says why", async (t) => {
  await g.api.kubectl(["-n", "prod", "create", "configmap", "keep", "--from-literal=a=b"]);
  const bot = await g.botFor("alice");
  const r = await g.kubectl(bot, ["-n", "prod", "delete", "configmap", "keep"]);
  t.not(r.code, 0);
  t.match(r.stderr, /Forbidden.*machine identity.*k8s\.machine_prod_write/s);
  const still = await g.api.kubectl(["-n", "prod", "get", "configmap", "keep", "-o", "name"]);
  t.equal(still.stdout.trim(), "configmap/keep", "the cluster never saw the delete");
});

t.test("approve: one approval covers the burst of one kubectl delete", async (t) => {
  for (const n of ["a", "b", "c"]) await g.api.kubectl(["-n", "prod", "create", "configmap", `gone-${n}`]);
  const alice = await g.tokenFor("alice");
  const held = g.kubectl(alice, ["-n", "prod", "delete", "configmap", "gone-a", "gone-b", "gone-c"]);
  let pending: Awaited<ReturnType<typeof g.gw.approvals.list>>[number] | undefined;
  for (let i = 0; i < 200 && !pending; i++) {
    pending = (await g.gw.approvals.list({ status: "pending" }))[0];
    if (!pending) await new Promise((r) => setTimeout(r, 50));
  }
  t.ok(pending, "a pending approval");
  t.match(
    pending?.command.text,
    /DELETE \/api\/v1\/namespaces\/prod\/configmaps\/gone-a/,
    "the approver sees it",
  );
  const bob = (await g.gw.verifier.verify(await g.tokenFor("bob"))).identity;
  await g.gw.approvals.approve(pending?.id as string, bob, { comment: "ok" });
  const r = await held;
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /gone-a.*deleted.*gone-b.*deleted.*gone-c.*deleted/s);
  t.equal((await g.gw.approvals.list({})).filter((a) => a.command.text.includes("gone-")).length, 1);
});

t.test(
  "exec: decided with the command's argv, recorded as asciicast; destructive argv blocked",
  { skip: fakeKubeletAvailable() ? false : "the fake kubelet is not built (scripts/bootstrap builds it)" },
  async (t) => {
    const alice = await g.tokenFor("alice");
    const r = await g.kubectl(alice, [
      "-n",
      "staging",
      "exec",
      "web-0",
      "--",
      "sh",
      "-c",
      "echo from-the-pod",
    ]);
    t.equal(r.code, 0, r.stderr);
    t.equal(r.stdout, "from-the-pod\n");
    const bad = await g.kubectl(alice, ["-n", "staging", "exec", "web-0", "--", "sh", "-c", "rm -rf /"]);
    t.not(bad.code, 0);
    t.match(bad.stderr, /k8s\.exec_destructive/);
    const bot = await g.botFor("alice");
    const machine = await g.kubectl(bot, ["-n", "staging", "exec", "web-0", "--", "true"]);
    t.match(machine.stderr, /k8s\.machine_exec/);
    // The recording: asciicast with the pod's output.
    let found = false;
    for (const chunk of await records("recording")) {
      if (chunk.format !== "asciicast-v2" || chunk.part !== 0) continue;
      const rec = await loadRecording(spoolRecords(auditDir()), chunk.session_id as string);
      if (rec?.events.some((e) => Array.isArray(e) && String(e[2]).includes("from-the-pod"))) found = true;
    }
    t.ok(found, "the exec's output is in an asciicast recording");
  },
);

t.test(
  "exec from client-node (WebSocket, v5 or v4): decided, relayed both ways, recorded",
  { skip: fakeKubeletAvailable() ? false : "the fake kubelet is not built (scripts/bootstrap builds it)" },
  async (t) => {
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(g.kubeconfigPath);
    const token = await g.tokenFor("bob");
    kc.users = kc.users.map((u) => ({ ...u, exec: undefined, token }));
    const { PassThrough } = await import("node:stream");
    const out = new PassThrough();
    const err = new PassThrough();
    const input = new PassThrough();
    let stdout = "";
    out.on("data", (c: Buffer) => {
      stdout += c.toString();
    });
    err.resume();
    const status = await new Promise<k8s.V1Status>((resolve, reject) => {
      new k8s.Exec(kc)
        .exec(
          "staging",
          "web-0",
          "main",
          ["sh", "-c", 'read line; echo "$line"'],
          out,
          err,
          input,
          false,
          resolve,
        )
        .then(() => input.write("typed-through-pamgate\n"), reject);
    });
    t.equal(status.status, "Success", JSON.stringify(status));
    t.equal(stdout, "typed-through-pamgate\n", "stdin reached the pod and its stdout came back");
    const tunnel = await transcriptEntry(
      (e) => e.event === "tunnel" && e.subresource === "exec" && /channel\.k8s\.io/.test(String(e.protocol)),
    );
    t.match(tunnel, { protocol: /v[45]\.channel\.k8s\.io/ }, "a WebSocket stream protocol");
  },
);

t.test("a masked request asking for protobuf gets masked JSON", async (t) => {
  const alice = await g.tokenFor("alice");
  const r = await raw("GET", "/api/v1/namespaces/staging/secrets/db", {
    token: alice,
    headers: { accept: "application/vnd.kubernetes.protobuf, application/json" },
  });
  t.equal(r.status, 200);
  t.equal((r.json?.data as Record<string, string>)?.password, "Kioq", "JSON, masked");
});

t.test(
  "exec over SPDY (kubectl's fallback): decided, relayed and recorded as asciicast like WebSocket",
  { skip: fakeKubeletAvailable() ? false : "the fake kubelet is not built (scripts/bootstrap builds it)" },
  async (t) => {
    const alice = await g.tokenFor("alice");
    const r = await run(
      kubectlBin(),
      ["-n", "staging", "exec", "-i", "web-0", "--", "sh", "-c", "read l; echo spdy-$l"],
      "ok\n",
      { ...g.kubectlEnv(alice), KUBECTL_REMOTE_COMMAND_WEBSOCKETS: "false" },
    );
    t.equal(r.code, 0, r.stderr);
    t.equal(r.stdout, "spdy-ok\n");
    const tunnel = await transcriptEntry(
      (e) => e.event === "tunnel" && e.subresource === "exec" && /^spdy/i.test(String(e.upgrade)),
    );
    t.match(tunnel, { upgrade: "SPDY/3.1", protocol: /channel\.k8s\.io/ }, "a SPDY tunnel in the transcript");
    t.notOk(tunnel && "recording" in tunnel, "with no note that it went unrecorded");
    // The recording: the pod's output, and what was typed, read from the SPDY streams (stdout, stdin).
    let events: unknown[] | undefined;
    for (let i = 0; i < 60 && !events; i++) {
      for (const chunk of await records("recording")) {
        if (chunk.format !== "asciicast-v2" || chunk.part !== 0) continue;
        const rec = await loadRecording(spoolRecords(auditDir()), chunk.session_id as string);
        if (rec?.events.some((e) => Array.isArray(e) && e[1] === "o" && String(e[2]).includes("spdy-ok")))
          events = rec.events;
      }
      if (!events) await new Promise((r) => setTimeout(r, 100));
    }
    t.ok(events, "the exec's output is in an asciicast recording");
    const typed = (events ?? [])
      .filter((e): e is unknown[] => Array.isArray(e) && e[1] === "i")
      .map((e) => e[2])
      .join("");
    t.equal(typed, "ok\n", "what was typed is its input");
    const unparsable = (await transcript()).filter((e) => e.event === "tunnel.unparsable");
    t.same(unparsable, [], "no stream failed to parse");
  },
);

t.test("bad input is refused with a Status naming the problem; other requests go on", async (t) => {
  const alice = await g.tokenFor("alice");
  const cases: Array<[string, string, Parameters<typeof raw>[2], number, RegExp]> = [
    ["GET", "/api/v1/namespaces/a/../b/secrets", { token: alice }, 400, /k8s\.path_traversal/],
    ["GET", "/api/v1/namespaces/%252e%252e/secrets", { token: alice }, 400, /k8s\.bad_encoding/],
    ["GET", "/api/v1/namespaces/a%2Fb/pods", { token: alice }, 400, /k8s\.encoded_separator/],
    ["GET", "/api/v1/namespaces/staging/pods", {}, 401, /identity\.no_token/],
    ["GET", "/api/v1/namespaces/staging/pods", { token: "not-a-token" }, 401, /identity\.token_rejected/],
    [
      "GET",
      "/api/v1/namespaces/staging/pods",
      { token: alice, headers: { "impersonate-user": "admin" } },
      403,
      /k8s\.impersonation_refused/,
    ],
    [
      "POST",
      "/api/v1/namespaces/staging/configmaps",
      { token: alice, headers: { "content-type": "application/json" }, body: "{not json" },
      400,
      /k8s\.bad_json/,
    ],
    [
      "POST",
      "/api/v1/namespaces/staging/configmaps",
      { token: alice, headers: { "content-type": "application/vnd.kubernetes.protobuf" }, body: "k8s\0" },
      415,
      /k8s\.protobuf_body/,
    ],
    [
      "POST",
      "/api/v1/namespaces/staging/configmaps",
      { token: alice, headers: { "content-type": "text/plain" }, body: "x" },
      415,
      /k8s\.unsupported_content_type/,
    ],
    [
      "POST",
      "/api/v1/namespaces/staging/configmaps",
      {
        token: alice,
        headers: { "content-type": "application/json" },
        body: `{"a":"${"x".repeat(4 << 20)}"}`,
      },
      413,
      /k8s\.body_too_large/,
    ],
    ["GET", "/clusters/nope/api/v1/pods", { token: alice }, 404, /k8s\.unknown_cluster/],
  ];
  for (const [method, path, opts, code, why] of cases) {
    const r = await raw(method, path, opts);
    t.equal(r.status, code, `${method} ${path.slice(0, 60)}`);
    t.equal(r.json?.kind, "Status", "a Kubernetes Status object");
    t.match(String(r.json?.message), why);
  }
  const ok = await g.kubectl(alice, ["-n", "staging", "get", "configmap", "settings", "-o", "name"]);
  t.equal(ok.stdout.trim(), "configmap/settings", "kubectl still works");
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A "pod's" TCP server on 127.0.0.1 (the fake kubelet dials 127.0.0.1:<port>): it echoes and counts connections. */
async function podServer() {
  const sockets = new Set<Socket>();
  let connections = 0;
  const server = createServer((s) => {
    connections++;
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
    s.on("error", () => {});
    s.pipe(s);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return {
    port: (server.address() as { port: number }).port,
    connections: () => connections,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

/**
 * A port-forward client written by hand, to send what kubectl never does: ?ports= naming one port and a stream to
 * another. SPDY/3.1 as the upgrade itself, or inside WebSocket messages (`SPDY/3.1+portforward.k8s.io`, kubectl's
 * default tunnel); either way the SPDY is the same, its header blocks compressed with one zlib context.
 */
class PortForwardClient {
  readonly frames: SpdyFrame[] = [];
  readonly closed: Promise<void>;
  private readonly z = new Compressor();
  private readonly reader = new SpdyReader({
    onFrame: (f) => {
      this.frames.push(f);
    },
    onError: () => {},
  });

  private constructor(
    private readonly sendBytes: (b: Buffer) => void,
    closed: Promise<void>,
    private readonly destroy: () => void,
  ) {
    this.closed = closed;
  }

  /** `ports`: for ?ports= (none: no query, as kubectl sends it). */
  static async open(
    transport: "spdy" | "websocket",
    token: string,
    ports: number[],
    namespace = "staging",
  ): Promise<PortForwardClient> {
    const url = new URL(g.kubeUrl);
    const query = ports.length > 0 ? `?ports=${ports.join(",")}` : "";
    const path = `/api/v1/namespaces/${namespace}/pods/web-0/portforward${query}`;
    const sock = tlsConnect({ host: url.hostname, port: Number(url.port), ca: g.api.caPem });
    const closed = new Promise<void>((r) => sock.on("close", () => r()));
    sock.on("error", () => {});
    await once(sock, "secureConnect");
    // By hand for WebSocket too: the ws client refuses "/" in a subprotocol name; gorilla (kubectl's) does not.
    const upgrade =
      transport === "spdy"
        ? ["Upgrade: SPDY/3.1", "X-Stream-Protocol-Version: portforward.k8s.io"]
        : [
            "Upgrade: websocket",
            "Sec-WebSocket-Version: 13",
            `Sec-WebSocket-Key: ${randomBytes(16).toString("base64")}`,
            "Sec-WebSocket-Protocol: SPDY/3.1+portforward.k8s.io",
          ];
    sock.write(
      [
        `GET ${path} HTTP/1.1`,
        `Host: ${url.host}`,
        `Authorization: Bearer ${token}`,
        "Connection: Upgrade",
        ...upgrade,
        "",
        "",
      ].join("\r\n"),
    );
    const c = new PortForwardClient(
      (b) => sock.write(transport === "spdy" ? b : maskedBinaryFrame(b)),
      closed,
      () => sock.destroy(),
    );
    let toReader = (b: Buffer) => c.reader.write(b);
    if (transport === "websocket") {
      const receiver = new Receiver({ isServer: false });
      receiver.on("message", (m: Buffer) => c.reader.write(m));
      receiver.on("error", () => sock.destroy());
      toReader = (b) => receiver.write(b);
    }
    let head = Buffer.alloc(0);
    let upgraded = false;
    await new Promise<void>((resolve, reject) => {
      sock.on("data", (b: Buffer) => {
        if (upgraded) return toReader(b);
        head = Buffer.concat([head, b]);
        const end = head.indexOf("\r\n\r\n");
        if (end < 0) return;
        const status = head.subarray(0, end).toString();
        if (!status.startsWith("HTTP/1.1 101")) return reject(new Error(`not upgraded: ${status}`));
        upgraded = true;
        resolve();
        if (head.length > end + 4) toReader(head.subarray(end + 4));
      });
      sock.once("close", () => reject(new Error("closed before the upgrade")));
    });
    return c;
  }

  /** The two streams of one forwarded connection (error, then data), as client-go opens them; not waited on. */
  async openStreams(firstId: number, port: number, requestId: string): Promise<void> {
    const syns = await forwardSyns(this.z, firstId, String(port), requestId);
    // In one write, and a PING right behind them: were the client's bytes relayed before being checked — or
    // checked past a SYN_STREAM whose port is still being decided — both would reach the kubelet. (A client's ping
    // ids are odd.)
    this.sendBytes(Buffer.concat([...syns, ping(firstId)]));
  }

  sendData(streamId: number, payload: string): void {
    this.sendBytes(data(streamId, payload));
  }

  async waitFor(match: (f: SpdyFrame) => boolean, what: string): Promise<SpdyFrame> {
    for (let i = 0; i < 100; i++) {
      const f = this.frames.find(match);
      if (f) return f;
      await sleep(50);
    }
    throw new Error(`no ${what} within 5 s`);
  }

  close(): void {
    this.z.close();
    this.destroy();
  }
}

/** ws's frame parser, as tunnel.ts uses it (not in @types/ws). */
const { Receiver } = createRequire(import.meta.url)("ws") as {
  Receiver: new (options: {
    isServer: boolean;
  }) => NodeJS.WritableStream & {
    on(event: "message", listener: (data: Buffer) => void): unknown;
    on(event: "error", listener: (err: Error) => void): unknown;
  };
};

/** One binary WebSocket message from a client (masked, RFC 6455 §5.3). */
function maskedBinaryFrame(payload: Buffer): Buffer {
  const ext = payload.length > 0xffff ? 8 : payload.length > 125 ? 2 : 0;
  const h = Buffer.alloc(2 + ext + 4);
  h[0] = 0x82;
  h[1] = 0x80 | (ext === 8 ? 127 : ext === 2 ? 126 : payload.length);
  if (ext === 2) h.writeUInt16BE(payload.length, 2);
  if (ext === 8) h.writeBigUInt64BE(BigInt(payload.length), 2);
  const key = randomBytes(4);
  key.copy(h, 2 + ext);
  return Buffer.concat([h, Buffer.from(payload.map((x, i) => x ^ (key[i % 4] as number)))]);
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** The decision on record with this id (the audit trail's decision log event). */
async function decisionRecord(id: unknown) {
  for (let i = 0; i < 50; i++) {
    const found = (await records("decision")).find((d) => d.decision_id === id);
    if (found)
      return found as { input: { command: Record<string, unknown> }; action: string; reason_codes: string[] };
    await sleep(100);
  }
  return undefined;
}

/**
 * Whether anything dialled 127.0.0.1:22 for the fake kubelet: the trap listening there (when the test may bind it)
 * counts connections; otherwise the kubelet's own log of a failed dial ("fake-kubelet: port 22: …") shows it.
 */
async function port22Witness() {
  let connections = 0;
  const server = createServer((s) => {
    connections++;
    s.on("error", () => {});
    s.destroy();
  });
  const bound = await new Promise<boolean>((resolve) => {
    server.once("error", () => resolve(false));
    server.listen(22, "127.0.0.1", () => resolve(true));
  });
  const logged = () => (kubelet?.logs() ?? []).filter((l) => /port 22\b/.test(l)).length;
  return {
    /** Dials of port 22 seen so far (a failed one is logged a moment after it happened). */
    dials: () => connections + logged(),
    close: () => (bound ? new Promise((r) => server.close(r)) : Promise.resolve()),
  };
}

for (const transport of ["spdy", "websocket"] as const) {
  const framing = transport === "spdy" ? "SPDY/3.1" : "SPDY in WebSocket (kubectl's tunnel)";
  t.test(
    `port-forward over ${framing}: each stream's port is decided; a blocked one closes the tunnel unseen`,
    { skip: fakeKubeletAvailable() ? false : "the fake kubelet is not built (scripts/bootstrap builds it)" },
    async (t) => {
      const alice = await g.tokenFor("alice");
      const pod = await podServer();
      const other = await podServer();
      const witness = await port22Witness();
      t.teardown(async () => {
        await pod.close();
        await other.close();
        await witness.close();
      });
      const c = await PortForwardClient.open(transport, alice, [pod.port]);
      t.teardown(() => c.close());
      await c.openStreams(1, pod.port, "0");
      await c.waitFor((f) => f.type === "syn_reply" && f.streamId === 3, "reply to the data stream");
      c.sendData(3, "through-pamgate");
      await c.waitFor(
        (f) => f.type === "data" && f.streamId === 3 && f.data.toString().includes("through-pamgate"),
        "the echo",
      );
      t.equal(pod.connections(), 1, "the port of ?ports= works (decided with the request)");

      // A port ?ports= did not name: decided now, as the request with ports: [port] — alice may, in staging.
      await c.openStreams(5, other.port, "1");
      await c.waitFor((f) => f.type === "syn_reply" && f.streamId === 7, "reply to the second data stream");
      c.sendData(7, "decided-later");
      await c.waitFor(
        (f) => f.type === "data" && f.streamId === 7 && f.data.toString().includes("decided-later"),
        "the second echo",
      );
      t.equal(other.connections(), 1, "a port decided when its stream came is forwarded");
      const allowed = await transcriptEntry((e) => e.event === "tunnel.port" && e.port === other.port);
      t.match(allowed, { action: "allow" });
      const tunnel = allowed?.tunnel_decision_id;
      t.match(
        await transcriptEntry((e) => e.event === "request" && e.decision_id === tunnel),
        { verb: "portforward", action: "allow" },
        "the port's decision names the tunnel's",
      );
      const record = await decisionRecord(allowed?.decision_id);
      t.match(record, { action: "allow", input: { command: { verb: "portforward", ports: [other.port] } } });
      t.notOk(
        (await transcript()).some((e) => e.event === "tunnel.port" && e.port === pod.port),
        "the port of ?ports= was not decided again",
      );

      const dials = witness.dials();
      await c.openStreams(9, 22, "2");
      await withTimeout(c.closed, 5000, "the tunnel closing");
      t.pass("port 22 closed the tunnel");
      const entry = await transcriptEntry(
        (e) => e.event === "tunnel.refused_port" && e.tunnel_decision_id === tunnel,
      );
      t.match(entry, {
        code: "k8s.portforward_port",
        stream_id: 9,
        port: 22,
        reasons: [{ code: "k8s.portforward_port_blocked", message: /port 22 of pods\/web-0/ }],
      });
      const blocked = await decisionRecord(entry?.decision_id);
      t.match(
        blocked,
        {
          action: "block",
          reason_codes: ["k8s.portforward_port_blocked"],
          input: { command: { ports: [22] } },
        },
        "the refusal names the decision on record",
      );
      // Had the SYN_STREAMs been relayed while their port was being decided, the kubelet would dial.
      await sleep(500);
      t.equal(witness.dials(), dials, "port 22 was never dialled");
      t.notOk(
        c.frames.some((f) => f.type === "syn_reply" && f.streamId >= 9),
        "the cluster answered no stream to port 22: it never saw one",
      );
    },
  );
}

/** The one pending approval whose text matches, waited for. */
async function pendingApproval(text: RegExp) {
  for (let i = 0; i < 200; i++) {
    const found = (await g.gw.approvals.list({ status: "pending" })).find((a) => text.test(a.command.text));
    if (found) return found;
    await sleep(50);
  }
  throw new Error(`no pending approval matching ${text}`);
}

t.test(
  "port-forward in production: each port waits for its own approval, the stream held meanwhile; a denied one closes the tunnel",
  { skip: fakeKubeletAvailable() ? false : "the fake kubelet is not built (scripts/bootstrap builds it)" },
  async (t) => {
    await kubelet?.createPod("prod", "web-0");
    const alice = await g.tokenFor("alice");
    const bob = (await g.gw.verifier.verify(await g.tokenFor("bob"))).identity;
    const pod = await podServer();
    const other = await podServer();
    t.teardown(async () => {
      await pod.close();
      await other.close();
    });
    // The request names no port (as kubectl): in production it is held for an approval of its own.
    const opening = PortForwardClient.open("spdy", alice, [], "prod");
    const tunnel = await pendingApproval(/prod\/pods\/web-0\/portforward$/);
    await g.gw.approvals.approve(tunnel.id, bob, { comment: "the tunnel" });
    const c = await opening;
    t.teardown(() => c.close());

    await c.openStreams(1, pod.port, "0");
    const port = await pendingApproval(new RegExp(`to port ${pod.port}\\)`));
    t.match(port.command.text, /prod\/pods\/web-0\/portforward/, "the approver sees the pod and the port");
    await sleep(500);
    t.equal(pod.connections(), 0, "while the port waits for its approval, the kubelet has not dialled it");
    t.notOk(
      c.frames.some((f) => f.type === "syn_reply"),
      "nor seen the streams",
    );
    await g.gw.approvals.approve(port.id, bob, { comment: "that port" });
    await c.waitFor((f) => f.type === "syn_reply" && f.streamId === 3, "reply to the data stream");
    c.sendData(3, "approved");
    await c.waitFor(
      (f) => f.type === "data" && f.streamId === 3 && f.data.toString().includes("approved"),
      "the echo",
    );
    t.equal(pod.connections(), 1, "once approved, the stream goes on");
    t.match(await transcriptEntry((e) => e.event === "tunnel.port" && e.port === pod.port), {
      action: "allow",
      approval_id: port.id,
    });

    await c.openStreams(5, other.port, "1");
    const denied = await pendingApproval(new RegExp(`to port ${other.port}\\)`));
    await g.gw.approvals.deny(denied.id, bob, { comment: "not that one" });
    await withTimeout(c.closed, 5000, "the tunnel closing");
    t.match(
      await transcriptEntry((e) => e.event === "tunnel.refused_port" && e.port === other.port),
      { code: "k8s.portforward_port", stream_id: 5, reasons: [{ code: "approval.denied" }] },
      "the transcript says the approval was denied",
    );
    await sleep(300);
    t.equal(other.connections(), 0, "the denied port was never dialled");
  },
);

/** kubectl port-forward to a port of web-0; resolves with its local port once it listens. */
async function kubectlPortForward(env: NodeJS.ProcessEnv, remotePort: number) {
  const proc: ChildProcess = spawn(
    kubectlBin(),
    ["-n", "staging", "port-forward", "pod/web-0", `:${remotePort}`, "--address=127.0.0.1"],
    { env, stdio: ["ignore", "pipe", "pipe"] },
  );
  let output = "";
  proc.stdout?.on("data", (c: Buffer) => {
    output += c.toString();
  });
  proc.stderr?.on("data", (c: Buffer) => {
    output += c.toString();
  });
  const exited = new Promise<void>((r) => proc.once("exit", () => r()));
  for (let i = 0; i < 200; i++) {
    const m = /Forwarding from 127\.0\.0\.1:(\d+) ->/.exec(output);
    if (m) return { localPort: Number(m[1]), proc, output: () => output, exited };
    if (proc.exitCode !== null) break;
    await sleep(50);
  }
  proc.kill("SIGKILL");
  throw new Error(`kubectl port-forward did not start:\n${output}`);
}

/** Connects to a local port, sends `text` and collects what comes back until the connection ends (or 5 s). */
async function roundTrip(port: number, text: string): Promise<string> {
  const s = netConnect(port, "127.0.0.1");
  let got = "";
  s.on("data", (c: Buffer) => {
    got += c.toString();
    if (got.includes(text)) s.end();
  });
  s.on("error", () => {});
  await once(s, "connect");
  s.write(text);
  await withTimeout(once(s, "close"), 5000, "the forwarded connection").catch(() => s.destroy());
  return got;
}

t.test(
  "kubectl port-forward through pamgate (it sends no ?ports=): each stream's port is decided — allowed works, 22 is blocked unseen",
  { skip: fakeKubeletAvailable() ? false : "the fake kubelet is not built (scripts/bootstrap builds it)" },
  async (t) => {
    const pod = await podServer();
    const witness = await port22Witness();
    t.teardown(async () => {
      await pod.close();
      await witness.close();
    });
    const adminEnv = {
      ...process.env,
      KUBECONFIG: g.api.adminKubeconfigPath,
      KUBECACHEDIR: join(g.dir, "kube-cache-admin"),
    };
    // The baseline: the same kubectl against the apiserver directly forwards to the fake kubelet.
    const direct = await kubectlPortForward(adminEnv, pod.port);
    t.equal(
      await roundTrip(direct.localPort, "direct"),
      "direct",
      "kubectl port-forward works without pamgate",
    );
    direct.proc.kill("SIGTERM");
    await direct.exited;
    // And port 22 directly: the witness sees the kubelet dial it (so that it would see a dial through pamgate).
    const direct22 = await kubectlPortForward(adminEnv, 22);
    await roundTrip(direct22.localPort, "direct-22");
    for (let i = 0; i < 50 && witness.dials() === 0; i++) await sleep(100);
    direct22.proc.kill("SIGTERM");
    await direct22.exited;
    t.ok(witness.dials() > 0, "without pamgate the kubelet dials port 22");
    const before = pod.connections();

    const alice = await g.tokenFor("alice");
    const transports = [
      ["SPDY", { KUBECTL_PORT_FORWARD_WEBSOCKETS: "false" }],
      ["WebSocket tunnel", { KUBECTL_PORT_FORWARD_WEBSOCKETS: "true" }],
    ] as const;
    for (const [name, extra] of transports) {
      const pf = await kubectlPortForward({ ...g.kubectlEnv(alice), ...extra }, pod.port);
      t.equal(await roundTrip(pf.localPort, `via-${name}`), `via-${name}`, `${name}: the data came back`);
      t.equal(
        await roundTrip(pf.localPort, `again-${name}`),
        `again-${name}`,
        `${name}: a second connection too`,
      );
      pf.proc.kill("SIGTERM");
      await pf.exited;
    }
    t.equal(pod.connections(), before + 4, "the kubelet dialled the pod's port once per connection");
    const decided = (await transcript()).filter((e) => e.event === "tunnel.port" && e.port === pod.port);
    t.match(
      decided,
      [{ action: "allow" }, { action: "allow" }],
      "one decision per tunnel for the port (not one per connection)",
    );
    t.equal(decided.length, 2);
    for (const e of decided)
      t.match(
        await decisionRecord(e.decision_id),
        { action: "allow", input: { command: { verb: "portforward", ports: [pod.port] } } },
        "the port's decision is in the audit trail",
      );

    const dials = witness.dials();
    for (const [name, extra] of transports) {
      const pf = await kubectlPortForward({ ...g.kubectlEnv(alice), ...extra }, 22);
      t.equal(await roundTrip(pf.localPort, `via-${name}`), "", `${name}: port 22: nothing came back`);
      await withTimeout(pf.exited, 10_000, "kubectl exiting").catch(() => pf.proc.kill("SIGKILL"));
      t.match(pf.output(), /lost connection to pod|error/i, `${name}: kubectl reports the lost connection`);
    }
    let refused: Array<Record<string, unknown>> = [];
    for (let i = 0; i < 60 && refused.length < 2; i++) {
      refused = (await transcript()).filter(
        (e) => e.event === "tunnel.refused_port" && e.port === 22 && e.stream_id === 1,
      );
      if (refused.length < 2) await sleep(100);
    }
    const blocked = [
      { code: "k8s.portforward_port_blocked", message: /SSH goes through pamgate's SSH listener/ },
    ];
    t.match(
      refused.slice(-2),
      [{ reasons: blocked }, { reasons: blocked }],
      "the transcript names the refused port and the policy's reasons",
    );
    for (const e of refused.slice(-2))
      t.match(
        await decisionRecord(e.decision_id),
        { action: "block", input: { command: { ports: [22] } } },
        "with the decision on record",
      );
    await sleep(500);
    t.equal(witness.dials(), dials, "the kubelet never dialled port 22 through pamgate");
  },
);
