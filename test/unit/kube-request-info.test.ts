// Kubernetes request attributes (src/proxy/kubernetes/request-info.ts). Every case of the shared table
// (test/fixtures/kubernetes/request-info-cases.json) goes through parseRequestInfo, and then the same table —
// plus seeded random URLs — through Kubernetes' own RequestInfoFactory (scripts/kube-requestinfo, built with Go
// into .tools/bin on first use). For every request pamgate accepts, its attributes must be the apiserver's:
// that is the point, a gateway deciding on other attributes than the apiserver authorizes has a bypass in the
// gap. For every request it refuses, the table records what the apiserver would have made of it instead
// (`k8s`: a subset of its attributes, "unparsable" when Go's HTTP server rejects the URL, "error" when
// RequestInfoFactory fails and the apiserver answers 500), and that is checked against Go too: it is the
// evidence that refusing is right (Kubernetes splits at an encoded "/", keeps ".." as a resource name, trims
// "//", drops query pairs it cannot decode and with them the name a field selector gave).
import { execFile, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { promisify } from "node:util";
import t, { type Test } from "tap";
import {
  isRequestInfoError,
  MAX_URL_LENGTH,
  parseRequestInfo,
  REQUEST_INFO_REASONS,
  type RequestInfo,
  type RequestInfoErrorCode,
} from "../../src/proxy/kubernetes/request-info.js";
import { packagePath } from "../../src/util/tools.js";

interface Case {
  note: string;
  method: string;
  url: string;
  /** Appended to url (for the overlong cases). */
  repeat?: { text: string; times: number };
  expect?: Partial<RequestInfo>;
  error?: RequestInfoErrorCode;
  /** For refused cases: what Kubernetes makes of the request. */
  k8s?: Record<string, unknown> | "unparsable" | "error";
}

const CASES: Case[] = JSON.parse(
  readFileSync(packagePath("test", "fixtures", "kubernetes", "request-info-cases.json"), "utf8"),
);
const urlOf = (c: Case) => c.url + (c.repeat ? c.repeat.text.repeat(c.repeat.times) : "");
const label = (c: Case) => `${c.note}: ${c.method} ${c.url.length > 90 ? `${c.url.slice(0, 90)}…` : c.url}`;

/** The attributes both sides compute, in pamgate's names (Go's RequestInfo field names in comments). */
const COMPARED = [
  "is_resource_request", // IsResourceRequest
  "path", // Path
  "k8s_verb", // Verb
  "api_prefix", // APIPrefix
  "api_group", // APIGroup
  "api_version", // APIVersion
  "namespace", // Namespace
  "resource", // Resource
  "subresource", // Subresource
  "name", // Name
  "parts", // Parts (nil for non-resource requests)
  "label_selector", // LabelSelector
  "field_selector", // FieldSelector
] as const;

interface GoInfo {
  IsResourceRequest: boolean;
  Path: string;
  Verb: string;
  APIPrefix: string;
  APIGroup: string;
  APIVersion: string;
  Namespace: string;
  Resource: string;
  Subresource: string;
  Name: string;
  Parts: string[] | null;
  LabelSelector: string;
  FieldSelector: string;
}

interface GoResult {
  unparsable?: string;
  error?: string;
  info?: GoInfo;
  connect?: {
    command?: string[];
    container: string;
    stdin: boolean;
    stdout: boolean;
    stderr: boolean;
    tty: boolean;
    ports?: number[];
    error?: string;
  };
}

function fromGo(g: GoInfo): Record<(typeof COMPARED)[number], unknown> {
  return {
    is_resource_request: g.IsResourceRequest,
    path: g.Path,
    k8s_verb: g.Verb,
    api_prefix: g.APIPrefix,
    api_group: g.APIGroup,
    api_version: g.APIVersion,
    namespace: g.Namespace,
    resource: g.Resource,
    subresource: g.Subresource,
    name: g.Name,
    parts: g.Parts ?? [],
    label_selector: g.LabelSelector,
    field_selector: g.FieldSelector,
  };
}

function pick(o: object, keys: readonly string[]): Record<string, unknown> {
  const r: Record<string, unknown> = {};
  for (const k of keys) r[k] = (o as Record<string, unknown>)[k];
  return r;
}

/** The one documented difference: these pod subresources are their own verb. */
function isConnect(info: RequestInfo): boolean {
  return (
    info.is_resource_request &&
    info.api_group === "" &&
    info.resource === "pods" &&
    ["exec", "attach", "portforward"].includes(info.subresource)
  );
}

t.test("the table", async (t) => {
  t.ok(CASES.length >= 60, `${CASES.length} cases`);
  const codes = new Set(CASES.flatMap((c) => (c.error ? [c.error] : [])));
  for (const code of Object.keys(REQUEST_INFO_REASONS))
    t.ok(codes.has(code as RequestInfoErrorCode), `${code} has a case`);
  for (const c of CASES) {
    t.ok((c.expect === undefined) !== (c.error === undefined), `${c.note}: expect or error`);
    if (c.error) t.ok(c.k8s !== undefined, `${c.note}: says what Kubernetes does`);
  }
});

t.test("every case through parseRequestInfo", async (t) => {
  for (const c of CASES) {
    const r = parseRequestInfo(c.method, urlOf(c));
    if (c.error) {
      t.same(isRequestInfoError(r) ? r.code : r, c.error, label(c));
      // Messages go to the client and the audit trail: they name the problem without echoing 64 KiB.
      if (isRequestInfoError(r)) t.ok(r.message.length > 10 && r.message.length < 400, `${c.note}: message`);
      continue;
    }
    if (isRequestInfoError(r)) {
      t.fail(`${label(c)}: refused: ${r.code} ${r.message}`);
      continue;
    }
    t.same(pick(r, Object.keys(c.expect ?? {})), c.expect, label(c));
    t.equal(r.verb, isConnect(r) ? r.subresource : r.k8s_verb, `${c.note}: verb`);
  }
});

t.test("never throws, and refuses what it cannot read", async (t) => {
  const rnd = prng(7);
  let refused = 0;
  for (let i = 0; i < 3000; i++) {
    const { method, url } = randomRequest(rnd);
    const r = parseRequestInfo(method, url);
    if (isRequestInfoError(r)) refused++;
    else if (r.is_resource_request && r.resource === "")
      t.fail(`${method} ${url}: a resource request without a resource`);
  }
  t.ok(refused > 300 && refused < 2700, `${refused} of 3000 random requests refused (both kinds exercised)`);
  t.ok(
    isRequestInfoError(parseRequestInfo("GET", `/api/v1/pods?x=${"a".repeat(MAX_URL_LENGTH)}`)),
    "length cap",
  );
});

// --- Kubernetes' own code ---------------------------------------------------------------------------------

const ROOT = t;
const GO_DIR = packagePath("scripts", "kube-requestinfo");
const BIN = packagePath(".tools", "bin", "kube-requestinfo");

/** Whether `go` runs at all: only its absence skips the comparison; a failing build fails it. */
function haveGo(): boolean {
  const r = spawnSync("go", ["version"], { encoding: "utf8" });
  return !r.error;
}

/**
 * The checker binary, built once per source: keyed by the hash of go.mod, go.sum and main.go (a dependency
 * bump changes go.sum, an edit of the checker main.go), written aside and renamed so parallel runs never see a
 * half-written file.
 */
async function checker(t: Test): Promise<string> {
  const hash = createHash("sha256");
  for (const f of ["go.mod", "go.sum", "main.go"]) hash.update(readFileSync(`${GO_DIR}/${f}`));
  const key = hash.digest("hex");
  const keyFile = `${BIN}.key`;
  if (existsSync(BIN) && existsSync(keyFile) && readFileSync(keyFile, "utf8").trim() === key) return BIN;
  mkdirSync(packagePath(".tools", "bin"), { recursive: true });
  // A cold build downloads k8s.io/apiserver and compiles ~1 min on 2 cores: tell the runner (the root test's
  // timeout is the file's) to wait longer than the configured 120 s.
  ROOT.setTimeout(15 * 60_000);
  const tmp = `${BIN}.${process.pid}.tmp`;
  const started = Date.now();
  await promisify(execFile)("go", ["build", "-trimpath", "-o", tmp, "."], {
    cwd: GO_DIR,
    env: { ...process.env, GOFLAGS: "-buildvcs=false", GOTOOLCHAIN: "local" },
    timeout: 10 * 60_000,
    maxBuffer: 16 << 20,
  });
  renameSync(tmp, BIN);
  writeFileSync(keyFile, `${key}\n`);
  t.comment(`built ${BIN} in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  return BIN;
}

async function runGo(bin: string, requests: Array<{ method: string; url: string }>): Promise<GoResult[]> {
  const child = execFile(bin, { maxBuffer: 64 << 20 });
  const out = new Promise<string>((resolve, reject) => {
    let stdout = "";
    let stderr = "";
    child.stdout?.on("data", (d) => {
      stdout += d;
    });
    child.stderr?.on("data", (d) => {
      stderr += d;
    });
    child.on("error", reject);
    child.on("close", (code) =>
      code === 0 ? resolve(stdout) : reject(new Error(`exit ${code}: ${stderr}`)),
    );
  });
  child.stdin?.end(JSON.stringify(requests));
  const results = JSON.parse(await out) as GoResult[];
  if (results.length !== requests.length) throw new Error(`${results.length} results for ${requests.length}`);
  return results;
}

const NO_GO = haveGo()
  ? false
  : "go is not installed: cannot build scripts/kube-requestinfo to compare with Kubernetes' own code";

t.test("Kubernetes' RequestInfoFactory (k8s.io/apiserver) agrees", { skip: NO_GO }, async (t) => {
  const bin = await checker(t);
  const rnd = prng(42);
  const random = Array.from({ length: 3000 }, () => randomRequest(rnd));
  const requests = [...CASES.map((c) => ({ method: c.method, url: urlOf(c) })), ...random];
  const results = await runGo(bin, requests);

  CASES.forEach((c, i) => {
    const g = results[i] as GoResult;
    if (c.error) {
      // pamgate refuses; the table says what Kubernetes would have done with it.
      if (c.k8s === "unparsable") t.ok(g.unparsable, `${label(c)}: Go's URL parser rejects it`);
      else if (c.k8s === "error") t.ok(g.error, `${label(c)}: RequestInfoFactory fails (500)`);
      else if (!g.info || g.unparsable || g.error) t.fail(`${label(c)}: Kubernetes: ${JSON.stringify(g)}`);
      else {
        const k8s = c.k8s as Record<string, unknown>;
        t.same(pick(fromGo(g.info), Object.keys(k8s)), k8s, `${label(c)}: Kubernetes computes`);
      }
      return;
    }
    const r = parseRequestInfo(c.method, urlOf(c));
    if (isRequestInfoError(r)) return; // failed above
    compare(t, label(c), r, g);
  });

  let accepted = 0;
  random.forEach((q, j) => {
    const r = parseRequestInfo(q.method, q.url);
    if (isRequestInfoError(r)) return;
    accepted++;
    compare(t, `random: ${q.method} ${q.url}`, r, results[CASES.length + j] as GoResult, true);
  });
  t.ok(accepted > 300, `${accepted} random requests accepted and compared`);
});

