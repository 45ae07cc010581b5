// The deployment artifacts under deploy/: the Helm chart (helm lint, helm template, and the security settings of
// what it renders; the gateway.yaml it renders is one pamgate itself accepts), the systemd unit
// (systemd-analyze verify), the Dockerfile (read: this machine has no Docker engine), and the runtime image's
// contents — dist/ and the dependencies without tsx — running `pamgate run` under strace to prove it writes
// nothing outside its state directory, so a read-only root file system works.
//
// helm comes from scripts/bootstrap (.tools/bin/helm); without it, or without systemd-analyze or strace, the
// tests that need them are skipped and say why.
import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import {
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import t from "tap";
import { parseAllDocuments, parse as parseYaml, stringify } from "yaml";
import { parseConfig } from "../../src/config/load.js";
import { packagePath } from "../../src/util/tools.js";
import { freePort } from "../helpers/postgres.js";

// Real processes, several runs of the pamgate command (through tsx in a checkout): slow on a busy 2-core machine.
t.setTimeout(15 * 60_000);

const CHART = packagePath("deploy", "helm", "pamgate");
const HELM = packagePath(".tools", "bin", "helm");
/** helm built with `go install` does not know its Kubernetes version (it would assume 1.20). */
const KUBE_VERSION = "1.31.0";

function which(cmd: string): string | null {
  const r = spawnSync("sh", ["-c", `command -v ${cmd}`], { encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim() : null;
}

function helm(args: string[]) {
  return spawnSync(HELM, args, { encoding: "utf8" });
}

type Manifest = {
  kind: string;
  metadata: { name: string; annotations?: Record<string, string> };
  spec: Record<string, unknown>;
  data?: Record<string, string>;
};

function template(...set: string[]): Manifest[] {
  const r = helm([
    "template",
    "t",
    CHART,
    "--kube-version",
    KUBE_VERSION,
    ...set.flatMap((s) => ["--set", s]),
  ]);
  if (r.status !== 0) throw new Error(`helm template failed:\n${r.stderr}`);
  return parseAllDocuments(r.stdout)
    .map((d) => d.toJS() as Manifest)
    .filter(Boolean);
}

const noHelm = existsSync(HELM)
  ? false
  : "helm is not installed: PAMGATE_BOOTSTRAP_HELM=1 scripts/bootstrap builds it into .tools/bin (~5 min; not by default, for CI time)";

t.test("helm lint passes, also strictly and for a StatefulSet", { skip: noHelm }, async (t) => {
  for (const args of [
    [],
    ["--strict"],
    ["--strict", "--set", "workload=StatefulSet,replicaCount=3,config.store.type=postgres"],
  ]) {
    const r = helm(["lint", CHART, ...args]);
    t.equal(r.status, 0, `helm lint ${args.join(" ")}:\n${r.stdout}${r.stderr}`);
    t.match(r.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
  }
});

t.test(
  "the rendered Deployment is locked down and drains within its grace period",
  { skip: noHelm },
  async (t) => {
    const docs = template();
    const kinds = docs.map((d) => d.kind).sort();
    t.same(kinds, [
      "ConfigMap",
      "Deployment",
      "PersistentVolumeClaim",
      "PodDisruptionBudget",
      "Service",
      "Service",
      "ServiceAccount",
    ]);
    const dep = docs.find((d) => d.kind === "Deployment") as Manifest;
    const pod = (dep.spec.template as { spec: Record<string, unknown> }).spec as {
      securityContext: Record<string, unknown>;
      terminationGracePeriodSeconds: number;
      automountServiceAccountToken: boolean;
      containers: Array<Record<string, unknown>>;
      volumes: Array<Record<string, unknown>>;
    };
    t.match(pod.securityContext, {
      runAsNonRoot: true,
      runAsUser: 10001,
      runAsGroup: 10001,
      fsGroup: 10001,
      seccompProfile: { type: "RuntimeDefault" },
    });
    t.equal(pod.automountServiceAccountToken, false, "no Kubernetes API token in the pod");
    const c = pod.containers[0] as {
      securityContext: Record<string, unknown>;
      args: string[];
      livenessProbe: { httpGet: { path: string } };
      readinessProbe: { httpGet: { path: string } };
      startupProbe: { httpGet: { path: string } };
      volumeMounts: Array<{ name: string; mountPath: string; readOnly?: boolean }>;
      env: Array<{ name: string; value?: string; valueFrom?: unknown }>;
    };
    t.same(c.securityContext, {
      allowPrivilegeEscalation: false,
      capabilities: { drop: ["ALL"] },
      privileged: false,
      readOnlyRootFilesystem: true,
      runAsNonRoot: true,
    });
    t.equal(c.livenessProbe.httpGet.path, "/healthz");
    t.equal(c.startupProbe.httpGet.path, "/healthz");
    t.equal(
      c.readinessProbe.httpGet.path,
      "/readyz",
      "readiness follows /readyz, which is 503 while draining",
    );
    t.same(c.args, ["run", "--config", "/etc/pamgate/config/gateway.yaml"]);
    const mounts = Object.fromEntries(c.volumeMounts.map((m) => [m.mountPath, m]));
    t.equal(mounts["/var/lib/pamgate"]?.name, "state", "the state volume");
    t.ok(mounts["/tmp"], "an in-memory /tmp");
    t.equal(mounts["/etc/pamgate/config"]?.readOnly, true);
    t.equal(mounts["/etc/pamgate/secrets/tls"]?.readOnly, true, "secrets mounted read-only");
    t.match(
      c.env.find((e) => e.name === "ORDERS_DB_PASSWORD"),
      { valueFrom: { secretKeyRef: { name: "pamgate-db-credentials", key: "orders-db-password" } } },
      "credentials come from a Secret",
    );
    const state = pod.volumes.find((v) => v.name === "state");
    t.match(state, { persistentVolumeClaim: { claimName: "t-pamgate" } }, "the spool is on a claim");
    t.equal((dep.spec.strategy as { type: string }).type, "Recreate", "one writer per spool");

    const config = docs.find((d) => d.kind === "ConfigMap")?.data?.["gateway.yaml"] as string;
    const parsed = parseConfig(config, "gateway.yaml"); // throws with file:line: field on any problem
    t.ok(parsed.audit?.dir.startsWith("/var/lib/pamgate/"), "the spool is on the volume");
    const drain = parsed.shutdown?.drain_timeout_s ?? 30;
    const ship = parsed.shutdown?.ship_timeout_s ?? 10;
    t.ok(
      pod.terminationGracePeriodSeconds >= drain + ship,
      `terminationGracePeriodSeconds ${pod.terminationGracePeriodSeconds} ≥ drain ${drain} + ship ${ship}`,
    );
    t.match(dep.spec.template, { metadata: { annotations: { "checksum/config": /^[0-9a-f]{64}$/ } } });

    const services = docs.filter((d) => d.kind === "Service");
    const ports = services.flatMap((s) =>
      (s.spec.ports as Array<{ name: string; port: number }>).map((p) => p.name),
    );
    t.same(ports.sort(), ["api", "postgres"], "a Service for the listeners and one for the API");
    t.match(docs.find((d) => d.kind === "PodDisruptionBudget")?.spec, { maxUnavailable: 1 });
    t.match(docs.find((d) => d.kind === "PersistentVolumeClaim")?.metadata, {
      annotations: { "helm.sh/resource-policy": "keep" },
    });

    const longer = template("config.shutdown.drain_timeout_s=300");
    const longerPod = longer.find((d) => d.kind === "Deployment")?.spec.template as {
      spec: Record<string, number>;
    };
    const grace = longerPod.spec.terminationGracePeriodSeconds;
    t.equal(grace, 320, "the grace period follows the drain timeout");
  },
);

t.test("a StatefulSet gives every replica a durable spool of its own", { skip: noHelm }, async (t) => {
  const docs = template(
    "workload=StatefulSet",
    "replicaCount=3",
    "config.store.type=postgres",
    "config.store.url_env=PAMGATE_STORE_URL",
  );
  t.notOk(
    docs.some((d) => d.kind === "Deployment" || d.kind === "PersistentVolumeClaim"),
    "no Deployment, no shared claim",
  );
  const sts = docs.find((d) => d.kind === "StatefulSet") as Manifest;
  t.equal(sts.spec.replicas, 3);
  t.match(sts.spec.volumeClaimTemplates, [
    { metadata: { name: "state" }, spec: { accessModes: ["ReadWriteOnce"] } },
  ]);
  const config = docs.find((d) => d.kind === "ConfigMap")?.data?.["gateway.yaml"] as string;
  t.equal(parseConfig(config, "gateway.yaml").store?.type, "postgres");
});

t.test(
  "values that would lose records or break probes are refused with the reason",
  { skip: noHelm },
  async (t) => {
    const refused = (set: string, reason: RegExp) => {
      const r = helm(["template", "t", CHART, "--kube-version", KUBE_VERSION, "--set", set]);
      t.not(r.status, 0, set);
      t.match(r.stderr, reason, set);
    };
    refused("replicaCount=2", /embedded belongs to one process/);
    refused("replicaCount=2,config.store.type=postgres", /ReadWriteOnce volume cannot hold the spools/);
    refused("config.listeners.api.host=127.0.0.1", /kubelet probes/);
    refused("config.audit.dir=/tmp/audit", /persistent volume/);
    refused("workload=DaemonSet", /Deployment or StatefulSet/);

    const ephemeral = template("persistence.enabled=false");
    const ephemeralPod = ephemeral.find((d) => d.kind === "Deployment")?.spec.template as {
      spec: { volumes: Array<Record<string, unknown>> };
    };
    const pod = ephemeralPod.spec;
    t.match(
      pod.volumes.find((v) => v.name === "state"),
      { emptyDir: {} },
      "without persistence the spool is an emptyDir",
    );
    const notes = readFileSync(join(CHART, "templates", "NOTES.txt"), "utf8");
    t.match(notes, /LOST when a pod is deleted/, "and NOTES.txt says what that costs");
  },
);

const noSystemd = which("systemd-analyze") ? false : "systemd-analyze is not installed";

t.test(
  "the systemd unit verifies and carries the drain and hardening settings",
  { skip: noSystemd },
  async (t) => {
    const unit = packagePath("deploy", "systemd", "pamgate.service");
    const r = spawnSync("systemd-analyze", ["verify", unit], { encoding: "utf8" });
    t.equal(r.status, 0, `systemd-analyze verify:\n${r.stdout}${r.stderr}`);
    t.equal(r.stderr.trim(), "", "no warnings");
    const text = readFileSync(unit, "utf8");
    const value = (key: string) =>
      text
        .split("\n")
        .filter((l) => l.startsWith(`${key}=`))
        .map((l) => l.slice(key.length + 1));
    t.same(value("Type"), ["exec"]);
    t.same(value("ExecReload"), ["/bin/kill -HUP $MAINPID"]);
    t.same(value("KillSignal"), ["SIGTERM"]);
    t.same(value("KillMode"), ["mixed"], "SIGTERM to pamgate alone; it stops its workers itself");
    t.ok(
      Number(value("TimeoutStopSec")[0]) >= 30 + 10,
      "TimeoutStopSec covers the default drain and ship timeouts",
    );
    const hardening: Record<string, string> = {
      NoNewPrivileges: "yes",
      ProtectSystem: "strict",
      ReadWritePaths: "/var/lib/pamgate",
      PrivateTmp: "yes",
      StateDirectory: "pamgate",
      CapabilityBoundingSet: "",
      User: "pamgate",
    };
    for (const [k, v] of Object.entries(hardening)) t.same(value(k), [v], `${k}=${v}`);
    const security = spawnSync("systemd-analyze", ["security", "--offline=true", unit], { encoding: "utf8" });
    const exposure = /Overall exposure level for pamgate\.service: ([\d.]+)/.exec(security.stdout);
    if (exposure) t.ok(Number(exposure[1]) <= 2, `systemd-analyze security exposure ${exposure[1]} (OK ≤ 2)`);
  },
);

t.test("the Dockerfile: two stages, a non-root runtime with a volume, a node health check", async (t) => {
  const text = readFileSync(packagePath("deploy", "Dockerfile"), "utf8");
  const lines = text
    .replace(/\\\n/g, " ")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"));
  const stages = lines.filter((l) => l.startsWith("FROM "));
  t.same(
    stages.map((s) => s.split(/\s+/).slice(1).join(" ")),
    ["build", "runtime"].map((stage) => `\${NODE_IMAGE} AS ${stage}`),
  );
  t.ok(lines.includes("ARG NODE_IMAGE=node:20-bookworm-slim"));
  const runtime = lines.slice(lines.indexOf(stages[1] as string));
  const build = lines.slice(0, lines.indexOf(stages[1] as string));
  t.ok(runtime.includes("USER 10001:10001"), "runs as uid 10001");
  t.ok(runtime.includes('VOLUME ["/var/lib/pamgate"]'));
  t.match(
    runtime.find((l) => l.startsWith("ENV ")),
    /HOME=\/var\/lib\/pamgate .*TMPDIR=\/var\/lib\/pamgate\/tmp/,
  );
  t.ok(runtime.includes('ENTRYPOINT ["node", "bin/pamgate.js"]'));
  t.ok(runtime.includes('CMD ["run", "--config", "/etc/pamgate/gateway.yaml"]'));
  t.match(
    runtime.find((l) => l.startsWith("HEALTHCHECK ")),
    /CMD \["node", "-e", ".*\/healthz/,
  );
  t.notOk(
    /curl|wget|opa/.test(runtime.filter((l) => !l.startsWith("HEALTHCHECK")).join("\n")),
    "no curl, no opa",
  );
  t.same(
    runtime.filter((l) => l.startsWith("COPY ")).map((l) => l.split(/\s+/).at(-2)),
    ["/src/package.json", "/src/bin", "/src/dist", "/src/node_modules", "/src/policies"],
    "the runtime stage takes only what `pamgate run` loads",
  );
  t.ok(
    build.some((l) => l.includes("npm prune --omit=dev")),
    "production dependencies only",
  );

  // Everything the build stage copies from the context is let in by .dockerignore.
  const allowed = readFileSync(packagePath(".dockerignore"), "utf8")
    .split("\n")
    .filter((l) => l.startsWith("!"))
    .map((l) => l.slice(1));
  const copied = build
    .filter((l) => l.startsWith("COPY ") && !l.includes("--from"))
    .flatMap((l) => l.split(/\s+/).slice(1, -1));
  for (const path of copied) {
    t.ok(allowed.includes(path), `${path} is in the build context`);
    t.ok(existsSync(packagePath(path)), `${path} exists`);
  }
});

const noStrace = which("strace") ? false : "strace is not installed (scripts/bootstrap installs it)";

t.test(
  "the runtime image's contents run `pamgate run` without tsx or opa, writing only under the state directory",
  { skip: noStrace },
  async (t) => {
    // The runtime stage's layout: package.json, bin/, dist/, policies/ and the dependencies — less tsx — with
    // HOME and TMPDIR on the state volume, as deploy/Dockerfile sets them.
    const dir = t.testdir();
    const app = join(dir, "opt", "pamgate");
    const state = join(dir, "var", "lib", "pamgate");
    mkdirSync(app, { recursive: true });
    mkdirSync(state, { recursive: true });
    execFileSync(process.execPath, [packagePath("scripts", "build.mjs"), "--out", join(app, "dist")], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    for (const f of ["package.json", "bin", "policies"])
      cpSync(packagePath(f), join(app, f), { recursive: true });
    mkdirSync(join(app, "node_modules"));
    for (const name of readdirSync(packagePath("node_modules")))
      if (name !== "tsx" && name !== ".bin")
        symlinkSync(packagePath("node_modules", name), join(app, "node_modules", name));
    // The bundle is built beforehand (CI does it): the gateway itself never runs opa.
    const bundle = join(dir, "bundle.tar.gz");
    execFileSync(process.execPath, [
      packagePath("bin", "pamgate.js"),
      "bundle",
      "build",
      "-o",
      bundle,
      "--revision",
      "r1",
    ]);
    const port = await freePort();
    const apiPort = await freePort();
    const config = {
      listeners: { postgres: { host: "127.0.0.1", port }, api: { host: "127.0.0.1", port: apiPort } },
      policy: { bundle },
      identity: { issuers: [{ issuer: "https://idp.example.com", audience: "pamgate" }] },
      resources: [
        {
          name: "orders-db",
          kind: "postgres",
          upstream: { host: "127.0.0.1", port: 5432, database: "orders", user: "gw" },
          credentials: { password_env: "ORDERS_DB_PASSWORD" },
        },
      ],
      store: { type: "embedded", dir: join(state, "store") },
      audit: { dir: join(state, "audit") },
      shutdown: { drain_timeout_s: 1, ship_timeout_s: 1 },
    };
    const configFile = join(dir, "gateway.yaml");
    writeFileSync(configFile, stringify(config));
    const traces = join(dir, "trace");
    mkdirSync(traces);
    const proc: ChildProcess = spawn(
      "strace",
      [
        "-ff", // a file per process: no "unfinished … resumed" lines
        "-qq",
        "-o",
        join(traces, "t"),
        "-e",
        "trace=open,openat,creat,mkdir,mkdirat,rename,renameat,renameat2,unlink,unlinkat,rmdir,symlink,symlinkat,link,linkat",
        // `env -i`: exactly this environment (not even the test runner's NODE_OPTIONS); no .tools/bin: no opa.
        "env",
        "-i",
        "PATH=/usr/bin:/bin",
        "NODE_ENV=production",
        `HOME=${state}`,
        `TMPDIR=${join(state, "tmp")}`,
        "ORDERS_DB_PASSWORD=not-used",
        "PAMGATE_LOG_LEVEL=info",
        process.execPath,
        "bin/pamgate.js",
        "run",
        "--config",
        configFile,
      ],
      { cwd: app, stdio: ["ignore", "pipe", "pipe"] },
    );
    let log = "";
    proc.stderr?.on("data", (c: Buffer) => {
      log += c.toString();
    });
    const exited = new Promise<number | null>((resolve) => proc.once("exit", (code) => resolve(code)));
    t.teardown(() => {
      if (proc.exitCode === null) proc.kill("SIGKILL");
    });
    for (let i = 0; i < 1200 && !log.includes("pamgate running"); i++) {
      if (proc.exitCode !== null) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    t.match(log, /pamgate running/, "it starts");
    t.equal((await fetch(`http://127.0.0.1:${apiPort}/healthz`)).status, 200, "/healthz answers");
    t.equal((await fetch(`http://127.0.0.1:${apiPort}/readyz`)).status, 200, "and it is ready");
    process.kill(findChild(proc.pid as number), "SIGTERM");
    t.equal(await exited, 0, `SIGTERM: exit 0\n${log.slice(-2000)}`);

    const writes = readdirSync(traces)
      .flatMap((f) => readFileSync(join(traces, f), "utf8").split("\n"))
      .filter((l) => !/= -1 E/.test(l))
      .filter((l) => /O_WRONLY|O_RDWR|O_CREAT|mkdir|rename|unlink|rmdir|symlink|link\(/.test(l))
      .map((l) => /"([^"]+)"/.exec(l)?.[1] ?? l)
      .filter((p) => !p.startsWith(state) && !/^\/dev\/(null|tty|pts\/|urandom|random)/.test(p));
    t.same([...new Set(writes)], [], "nothing written outside the state directory");
    t.ok(existsSync(join(state, "audit", "spool.json")), "the spool is in the state directory");
  },
);

/** strace's child: the node process (the pid the SIGTERM must reach). */
function findChild(pid: number): number {
  const out = execFileSync("ps", ["-o", "pid=", "--ppid", String(pid)], { encoding: "utf8" }).trim();
  return Number(out.split("\n")[0]);
}

t.test("the chart's values file documents the volume and the drain", async (t) => {
  const values = parseYaml(readFileSync(join(CHART, "values.yaml"), "utf8")) as {
    config: { shutdown: { drain_timeout_s: number } };
    securityContext: { readOnlyRootFilesystem: boolean };
  };
  t.equal(values.config.shutdown.drain_timeout_s, 30);
  t.equal(values.securityContext.readOnlyRootFilesystem, true);
});
