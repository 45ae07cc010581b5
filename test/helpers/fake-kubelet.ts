// A TEST STAND-IN for a node's kubelet, so that pods/exec and pods/portforward can be driven end to end
// through the real kube-apiserver of test/helpers/kube-apiserver.ts — there is no real kubelet, container
// runtime or container here. Exec'd commands run as plain child processes of the fake kubelet, on this
// machine, as the test user; a port-forward reaches 127.0.0.1:<port>.
//
// How the pieces meet (kube-apiserver 1.34, pkg/registry/core/pod/strategy.go and pkg/kubelet/client):
//   - the Pod must have spec.nodeName (nothing schedules it) and must not be Succeeded/Failed (kubectl
//     refuses to exec into a completed pod); we also set it Running so it looks like one;
//   - the Node's status.addresses must hold an address of a type in --kubelet-preferred-address-types (the
//     apiserver helper passes InternalIP) — 127.0.0.1 here — and status.daemonEndpoints.kubeletEndpoint.Port
//     the fake kubelet's port; the apiserver then dials https://127.0.0.1:<port>/exec/<ns>/<pod>/<container>
//     presenting --kubelet-client-certificate and checking the kubelet's serving cert against
//     --kubelet-certificate-authority (both set up by the apiserver helper, from the same test CA);
//   - kubectl ≥1.30 execs over WebSocket (v5.channel.k8s.io); the apiserver translates that into SPDY/3.1
//     towards the kubelet. v4-and-older WebSocket clients (@kubernetes/client-node) and SPDY clients are
//     passed through as they are. The stand-in (scripts/kube-apiserver/fake-kubelet, Go) serves all of them
//     with the kubelet's own stream code, k8s.io/kubelet/pkg/cri/streaming.
//   - RBAC: exec needs `create` on pods/exec (a WebSocket GET is authorized as create too, since 1.31) and
//     port-forward `create` on pods/portforward.
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { type KubeApiServer, spawnTied } from "./kube-apiserver.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const FAKE_KUBELET_BIN = join(ROOT, ".tools", "bin", "fake-kubelet");

export function fakeKubeletAvailable(): boolean {
  return existsSync(FAKE_KUBELET_BIN);
}

/** One request the fake kubelet received (it logs each as a JSON line). */
export interface FakeKubeletEvent {
  kind: "exec" | "portforward" | "unsupported";
  namespace?: string;
  pod?: string;
  container?: string;
  command?: string[];
  tty?: boolean;
  stdin?: boolean;
  ports?: number[];
  /** "SPDY/3.1" or "websocket": what the apiserver spoke to the node */
  upgrade?: string;
  protocols?: string[];
  wsProtocols?: string[];
  /** subject of the client certificate the apiserver presented */
  client?: string;
  path?: string;
}

export interface FakeKubelet {
  nodeName: string;
  port: number;
  /** Creates a Pod bound to this node and marks it Running. Its containers exist in name only. */
  createPod(
    namespace: string,
    name: string,
    opts?: { containers?: string[]; labels?: Record<string, string> },
  ): Promise<void>;
  events(): FakeKubeletEvent[];
  waitForEvent(match: (e: FakeKubeletEvent) => boolean, timeoutMs?: number): Promise<FakeKubeletEvent>;
  /** Everything else it wrote to stderr (Go errors, klog lines). */
  logs(): string[];
  /** Stops the process and deletes the Node (the Pods stay: nothing would garbage-collect them anyway). */
  stop(): Promise<void>;
}

