// A real Kubernetes API server for tests: etcd and kube-apiserver, built from the pinned release by
// scripts/kube-apiserver/build (which scripts/bootstrap runs) into .tools/bin, started on random loopback
// ports with a fresh temp dir holding the data dir, every certificate and key, the audit policy and log.
//
// What it is: the real apiserver with RBAC authorization, so impersonated users are authorized by the
// RoleBindings a test creates, and a Metadata-level audit log, so a test can show the cluster itself records
// both the gateway's identity and the impersonated requester. What it is not: a cluster. No controller
// manager, scheduler or kubelet runs, so nothing reconciles: Pods stay Pending and unscheduled unless a test
// sets spec.nodeName, ServiceAccount tokens are never minted, namespaces are never finalized away. For
// pods/exec and pods/portforward, test/helpers/fake-kubelet.ts registers a Node whose "kubelet" is a
// loopback stand-in; the apiserver is already started with the kubelet client certificate and CA it needs.
//
// Certificates come from the openssl CLI (a Debian package bootstrap installs), not an npm dependency. All
// keys are ECDSA P-256: fast to generate, and accepted by Go's TLS, kubectl and Node alike.
import { type ChildProcess, execFile, execFileSync, type SpawnOptions, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request as httpsRequest } from "node:https";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { freePort } from "./postgres.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const TOOLS = join(ROOT, ".tools", "bin");
export const KUBE_APISERVER_BIN = join(TOOLS, "kube-apiserver");
export const ETCD_BIN = join(TOOLS, "etcd");

/** True when scripts/kube-apiserver/build has put kube-apiserver and etcd into .tools/bin. */
export function kubeApiServerAvailable(): boolean {
  return existsSync(KUBE_APISERVER_BIN) && existsSync(ETCD_BIN);
}

/** Why tests skip when kubeApiServerAvailable() is false. */
export const KUBE_APISERVER_MISSING =
  ".tools/bin/kube-apiserver or .tools/bin/etcd is missing: run scripts/bootstrap (it builds them with scripts/kube-apiserver/build, ~12 min cold)";

/**
 * The kubectl to drive the cluster with: .tools/bin/kubectl (built by bootstrap from the same release as the
 * apiserver) first, then whatever is on PATH. Debian bookworm's kubernetes-client is 1.20, too old for
 * WebSocket exec and far outside the supported skew, which is why bootstrap builds one.
 */
export function kubectlBin(): string {
  const own = join(TOOLS, "kubectl");
  return existsSync(own) ? own : "kubectl";
}

export interface Identity {
  /** PEM certificate and key, also written to certPath/keyPath. */
  certPem: string;
  keyPem: string;
  certPath: string;
  keyPath: string;
}

export interface StaticToken {
  token: string;
  user: string;
  uid?: string;
  groups?: string[];
}

export interface AuditEvent {
  auditID: string;
  stage: string;
  verb: string;
  requestURI: string;
  user: { username: string; uid?: string; groups?: string[]; extra?: Record<string, string[]> };
  impersonatedUser?: { username: string; uid?: string; groups?: string[]; extra?: Record<string, string[]> };
  objectRef?: {
    resource?: string;
    namespace?: string;
    name?: string;
    apiGroup?: string;
    subresource?: string;
  };
  responseStatus?: { code?: number; status?: string; reason?: string };
  annotations?: Record<string, string>;
  sourceIPs?: string[];
  userAgent?: string;
  [key: string]: unknown;
}

export interface KubeResponse {
  status: number;
  body: string;
  /** body parsed as JSON, or undefined when it is not JSON */
  json: unknown;
}

