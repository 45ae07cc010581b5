// The Kubernetes test harness itself, against the real thing: test/helpers/kube-apiserver.ts starts etcd and
// kube-apiserver (built by scripts/bootstrap), the real kubectl (.tools/bin/kubectl, same release) writes to
// it, and what the Kubernetes adapter's tests will lean on is shown to hold — RBAC really authorizes an
// impersonated user, and the cluster's own audit log names both the impersonating identity and the user it
// acted as. With the fake kubelet stand-in, `kubectl exec` goes through the apiserver to a "node".
import * as k8s from "@kubernetes/client-node";
import t from "tap";
import { fakeKubeletAvailable, startFakeKubelet } from "../helpers/fake-kubelet.js";
import {
  type AuditEvent,
  KUBE_APISERVER_MISSING,
  type KubeApiServer,
  kubeApiServerAvailable,
  startKubeApiServer,
} from "../helpers/kube-apiserver.js";

const NS = "smoke";

if (!kubeApiServerAvailable()) {
  t.plan(0, KUBE_APISERVER_MISSING);
} else {
  let api: KubeApiServer;
  t.before(async () => {
    const started = Date.now();
    api = await startKubeApiServer();
    t.comment(`kube-apiserver ready at ${api.url} in ${Date.now() - started} ms`);
  });
  t.teardown(async () => {
    await api?.stop();
  });

  t.test("kubectl and the server are the pinned release", async (t) => {
    const v = await api.kubectl(["version", "-o", "json"]);
    t.equal(v.code, 0, v.stderr);
    const parsed = JSON.parse(v.stdout) as {
      clientVersion: { gitVersion: string };
      serverVersion: { gitVersion: string };
    };
    t.match(parsed.serverVersion.gitVersion, /^v1\.\d+\.\d+$/);
    t.comment(`client ${parsed.clientVersion.gitVersion}, server ${parsed.serverVersion.gitVersion}`);
    t.equal((await api.request("GET", "/api/v1/namespaces/default")).status, 200, "default namespace exists");
  });

  t.test("kubectl writes a Secret, the API reads it back", async (t) => {
    const ns = await api.kubectl(["create", "namespace", NS]);
    t.equal(ns.code, 0, ns.stderr);
    const secret = await api.kubectl([
      "-n",
      NS,
      "create",
      "secret",
      "generic",
      "db",
      "--from-literal=password=hunter2",
    ]);
    t.equal(secret.code, 0, secret.stderr);
    // Read back with @kubernetes/client-node (1.x: 2.x needs Node 22) from the same admin kubeconfig.
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(api.adminKubeconfigPath);
    const read = await kc.makeApiClient(k8s.CoreV1Api).readNamespacedSecret({ name: "db", namespace: NS });
    t.equal(Buffer.from(read.data?.password ?? "", "base64").toString(), "hunter2");
    // And over plain HTTPS with the admin client cert (the helper's request()).
    const res = await api.request("GET", `/api/v1/namespaces/${NS}/secrets/db`);
    t.equal(res.status, 200, "GET the Secret");
    t.equal((res.json as { metadata: { uid: string } }).metadata.uid, read.metadata?.uid);
  });

  t.test("impersonation is authorized by RBAC and audited with the original requester", async (t) => {
    const denied = await api.kubectl(["--as=alice", "-n", NS, "get", "secrets"]);
    t.not(denied.code, 0, "alice has no binding yet");
    t.match(denied.stderr, /forbidden: User "alice" cannot list resource "secrets"/);

    const role = await api.kubectl([
      "-n",
      NS,
      "create",
      "role",
      "secret-reader",
      "--verb=get,list",
      "--resource=secrets",
    ]);
    t.equal(role.code, 0, role.stderr);
    const binding = await api.kubectl([
      "-n",
      NS,
      "create",
      "rolebinding",
      "alice-reads",
      "--role=secret-reader",
      "--user=alice",
    ]);
    t.equal(binding.code, 0, binding.stderr);

    const allowed = await api.kubectl(["--as=alice", "-n", NS, "get", "secrets", "-o", "name"]);
    t.equal(allowed.code, 0, allowed.stderr);
    t.equal(allowed.stdout.trim(), "secret/db");
    // The binding is namespaced: elsewhere alice is still nobody.
    const elsewhere = await api.kubectl(["--as=alice", "-n", "default", "get", "secrets"]);
    t.not(elsewhere.code, 0);

    const impersonatedList = (code: number) => (e: AuditEvent) =>
      e.verb === "list" &&
      e.objectRef?.resource === "secrets" &&
      e.objectRef.namespace === NS &&
      e.impersonatedUser?.username === "alice" &&
      e.responseStatus?.code === code;
    const ok = await api.waitForAudit(impersonatedList(200));
    t.equal(ok.user.username, "pamgate-test-admin", "the audit log names who impersonated");
    t.ok(ok.user.groups?.includes("system:masters"));
    t.equal(ok.stage, "ResponseComplete");
    const refused = await api.waitForAudit(impersonatedList(403));
    t.equal(refused.user.username, "pamgate-test-admin");
    t.equal(refused.annotations?.["authorization.k8s.io/decision"], "forbid");
    // Metadata level: no Secret bodies in the log.
    t.notMatch(JSON.stringify(api.auditEvents()), /aHVudGVyMg|hunter2/);
  });

  t.test(
    "exec through the apiserver to the fake kubelet stand-in",
    { skip: !fakeKubeletAvailable() && ".tools/bin/fake-kubelet is missing: run scripts/bootstrap" },
    async (t) => {
      const kubelet = await startFakeKubelet(api);
      t.teardown(() => kubelet.stop());
      await kubelet.createPod(NS, "web");

      const out = await api.kubectl([
        "-n",
        NS,
        "exec",
        "web",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
      ]);
      t.equal(out.code, 3, "the command's exit status comes back through the apiserver");
      t.equal(out.stdout, "out\n");
      t.match(out.stderr, /err/);
      const ev = await kubelet.waitForEvent((e) => e.kind === "exec" && e.pod === "web");
      t.same(ev.command, ["sh", "-c", "echo out; echo err >&2; exit 3"]);
      t.equal(ev.container, "main");
      t.equal(
        ev.client,
        "CN=kube-apiserver-kubelet-client",
        "the apiserver presented its kubelet client cert",
      );
      // kubectl spoke WebSocket (v5.channel.k8s.io) to the apiserver, which talks SPDY to kubelets.
      t.equal(ev.upgrade, "SPDY/3.1");

      const stdin = await api.kubectl(["-n", NS, "exec", "-i", "web", "--", "tr", "a-z", "A-Z"], {
        input: "hello\n",
      });
      t.equal(stdin.code, 0, stdin.stderr);
      t.equal(stdin.stdout, "HELLO\n");

      // RBAC on pods/exec applies to impersonated users like anything else. kubectl GETs the pod first, so
      // bob may read pods; exec itself is `create` on pods/exec (a WebSocket upgrade is a GET, authorized
      // as create since 1.31).
      const kc = (args: string[]) => api.kubectl(["-n", NS, ...args]);
      t.equal((await kc(["create", "role", "pod-viewer", "--verb=get", "--resource=pods"])).code, 0);
      t.equal((await kc(["create", "rolebinding", "bob-views", "--role=pod-viewer", "--user=bob"])).code, 0);
      const bob = await kc(["--as=bob", "exec", "web", "--", "echo", "as bob"]);
      t.not(bob.code, 0);
      t.match(bob.stderr, /forbidden: User "bob" cannot create resource "pods\/exec"/);
      const refused = await api.waitForAudit(
        (e) => e.objectRef?.subresource === "exec" && e.impersonatedUser?.username === "bob",
      );
      t.equal(refused.responseStatus?.code, 403);
      t.equal(refused.user.username, "pamgate-test-admin");

      t.equal((await kc(["create", "role", "pod-exec", "--verb=create", "--resource=pods/exec"])).code, 0);
      t.equal((await kc(["create", "rolebinding", "bob-execs", "--role=pod-exec", "--user=bob"])).code, 0);
      const allowed = await kc(["--as=bob", "exec", "web", "--", "echo", "as bob"]);
      t.equal(allowed.code, 0, allowed.stderr);
      t.equal(allowed.stdout, "as bob\n");
      const upgraded = await api.waitForAudit(
        (e) =>
          e.objectRef?.subresource === "exec" &&
          e.impersonatedUser?.username === "bob" &&
          e.responseStatus?.code === 101,
      );
      t.equal(upgraded.user.username, "pamgate-test-admin", "an exec is audited with both identities too");
      t.match(upgraded.requestURI, /command=echo&command=as\+bob/);
    },
  );
}