/** pamgate's attributes against Go's; quiet (one assertion) on agreement when many are compared. */
function compare(t: Test, what: string, r: RequestInfo, g: GoResult, quiet = false): void {
  if (!g.info || g.unparsable || g.error) {
    t.fail(`${what}: pamgate accepts, Kubernetes does not: ${JSON.stringify(g)}`);
    return;
  }
  const ours: Record<string, unknown> = pick(r, COMPARED);
  const theirs: Record<string, unknown> = fromGo(g.info);
  ours.verb = r.verb;
  theirs.verb = isConnect(r) ? r.subresource : g.info.Verb;
  if (g.connect) {
    // Options as the apiserver decodes them (the generated url.Values conversions' helpers, in Go).
    const sub = r.subresource;
    const keys = sub === "portforward" ? ["ports"] : ["container", "stdin", "stdout", "stderr", "tty"];
    if (sub === "exec") keys.push("command");
    Object.assign(ours, pick(r, keys));
    Object.assign(
      theirs,
      pick({ ...g.connect, command: g.connect.command ?? [], ports: g.connect.ports ?? [] }, keys),
    );
  } else if (isConnect(r)) {
    t.fail(`${what}: Go decoded no connect options`);
  }
  if (quiet && JSON.stringify(ours) === JSON.stringify(theirs)) return;
  t.same(ours, theirs, `${what}: same as Kubernetes`);
}