export interface KubectlResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface KubeApiServer {
  /** https://127.0.0.1:<port> */
  url: string;
  host: string;
  port: number;
  /** The cluster CA (it signed the serving cert, every client cert and the fake kubelet's serving cert). */
  caPem: string;
  caPath: string;
  /** A kubeconfig for the admin identity (client cert, O=system:masters: may impersonate anyone). */
  adminKubeconfigPath: string;
  /** The admin client certificate: CN=pamgate-test-admin, O=system:masters. */
  admin: Identity;
  /** A static bearer token (--token-auth-file) for the same powers: user "token-admin", group system:masters. */
  adminToken: string;
  /** The client cert kube-apiserver presents to kubelets (--kubelet-client-certificate). */
  kubeletClient: Identity;
  /** etcd's client URL, in case a test wants to look underneath. */
  etcdUrl: string;
  auditLogPath: string;
  dir: string;
  /** Environment for running kubectl yourself: KUBECONFIG=admin kubeconfig, KUBECACHEDIR in dir. */
  kubectlEnv: NodeJS.ProcessEnv;
  /** A new client certificate signed by the cluster CA: user `user`, groups as O= (RBAC sees them). */
  issueClientCert(user: string, groups?: string[]): Identity;
  /** A new serving certificate signed by the cluster CA, for 127.0.0.1 and localhost (e.g. a fake kubelet). */
  issueServingCert(name: string): Identity;
  /** One API request as admin (client cert). Pass a string body as-is, anything else as JSON. */
  request(
    method: string,
    path: string,
    body?: unknown,
    headers?: Record<string, string>,
  ): Promise<KubeResponse>;
  /** Runs kubectl (kubectlBin()) with the admin kubeconfig. Never throws on a non-zero exit. */
  kubectl(args: string[], opts?: { input?: string; timeoutMs?: number }): Promise<KubectlResult>;
  /** Audit events so far (one JSON object per line of the audit log). */
  auditEvents(): AuditEvent[];
  /** Waits until an audit event matches (the log backend writes when a request completes). */
  waitForAudit(match: (e: AuditEvent) => boolean, timeoutMs?: number): Promise<AuditEvent>;
  /** The last lines kube-apiserver and etcd wrote to stderr. */
  logs(): { apiserver: string[]; etcd: string[] };
  stop(): Promise<void>;
}

export interface KubeApiServerOptions {
  /** Extra kube-apiserver flags, after the defaults (for a repeated scalar flag, the last one wins). */
  extraArgs?: string[];
  /** Audit policy YAML. Default: every request at level Metadata, from ResponseStarted on. */
  auditPolicy?: string;
  /** Extra static bearer tokens for --token-auth-file, beside the admin's. */
  tokens?: StaticToken[];
  /** How long to wait for /readyz. Default 60 s (a cold start on 2 busy cores takes ~5–15 s). */
  startTimeoutMs?: number;
}

// Metadata level: who, what, when and the response code, never bodies (tests create Secrets). RequestReceived
// is dropped so each request is one line, written when it completes.
const DEFAULT_AUDIT_POLICY = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const SETPRIV = "/usr/bin/setpriv";

/**
 * Spawns a server that dies with the test process. A test file killed by tap's timeout (or ^C) never runs
 * its teardown, and an orphaned kube-apiserver or etcd would keep its port, memory and temp dir until
 * someone noticed; so where util-linux's setpriv exists (it is Essential in Debian) it sets
 * PR_SET_PDEATHSIG=SIGKILL and execs the server in place (same pid). Exported for fake-kubelet.ts.
 */
export function spawnTied(bin: string, args: string[], options: SpawnOptions): ChildProcess {
  const proc = existsSync(SETPRIV)
    ? spawn(SETPRIV, ["--pdeathsig", "KILL", "--", bin, ...args], options)
    : spawn(bin, args, options);
  // Also on a normal exit that skipped stop() (process.exit() in a test, an uncaught exception).
  live.add(proc);
  proc.once("exit", () => live.delete(proc));
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once("exit", () => {
      for (const p of live) p.kill("SIGKILL");
    });
  }
  return proc;
}
const live = new Set<ChildProcess>();
let exitHookInstalled = false;

/** Keeps the last `max` lines a child process writes to a stream. */
function tail(stream: NodeJS.ReadableStream | null, max = 200): string[] {
  const lines: string[] = [];
  let partial = "";
  stream?.on("data", (chunk: Buffer) => {
    const parts = (partial + chunk.toString()).split("\n");
    partial = parts.pop() ?? "";
    lines.push(...parts);
    if (lines.length > max) lines.splice(0, lines.length - max);
  });
  return lines;
}

function exitedPromise(proc: ChildProcess): Promise<void> {
  return new Promise((r) => {
    if (proc.exitCode !== null || proc.signalCode !== null) r();
    else proc.once("exit", () => r());
  });
}