export interface FakeKubeletOptions {
  nodeName?: string;
  /** Working directory of exec'd commands. Default: the apiserver's temp dir. */
  workdir?: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function startFakeKubelet(
  api: KubeApiServer,
  options: FakeKubeletOptions = {},
): Promise<FakeKubelet> {
  if (!fakeKubeletAvailable())
    throw new Error(
      `${FAKE_KUBELET_BIN} is missing: run scripts/bootstrap (scripts/kube-apiserver/build builds it)`,
    );
  const nodeName = options.nodeName ?? `fake-node-${randomBytes(3).toString("hex")}`;
  const serving = api.issueServingCert(nodeName);
  const proc: ChildProcess = spawnTied(
    FAKE_KUBELET_BIN,
    [
      "--listen=127.0.0.1:0",
      `--tls-cert=${serving.certPath}`,
      `--tls-key=${serving.keyPath}`,
      // The CA that signed the apiserver's --kubelet-client-certificate.
      `--client-ca=${api.caPath}`,
      `--workdir=${options.workdir ?? api.dir}`,
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  const events: FakeKubeletEvent[] = [];
  const other: string[] = [];
  let partial = "";
  proc.stderr?.on("data", (chunk: Buffer) => {
    const lines = (partial + chunk.toString()).split("\n");
    partial = lines.pop() ?? "";
    for (const line of lines) {
      if (line.startsWith('{"fakeKubelet":'))
        events.push((JSON.parse(line) as { fakeKubelet: FakeKubeletEvent }).fakeKubelet);
      else if (line.trim() !== "") other.push(line);
    }
    if (other.length > 200) other.splice(0, other.length - 200);
  });
  const exited = new Promise<void>((r) => proc.once("exit", () => r()));
  const kill = async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill("SIGTERM");
      const timer = setTimeout(() => proc.kill("SIGKILL"), 3000);
      await exited;
      clearTimeout(timer);
    }
  };

  // It prints {"listening":"127.0.0.1:PORT"} once the socket is bound, so port 0 needs no race-prone probing.
  const port = await new Promise<number>((resolvePort, reject) => {
    let out = "";
    const timer = setTimeout(
      () => reject(new Error(`fake-kubelet did not start:\n${other.join("\n")}`)),
      10_000,
    );
    proc.stdout?.on("data", (c: Buffer) => {
      out += c.toString();
      const m = /"listening":"127\.0\.0\.1:(\d+)"/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolvePort(Number(m[1]));
      }
    });
    proc.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`fake-kubelet exited with ${code}:\n${other.join("\n")}`));
    });
  }).catch(async (err) => {
    await kill();
    throw err;
  });

  const now = new Date().toISOString();
  const node = await api.request("POST", "/api/v1/nodes", {
    apiVersion: "v1",
    kind: "Node",
    metadata: { name: nodeName, labels: { "pamgate.test/fake-kubelet": "true" } },
    // Node status is kept on create (only pods reset theirs), so one request registers the endpoint.
    status: {
      addresses: [
        { type: "InternalIP", address: "127.0.0.1" },
        { type: "Hostname", address: nodeName },
      ],
      daemonEndpoints: { kubeletEndpoint: { Port: port } },
      conditions: [
        {
          type: "Ready",
          status: "True",
          reason: "FakeKubelet",
          message: "test stand-in (test/helpers/fake-kubelet.ts): serves exec and port-forward only",
          lastHeartbeatTime: now,
          lastTransitionTime: now,
        },
      ],
      nodeInfo: { kubeletVersion: "fake", containerRuntimeVersion: "none://stand-in" },
    },
  });
  if (node.status !== 201) {
    await kill();
    throw new Error(`could not register Node ${nodeName}: ${node.status} ${node.body}`);
  }

  return {
    nodeName,
    port,
    async createPod(namespace, name, opts = {}) {
      const containers = opts.containers ?? ["main"];
      const created = await api.request("POST", `/api/v1/namespaces/${namespace}/pods`, {
        apiVersion: "v1",
        kind: "Pod",
        metadata: { name, labels: opts.labels ?? {} },
        spec: {
          nodeName,
          // Never pulled: no runtime exists. .invalid keeps it from ever resolving anywhere.
          containers: containers.map((c) => ({ name: c, image: "stand-in.invalid/fake-kubelet:0" })),
        },
      });
      if (created.status !== 201)
        throw new Error(`could not create pod ${namespace}/${name}: ${created.status} ${created.body}`);
      const started = new Date().toISOString();
      const status = await api.request(
        "PATCH",
        `/api/v1/namespaces/${namespace}/pods/${name}/status`,
        {
          status: {
            phase: "Running",
            hostIP: "127.0.0.1",
            conditions: [{ type: "Ready", status: "True", lastTransitionTime: started }],
            containerStatuses: containers.map((c) => ({
              name: c,
              image: "stand-in.invalid/fake-kubelet:0",
              imageID: "",
              ready: true,
              restartCount: 0,
              started: true,
              state: { running: { startedAt: started } },
            })),
          },
        },
        { "content-type": "application/merge-patch+json" },
      );
      if (status.status !== 200)
        throw new Error(`could not mark pod ${namespace}/${name} Running: ${status.status} ${status.body}`);
    },
    events: () => [...events],
    async waitForEvent(match, timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const hit = events.find(match);
        if (hit) return hit;
        if (Date.now() > deadline) throw new Error(`no fake-kubelet event matched within ${timeoutMs} ms`);
        await sleep(25);
      }
    },
    logs: () => [...other],
    async stop() {
      await kill();
      await api.request("DELETE", `/api/v1/nodes/${nodeName}`).catch(() => undefined);
    },
  };
}
