// The Kubernetes gateway end to end, from real parts: a real kube-apiserver and etcd (built from the pinned
// release by scripts/bootstrap; RBAC on; its audit log read back), the real kubectl of the same release and
// @kubernetes/client-node, talking to pamgate as if it were the API server. What is NOT real: there is no kubelet
// or container runtime here, so exec goes to test/helpers/fake-kubelet.ts — a stand-in node that serves the
// kubelet's stream protocol with the kubelet's own Go library and runs commands as local processes.
import { request } from "node:https";
import { join } from "node:path";
import * as k8s from "@kubernetes/client-node";
import t from "tap";
import { spoolRecords } from "../../src/audit/reader.js";
import { loadRecording } from "../../src/audit/replay.js";
import { type FakeKubelet, fakeKubeletAvailable, startFakeKubelet } from "../helpers/fake-kubelet.js";
import { run } from "../helpers/gateway.js";
import { KUBE_APISERVER_MISSING, kubeApiServerAvailable, kubectlBin } from "../helpers/kube-apiserver.js";
import { type KubeTestGateway, startKubeTestGateway } from "../helpers/kube-gateway.js";

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