async function stopProcess(proc: ChildProcess, graceMs: number): Promise<void> {
  const exited = exitedPromise(proc);
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  proc.kill("SIGTERM");
  const timer = setTimeout(() => proc.kill("SIGKILL"), graceMs);
  await exited;
  clearTimeout(timer);
}

/** Certificate minting with the openssl CLI. One `openssl req -x509 -CA` call per certificate (OpenSSL 3). */
class TestCA {
  readonly certPath: string;
  readonly keyPath: string;
  constructor(private readonly dir: string) {
    this.certPath = join(dir, "ca.crt");
    this.keyPath = join(dir, "ca.key");
    this.run(
      "ca",
      ["CN = pamgate-test-ca"],
      [
        "basicConstraints = critical, CA:TRUE",
        "keyUsage = critical, keyCertSign, cRLSign, digitalSignature",
        "subjectKeyIdentifier = hash",
      ],
    );
  }

  get pem(): string {
    return readFileSync(this.certPath, "utf8");
  }

  issue(name: string, subject: string[], extensions: string[]): Identity {
    const { certPath, keyPath } = this.run(name, subject, [
      "basicConstraints = critical, CA:FALSE",
      "keyUsage = critical, digitalSignature, keyEncipherment",
      "authorityKeyIdentifier = keyid",
      ...extensions,
    ]);
    return {
      certPath,
      keyPath,
      certPem: readFileSync(certPath, "utf8"),
      keyPem: readFileSync(keyPath, "utf8"),
    };
  }

  private run(name: string, subject: string[], extensions: string[]): { certPath: string; keyPath: string } {
    const isCa = name === "ca";
    const certPath = isCa ? this.certPath : join(this.dir, `${name}.crt`);
    const keyPath = isCa ? this.keyPath : join(this.dir, `${name}.key`);
    const config = join(this.dir, `${name}.cnf`);
    writeFileSync(
      config,
      [
        "[req]",
        "distinguished_name = dn",
        "x509_extensions = ext",
        "prompt = no",
        "[dn]",
        ...subject,
        "[ext]",
        ...extensions,
        "",
      ].join("\n"),
    );
    const args = ["req", "-x509", "-new", "-config", config, "-newkey", "ec", "-pkeyopt"];
    args.push("ec_paramgen_curve:P-256", "-nodes", "-keyout", keyPath, "-out", certPath, "-days", "2");
    if (!isCa) args.push("-CA", this.certPath, "-CAkey", this.keyPath);
    execFileSync("openssl", args, { stdio: ["ignore", "ignore", "pipe"] });
    return { certPath, keyPath };
  }
}

/**
 * openssl's config syntax for a repeated field: "0.O = a", "1.O = b". Values go into a config file, where a
 * newline would start a new entry and "$" expands a variable, so those are refused rather than escaped.
 */
function subjectLines(cn: string, groups: string[]): string[] {
  const clean = (s: string) => {
    if (/[\n\r$]/.test(s))
      throw new Error(`unsupported character in certificate subject: ${JSON.stringify(s)}`);
    return s;
  };
  return [...groups.map((g, i) => `${i}.O = ${clean(g)}`), `CN = ${clean(cn)}`];
}