// --- random requests ------------------------------------------------------------------------------------

/** mulberry32: a seeded generator, so a failure reproduces. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

const SEGMENTS = [
  "api",
  "apis",
  "v1",
  "apps",
  "example.com",
  "namespaces",
  "default",
  "pods",
  "secrets",
  "nodes",
  "web-0",
  "exec",
  "attach",
  "portforward",
  "proxy",
  "watch",
  "status",
  "finalize",
  "log",
  "..",
  ".",
  "",
  "%2e%2E",
  "a%2Fb",
  "%252e",
  "web%2D0",
  "caf%C3%A9",
  "%zz",
  "a%20b",
  "x:y",
  "%00",
];
const PARAMS = [
  "watch=true",
  "watch=0",
  "watch=",
  "watch",
  "watch=False",
  "fieldSelector=metadata.name%3Dweb-0",
  "fieldSelector=metadata.name%3D%3Dz,a%3Db",
  "fieldSelector=metadata.name!%3Dz",
  "fieldSelector=metadata.name%3D..",
  "fieldSelector=x",
  "labelSelector=app%20in%20(a,,b)",
  "labelSelector=!a,b%3Dc",
  "labelSelector=%3D",
  "labelSelector=a%3E1",
  "limit=5",
  "limit=x",
  "timeoutSeconds=-3",
  "command=ls",
  "command=a+b",
  "container=c",
  "stdin=1",
  "tty=no",
  "stdout=false",
  "ports=80",
  "ports=80,x",
  "q=%zz",
  "a;b",
  "resourceVersion=0",
];

function randomRequest(rnd: () => number): { method: string; url: string } {
  const pickOne = <T>(xs: readonly T[]) => xs[Math.floor(rnd() * xs.length)] as T;
  const method = pickOne(["GET", "GET", "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]);
  const start = pickOne([["api", "v1"], ["apis", "apps", "v1"], ["apis", "example.com", "v1"], ["api"], []]);
  const segs = [...start];
  const n = Math.floor(rnd() * 6);
  for (let i = 0; i < n; i++)
    segs.push(rnd() < 0.7 ? pickOne(["namespaces", "default", "pods", "web-0", "exec"]) : pickOne(SEGMENTS));
  let url = `/${segs.join("/")}`;
  if (rnd() < 0.1) url += "/";
  const q = Math.floor(rnd() * 4);
  const params: string[] = [];
  for (let i = 0; i < q; i++) params.push(pickOne(PARAMS));
  if (params.length > 0) url += `?${params.join("&")}`;
  return { method, url };
}