function csvField(s: string): string {
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export async function startKubeApiServer(options: KubeApiServerOptions = {}): Promise<KubeApiServer> {
  if (!kubeApiServerAvailable()) throw new Error(KUBE_APISERVER_MISSING);
  const dir = mkdtempSync(join(tmpdir(), "pamgate-kube-"));
  const procs: ChildProcess[] = [];
  const cleanup = async () => {
    for (const p of procs.reverse()) await stopProcess(p, 3000);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    return await start(dir, procs, cleanup, options);
  } catch (err) {
    await cleanup();
    throw err;
  }
}

async function start(
  dir: string,
  procs: ChildProcess[],
  cleanup: () => Promise<void>,
  options: KubeApiServerOptions,
): Promise<KubeApiServer> {
  const pki = join(dir, "pki");
  mkdirSync(pki, { mode: 0o700 });
  const ca = new TestCA(pki);
  const serving = ca.issue(
    "apiserver",
    ["CN = kube-apiserver"],
    [
      "extendedKeyUsage = serverAuth",
      // The names a client may dial; "kubernetes.default.svc" keeps in-cluster-style configs verifiable too.
      "subjectAltName = IP:127.0.0.1, DNS:localhost, DNS:kubernetes, DNS:kubernetes.default.svc",
    ],
  );
  const issueClientCert = (user: string, groups: string[] = []): Identity =>
    ca.issue(`client-${randomBytes(4).toString("hex")}`, subjectLines(user, groups), [
      "extendedKeyUsage = clientAuth",
    ]);
  const issueServingCert = (name: string): Identity =>
    ca.issue(
      `serving-${name.replace(/[^A-Za-z0-9_-]/g, "_")}-${randomBytes(4).toString("hex")}`,
      subjectLines(name, []),
      ["extendedKeyUsage = serverAuth", "subjectAltName = IP:127.0.0.1, DNS:localhost"],
    );
  // system:masters bypasses RBAC entirely (and so may impersonate): the "admin" a test sets the cluster up
  // with. Identities under test (the gateway, say) should get their own cert and RoleBindings instead.
  const admin = issueClientCert("pamgate-test-admin", ["system:masters"]);
  // No groups: the kubelet only needs to verify it came from our CA, and the apiserver would treat it as a
  // user like any other cert from that CA.
  const kubeletClient = ca.issue(
    "kubelet-client",
    ["CN = kube-apiserver-kubelet-client"],
    ["extendedKeyUsage = clientAuth"],
  );

  // The service-account signing key: required flags even though no token controller ever mints a token.
  const saKey = join(pki, "sa.key");
  const saPub = join(pki, "sa.pub");
  execFileSync("openssl", ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", saKey]);
  execFileSync("openssl", ["ec", "-in", saKey, "-pubout", "-out", saPub], {
    stdio: ["ignore", "ignore", "pipe"],
  });

  const adminToken = randomBytes(24).toString("hex");
  const tokens: StaticToken[] = [
    { token: adminToken, user: "token-admin", uid: "token-admin", groups: ["system:masters"] },
    ...(options.tokens ?? []),
  ];
  const tokenFile = join(pki, "tokens.csv");
  writeFileSync(
    tokenFile,
    tokens
      .map((t) => [t.token, t.user, t.uid ?? t.user, (t.groups ?? []).join(",")].map(csvField).join(","))
      .join("\n")
      .concat("\n"),
    { mode: 0o600 },
  );

  const auditPolicyPath = join(dir, "audit-policy.yaml");
  writeFileSync(auditPolicyPath, options.auditPolicy ?? DEFAULT_AUDIT_POLICY);
  const auditLogPath = join(dir, "audit.log");

  // --- etcd --------------------------------------------------------------------------------------------
  // Random loopback ports can be taken between freePort() and the bind (tap runs test files in parallel),
  // so a failed start is retried on new ports.
  let etcdUrl = "";
  let etcdLog: string[] = [];
  for (let attempt = 1; ; attempt++) {
    const [clientPort, peerPort] = [await freePort(), await freePort()];
    etcdUrl = `http://127.0.0.1:${clientPort}`;
    const peerUrl = `http://127.0.0.1:${peerPort}`;
    const dataDir = join(dir, `etcd-${attempt}`);
    const etcd = spawnTied(
      ETCD_BIN,
      [
        "--name=pamgate-test",
        `--data-dir=${dataDir}`,
        `--listen-client-urls=${etcdUrl}`,
        `--advertise-client-urls=${etcdUrl}`,
        `--listen-peer-urls=${peerUrl}`,
        `--initial-advertise-peer-urls=${peerUrl}`,
        `--initial-cluster=pamgate-test=${peerUrl}`,
        // A throwaway data dir: skipping fsync makes every write (and so every API write) much cheaper.
        "--unsafe-no-fsync",
        "--log-level=warn",
      ],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    procs.push(etcd);
    etcdLog = tail(etcd.stderr);
    const ok = await waitUntil(
      async () => (await httpGetOk(`${etcdUrl}/health`)) || etcd.exitCode !== null,
      20_000,
    );
    if (ok && etcd.exitCode === null) break;
    await stopProcess(etcd, 1000);
    procs.pop();
    const why = etcdLog.slice(-20).join("\n");
    if (attempt < 3 && /address already in use/i.test(why)) continue;
    throw new Error(`etcd did not become healthy on ${etcdUrl}:\n${why}`);
  }

  // --- kube-apiserver ----------------------------------------------------------------------------------
  let port = 0;
  let proc: ChildProcess | undefined;
  let apiLog: string[] = [];
  const timeoutMs = options.startTimeoutMs ?? 60_000;
  for (let attempt = 1; ; attempt++) {
    port = await freePort();
    const args = [
      "--bind-address=127.0.0.1",
      "--advertise-address=127.0.0.1",
      `--secure-port=${port}`,
      `--cert-dir=${join(dir, "apiserver-certs")}`,
      `--tls-cert-file=${serving.certPath}`,
      `--tls-private-key-file=${serving.keyPath}`,
      `--client-ca-file=${ca.certPath}`,
      `--token-auth-file=${tokenFile}`,
      `--etcd-servers=${etcdUrl}`,
      // RBAC only: no AlwaysAllow fallback, so an impersonated user gets exactly what its bindings grant.
      "--authorization-mode=RBAC",
      `--service-account-issuer=https://kubernetes.default.svc`,
      `--service-account-key-file=${saPub}`,
      `--service-account-signing-key-file=${saKey}`,
      // Allocated from, never routed to: no kube-proxy runs.
      "--service-cluster-ip-range=10.96.0.0/24",
      // ServiceAccount admission would refuse every Pod until the (never running) token controller had
      // created the namespace's "default" ServiceAccount.
      "--disable-admission-plugins=ServiceAccount",
      `--audit-policy-file=${auditPolicyPath}`,
      `--audit-log-path=${auditLogPath}`,
      "--audit-log-format=json",
      // Written before the response is sent, so a test that has its answer finds the event already there.
      "--audit-log-mode=blocking",
      // How kube-apiserver reaches a node's kubelet for exec/attach/portforward/logs: our CA, our client
      // cert; fake-kubelet.ts serves with a cert from the same CA for the Node's InternalIP 127.0.0.1.
      `--kubelet-client-certificate=${kubeletClient.certPath}`,
      `--kubelet-client-key=${kubeletClient.keyPath}`,
      `--kubelet-certificate-authority=${ca.certPath}`,
      "--kubelet-preferred-address-types=InternalIP",
      // One apiserver, nothing to reconcile with: don't write its own endpoint lease into etcd.
      "--endpoint-reconciler-type=none",
      "--profiling=false",
      ...(options.extraArgs ?? []),
    ];
    proc = spawnTied(KUBE_APISERVER_BIN, args, { stdio: ["ignore", "ignore", "pipe"] });
    procs.push(proc);
    apiLog = tail(proc.stderr);
    const p = proc;
    const ready = await waitUntil(
      async () => p.exitCode !== null || (await readyz(port, ca.pem, admin)),
      timeoutMs,
    );
    if (ready && p.exitCode === null) break;
    await stopProcess(p, 1000);
    procs.pop();
    const why = apiLog.slice(-30).join("\n");
    if (attempt < 3 && /address already in use/i.test(why)) continue;
    throw new Error(
      (p.exitCode !== null
        ? `kube-apiserver exited with ${p.exitCode} before it became ready on 127.0.0.1:${port}`
        : `kube-apiserver did not become ready on 127.0.0.1:${port} within ${timeoutMs} ms`) +
        `; last log lines:\n${why}`,
    );
  }

  const url = `https://127.0.0.1:${port}`;
  const caPem = ca.pem;
  const request = (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) =>
    kubeRequest(port, caPem, admin, method, path, body, headers);

  // The default namespace is created by a controller inside kube-apiserver shortly after start, not
  // necessarily before /readyz is ok: wait briefly, then create it ourselves.
  const found = await waitUntil(
    async () => (await request("GET", "/api/v1/namespaces/default")).status === 200,
    5000,
  );
  if (!found) {
    const res = await request("POST", "/api/v1/namespaces", { metadata: { name: "default" } });
    if (res.status !== 201 && res.status !== 409)
      throw new Error(`could not create the default namespace: ${res.status} ${res.body}`);
  }

  const adminKubeconfigPath = join(dir, "admin.kubeconfig");
  writeFileSync(
    adminKubeconfigPath,
    [
      "apiVersion: v1",
      "kind: Config",
      "clusters:",
      "  - name: pamgate-test",
      "    cluster:",
      `      server: ${url}`,
      `      certificate-authority: ${ca.certPath}`,
      "users:",
      "  - name: admin",
      "    user:",
      `      client-certificate: ${admin.certPath}`,
      `      client-key: ${admin.keyPath}`,
      "contexts:",
      "  - name: admin",
      "    context: { cluster: pamgate-test, user: admin }",
      "current-context: admin",
      "",
    ].join("\n"),
    { mode: 0o600 },
  );
  // kubectl caches discovery under ~/.kube/cache unless told otherwise; keep it per cluster.
  const kubectlEnv = {
    ...process.env,
    KUBECONFIG: adminKubeconfigPath,
    KUBECACHEDIR: join(dir, "kube-cache"),
  };

  const auditEvents = (): AuditEvent[] => {
    let text: string;
    try {
      text = readFileSync(auditLogPath, "utf8");
    } catch {
      return [];
    }
    return text
      .split("\n")
      .filter((l) => l.trim() !== "")
      .map((l) => JSON.parse(l) as AuditEvent);
  };

  let stopped = false;
  return {
    url,
    host: "127.0.0.1",
    port,
    caPem,
    caPath: ca.certPath,
    adminKubeconfigPath,
    admin,
    adminToken,
    kubeletClient,
    etcdUrl,
    auditLogPath,
    dir,
    kubectlEnv,
    issueClientCert,
    issueServingCert,
    request,
    kubectl: (args, opts = {}) => runKubectl(args, kubectlEnv, opts),
    auditEvents,
    async waitForAudit(match, timeoutMs = 5000) {
      let hit: AuditEvent | undefined;
      const ok = await waitUntil(async () => {
        hit = auditEvents().find(match);
        return hit !== undefined;
      }, timeoutMs);
      if (!ok || !hit) throw new Error(`no audit event matched within ${timeoutMs} ms (${auditLogPath})`);
      return hit;
    },
    logs: () => ({ apiserver: [...apiLog], etcd: [...etcdLog] }),
    async stop() {
      if (stopped) return;
      stopped = true;
      await cleanup();
    },
  };
}

async function waitUntil(check: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return true;
    if (Date.now() > deadline) return false;
    await sleep(100);
  }
}

function httpGetOk(url: string): Promise<boolean> {
  return fetch(url, { signal: AbortSignal.timeout(2000) }).then(
    (r) => r.ok,
    () => false,
  );
}

async function readyz(port: number, caPem: string, id: Identity): Promise<boolean> {
  const res = await kubeRequest(port, caPem, id, "GET", "/readyz", undefined, {}, 2000);
  return res.status === 200 && res.body.trim() === "ok";
}

function kubeRequest(
  port: number,
  caPem: string,
  id: Identity,
  method: string,
  path: string,
  body: unknown,
  headers: Record<string, string>,
  timeoutMs = 30_000,
): Promise<KubeResponse> {
  const payload = body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body);
  return new Promise((resolvePromise, reject) => {
    const req = httpsRequest(
      {
        host: "127.0.0.1",
        port,
        method,
        path,
        ca: caPem,
        cert: id.certPem,
        key: id.keyPem,
        timeout: timeoutMs,
        headers: {
          accept: "application/json",
          ...(payload !== undefined ? { "content-type": "application/json" } : {}),
          ...headers,
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString();
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolvePromise({ status: res.statusCode ?? 0, body: text, json });
        });
      },
    );
    req.on("timeout", () => req.destroy(new Error(`${method} ${path}: no answer in ${timeoutMs} ms`)));
    req.on("error", reject);
    req.end(payload);
  });
}

function runKubectl(
  args: string[],
  env: NodeJS.ProcessEnv,
  opts: { input?: string; timeoutMs?: number },
): Promise<KubectlResult> {
  return new Promise((resolvePromise) => {
    const child = execFile(
      kubectlBin(),
      args,
      { env, timeout: opts.timeoutMs ?? 30_000, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
        resolvePromise({ code, stdout, stderr });
      },
    );
    child.stdin?.end(opts.input ?? "");
  });
}
