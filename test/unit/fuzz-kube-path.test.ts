// Property tests of the Kubernetes request attributes (src/proxy/kubernetes/request-info.ts) with fast-check:
// arbitrary methods, paths and query strings never make parseRequestInfo throw, and give either attributes or a
// refusal with one of its own codes; traversal in every spelling (.., %2e%2e, //, backslashes, encoded
// separators, double encoding) is refused, never normalized into another object; percent-encoding what needs
// none changes nothing; a path built from valid segments yields exactly its namespace, resource, name and
// subresource; and, where the Go checker (scripts/kube-requestinfo, built by test/unit/kube-request-info.test.ts
// into .tools/bin) is present, every generated request pamgate accepts gets the attributes Kubernetes' own
// RequestInfoFactory computes. On a failure fast-check prints the seed and the shrunk counterexample.
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { isDeepStrictEqual } from "node:util";
import fc from "fast-check";
import t from "tap";
import {
  isRequestInfoError,
  parseRequestInfo,
  REQUEST_INFO_REASONS,
  type RequestInfo,
  type RequestInfoError,
} from "../../src/proxy/kubernetes/request-info.js";
import { packagePath } from "../../src/util/tools.js";

const RUNS = Number(process.env.FUZZ_RUNS ?? 3000);

/** Parses and checks the outcome's shape; throws (failing the property) on anything unexpected. */
function outcome(method: string, url: string): RequestInfo | RequestInfoError {
  const r = parseRequestInfo(method, url);
  if (isRequestInfoError(r)) {
    if (!Object.hasOwn(REQUEST_INFO_REASONS, r.code)) throw new Error(`unknown code ${r.code}`);
    if (r.message.length < 10 || r.message.length > 400)
      throw new Error(`message of ${r.message.length} chars`);
    return r;
  }
  // Accepted: a plain absolute path, decoded, with nothing a path may be read two ways by.
  if (!r.path.startsWith("/")) throw new Error(`path ${JSON.stringify(r.path)}`);
  const segs = r.path.slice(1).replace(/\/$/, "").split("/");
  if (r.path !== "/" && segs.some((s) => s === "" || s === "." || s === ".."))
    throw new Error(`accepted a dot or empty segment: ${JSON.stringify(r.path)}`);
  for (const ch of r.path) {
    const c = ch.charCodeAt(0);
    if (c === 0x5c || c < 0x20 || c === 0x7f) throw new Error(`accepted ${JSON.stringify(r.path)}`);
  }
  for (const k of ["namespace", "resource", "name", "subresource", "api_group", "api_version"] as const)
    if (r[k].includes("/")) throw new Error(`${k} holds a '/': ${JSON.stringify(r[k])}`);
  if (r.is_resource_request && r.resource === "") throw new Error("a resource request without a resource");
  if (r.verb === "" || r.k8s_verb === "") throw new Error("no verb");
  return r;
}

const METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE", "PROPFIND"];
const arbMethod = fc.oneof(
  { weight: 12, arbitrary: fc.constantFrom(...METHODS) },
  { weight: 1, arbitrary: fc.string({ maxLength: 20 }) },
  { weight: 1, arbitrary: fc.constantFrom("get", "", "G ET", "GET\0", "X".repeat(17)) },
);

// --- building blocks ------------------------------------------------------------------------------------------------

/** A DNS-1123 label: what namespaces and most names are. */
const arbLabel = fc.stringMatching(/^[a-z0-9]([-a-z0-9]{0,14}[a-z0-9])?$/);
/** An object name: a DNS-1123 subdomain (dots allowed), never "." or "..". */
const arbName = fc.stringMatching(/^[a-z0-9]([-a-z0-9.]{0,20}[a-z0-9])?$/);
const arbGroup = fc.oneof(
  fc.constantFrom("apps", "batch", "example.com", "rbac.authorization.k8s.io"),
  arbName,
);
const arbVersion = fc.constantFrom("v1", "v1beta1", "v2alpha3");
/** A resource: a label other than the words a path position gives meaning to. */
const arbResource = fc.oneof(
  fc.constantFrom("pods", "secrets", "configmaps", "deployments", "services", "nodes"),
  arbLabel.filter((s) => s !== "namespaces" && s !== "watch" && s !== "proxy"),
);

/** Percent-encodes characters of `s` chosen by `mask` (bits cycle): the same path, spelled another way. */
function encodeSome(s: string, mask: number[]): string {
  let out = "";
  for (let i = 0; i < s.length; i++) {
    const bit = mask.length ? (mask[i % mask.length] as number) : 0;
    const c = s[i] as string;
    out += bit % 3 === 0 ? `%${c.charCodeAt(0).toString(16).padStart(2, "0")}${""}` : c;
  }
  return out;
}

// --- arbitrary input ------------------------------------------------------------------------------------------------

/** Path pieces: the meaningful words, and (less often) the characters and escapes that must be refused. */
const CLEAN_TOKENS = [
  "/",
  "/",
  "/",
  "api",
  "apis",
  "v1",
  "apps",
  "namespaces",
  "default",
  "pods",
  "secrets",
  "web-0",
];
const MORE_TOKENS = [
  "exec",
  "watch",
  "proxy",
  "status",
  "finalize",
  "a",
  "-",
  ":",
  "@",
  "+",
  ";",
  "=",
  "&",
  "é",
];
const NASTY_TOKENS = [
  ".",
  "..",
  "%2e",
  "%2E",
  "%2f",
  "%2F",
  "%5c",
  "%25",
  "%",
  "%zz",
  "%c3%a9",
  "%ff",
  "%00",
  "%41",
  "\\",
  "?",
  "#",
  " ",
  "\u{1F600}",
  "\t",
  "\n",
];
const arbPathish = fc
  .array(
    fc.oneof(
      { weight: 8, arbitrary: fc.constantFrom(...CLEAN_TOKENS) },
      { weight: 3, arbitrary: fc.constantFrom(...MORE_TOKENS) },
      { weight: 1, arbitrary: fc.constantFrom(...NASTY_TOKENS) },
    ),
    { maxLength: 24 },
  )
  .map((ts) => ts.join(""));
const arbQueryish = fc
  .array(
    fc.oneof(
      fc.constantFrom(
        "watch=true",
        "watch=0",
        "watch=",
        "watch=falſe",
        "fieldSelector=metadata.name%3Dweb-0",
        "fieldSelector=metadata.name%3D%3Dz,a%3Db",
        "fieldSelector=metadata.name%3D..",
        "fieldSelector=metadata.name%3Da%2Fb",
        "fieldSelector=x",
        "labelSelector=app%20in%20(a,,b)",
        "labelSelector=!a,b%3Dc",
        "labelSelector=%3D",
        "labelSelector=a%3E1",
        "limit=5",
        "limit=99999999999999999999",
        "timeoutSeconds=-3",
        "command=ls",
        "command=sh&command=-c&command=id",
        "command=%0A",
        "container=c",
        "stdin=1",
        "tty=no",
        "ports=80,443",
        "ports=0",
        "ports=99999",
        "q=%zz",
        "a;b",
      ),
      fc.tuple(fc.string({ maxLength: 8 }), fc.string({ maxLength: 12 })).map(([k, v]) => `${k}=${v}`),
      fc.string({ unit: "binary-ascii", maxLength: 16 }),
    ),
    { maxLength: 5 },
  )
  .map((ps) => ps.join("&"));

const arbUrl = fc.oneof(
  fc.string({ maxLength: 80 }),
  fc.string({ unit: "binary", maxLength: 40 }),
  fc.string({ maxLength: 80 }).map((u) => `/${u}`),
  fc.tuple(arbPathish, fc.option(arbQueryish)).map(([p, q]) => `/${p}${q === null ? "" : `?${q}`}`),
  fc
    .tuple(
      fc.constantFrom(
        "/api/v1",
        "/apis/apps/v1",
        "/api/v1/namespaces/default",
        "/apis/x.io/v1/namespaces/ns",
      ),
      arbPathish,
      fc.option(arbQueryish),
    )
    .map(([a, p, q]) => `${a}/${p}${q === null ? "" : `?${q}`}`),
);

t.test("arbitrary methods and URLs: attributes or a refusal with its own code, never a throw", async (t) => {
  const codes = new Map<string, number>();
  let accepted = 0;
  fc.assert(
    fc.property(arbMethod, arbUrl, (method, url) => {
      const r = outcome(method, url);
      if (isRequestInfoError(r)) codes.set(r.code, (codes.get(r.code) ?? 0) + 1);
      else accepted++;
      return isDeepStrictEqual(r, parseRequestInfo(method, url));
    }),
    { numRuns: RUNS },
  );
  t.comment(`accepted ${accepted}; refused ${JSON.stringify(Object.fromEntries(codes))}`);
  t.ok(accepted > RUNS / 20, "both outcomes exercised");
});

t.test("overlong paths and URLs are refused as too long", async (t) => {
  fc.assert(
    fc.property(fc.integer({ min: 8193, max: 70_000 }), fc.boolean(), (n, inQuery) => {
      const url = inQuery ? `/api/v1/pods?command=${"a".repeat(n * 2)}` : `/api/v1/${"a".repeat(n)}`;
      const r = outcome("GET", url);
      return isRequestInfoError(r) ? r.code === "k8s.too_long" : inQuery && url.length <= 65536;
    }),
    { numRuns: 50 },
  );
  t.pass();
});

// --- traversal ------------------------------------------------------------------------------------------------------

/** Spellings of a segment that must be refused, with the refusal each gets. */
const TRAVERSAL: Array<[string, string]> = [
  ["..", "k8s.path_traversal"],
  [".", "k8s.path_traversal"],
  ["%2e%2e", "k8s.path_traversal"],
  ["%2E%2e", "k8s.path_traversal"],
  [".%2e", "k8s.path_traversal"],
  ["%2e.", "k8s.path_traversal"],
  ["%2e", "k8s.path_traversal"],
  ["%2E", "k8s.path_traversal"],
  ["", "k8s.bad_path"], // an empty segment: "//"
  ["..\\", "k8s.bad_path"],
  ["\\", "k8s.bad_path"],
  ["a\\b", "k8s.bad_path"],
  ["%5c", "k8s.encoded_separator"],
  ["..%5c", "k8s.encoded_separator"],
  ["%2f", "k8s.encoded_separator"],
  ["..%2f", "k8s.encoded_separator"],
  ["%2e%2e%2f", "k8s.encoded_separator"],
  ["a%2Fb", "k8s.encoded_separator"],
  ["%252e%252e", "k8s.bad_encoding"],
  ["%25", "k8s.bad_encoding"],
  ["%%32e", "k8s.bad_encoding"],
  ["%2", "k8s.bad_encoding"],
  ["%c0%ae", "k8s.bad_encoding"], // overlong UTF-8 for "."
  ["%e0%80%ae", "k8s.bad_encoding"],
  ["%00", "k8s.bad_path"],
  ["%0a", "k8s.bad_path"],
];

/** A valid resource path as segments: /api/v1[/namespaces/ns]/res[/name[/sub]] or under /apis/{group}/{version}. */
const arbValidPath = fc
  .record({
    group: fc.option(arbGroup, { nil: null }),
    version: arbVersion,
    namespace: fc.option(arbLabel, { nil: null }),
    resource: arbResource,
    name: fc.option(arbName, { nil: null }),
    subresource: fc.option(arbLabel, { nil: null }),
  })
  .map((p) => ({ ...p, subresource: p.name === null ? null : p.subresource }));

type ValidPath = typeof arbValidPath extends fc.Arbitrary<infer T> ? T : never;

function segmentsOf(p: ValidPath): string[] {
  return [
    ...(p.group === null ? ["api"] : ["apis", p.group]),
    p.version,
    ...(p.namespace === null ? [] : ["namespaces", p.namespace]),
    p.resource,
    ...(p.name === null ? [] : [p.name]),
    ...(p.subresource === null ? [] : [p.subresource]),
  ];
}

t.test("traversal in every spelling, anywhere in a valid path, is refused with its code", async (t) => {
  fc.assert(
    fc.property(
      arbValidPath,
      fc.constantFrom(...TRAVERSAL),
      fc.nat(),
      fc.constantFrom(...METHODS.slice(0, 6)),
      fc.option(arbQueryish),
      (p, [bad, code], at, method, q) => {
        const segs = segmentsOf(p);
        const pos = at % (segs.length + 1);
        // An empty segment at the very end is the trailing "/" Kubernetes ignores: not a case here.
        if (bad === "" && pos === segs.length) return true;
        segs.splice(pos, 0, bad);
        const url = `/${segs.join("/")}${q ? `?${q}` : ""}`;
        const r = outcome(method, url);
        if (!isRequestInfoError(r)) return false;
        // A query can be refused first only if the path was fine: the path is checked before the query.
        return r.code === code;
      },
    ),
    { numRuns: RUNS },
  );
  t.pass(`held for ${RUNS} runs`);
});

t.test("percent-encoding what needs no encoding changes nothing (path and query)", async (t) => {
  fc.assert(
    fc.property(
      arbValidPath,
      fc.array(fc.nat(5), { minLength: 1, maxLength: 7 }),
      fc.constantFrom(...METHODS.slice(0, 6)),
      fc.constantFrom("", "watch=1", "limit=5&labelSelector=app%3Dweb", "fieldSelector=metadata.name%3Dx"),
      (p, mask, method, q) => {
        const segs = segmentsOf(p);
        const plain = `/${segs.join("/")}${q ? `?${q}` : ""}`;
        const encoded = `/${segs.map((s) => encodeSome(s, mask)).join("/")}${q ? `?${q}` : ""}`;
        return isDeepStrictEqual(outcome(method, plain), outcome(method, encoded));
      },
    ),
    { numRuns: RUNS },
  );
  t.pass(`held for ${RUNS} runs`);
});

// --- valid paths ----------------------------------------------------------------------------------------------------

/** The Kubernetes verb of a method on an object (`named`) or a collection. */
function verbOf(method: string, named: boolean, watch: boolean): string {
  switch (method) {
    case "GET":
    case "HEAD":
      return named ? "get" : watch ? "watch" : "list";
    case "POST":
      return "create";
    case "PUT":
      return "update";
    case "PATCH":
      return "patch";
    default:
      return named ? "delete" : "deletecollection";
  }
}

t.test(
  "a path built from valid segments yields its group, version, namespace, resource, name, subresource",
  async (t) => {
    fc.assert(
      fc.property(
        arbValidPath,
        fc.constantFrom(...METHODS.slice(0, 6)),
        fc.boolean(),
        fc.boolean(),
        (p, method, watch, trailingSlash) => {
          const url = `/${segmentsOf(p).join("/")}${trailingSlash ? "/" : ""}${watch ? "?watch=true" : ""}`;
          const r = outcome(method, url);
          if (isRequestInfoError(r)) return false;
          const k8sVerb = verbOf(method, p.name !== null, watch);
          const connect =
            p.group === null &&
            p.resource === "pods" &&
            (p.subresource === "exec" || p.subresource === "attach" || p.subresource === "portforward");
          const expected = {
            is_resource_request: true,
            api_prefix: p.group === null ? "api" : "apis",
            api_group: p.group ?? "",
            api_version: p.version,
            namespace: p.namespace ?? "",
            resource: p.resource,
            name: p.name ?? "",
            subresource: p.subresource ?? "",
            k8s_verb: k8sVerb,
            verb: connect ? (p.subresource as string) : k8sVerb,
            parts: [
              p.resource,
              ...(p.name === null ? [] : [p.name]),
              ...(p.subresource === null ? [] : [p.subresource]),
            ],
          };
          const got = Object.fromEntries(Object.keys(expected).map((k) => [k, r[k as keyof RequestInfo]]));
          if (!isDeepStrictEqual(got, expected)) {
            t.same(got, expected, `${method} ${url}`);
            return false;
          }
          return true;
        },
      ),
      { numRuns: RUNS },
    );
    t.pass(`held for ${RUNS} runs`);
  },
);

t.test("the namespace object itself: /api/v1/namespaces/{ns}[/status|/finalize]", async (t) => {
  fc.assert(
    fc.property(
      arbLabel,
      fc.constantFrom(null, "status", "finalize"),
      fc.constantFrom("GET", "PUT", "DELETE"),
      (ns, sub, method) => {
        const r = outcome(method, `/api/v1/namespaces/${ns}${sub ? `/${sub}` : ""}`);
        return (
          !isRequestInfoError(r) &&
          r.namespace === ns &&
          r.resource === "namespaces" &&
          r.name === ns &&
          r.subresource === (sub ?? "")
        );
      },
    ),
    { numRuns: Math.max(100, RUNS / 10) },
  );
  t.pass();
});

// --- Kubernetes' own code -------------------------------------------------------------------------------------------

const BIN = packagePath(".tools", "bin", "kube-requestinfo");
const NO_GO = existsSync(BIN)
  ? false
  : `${BIN} is not built (test/unit/kube-request-info.test.ts builds it with go): no differential check`;

interface GoResult {
  unparsable?: string;
  error?: string;
  info?: {
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
  };
}

function runGo(requests: Array<{ method: string; url: string }>): Promise<GoResult[]> {
  return new Promise((resolve, reject) => {
    const child = execFile(BIN, { maxBuffer: 64 << 20, timeout: 60_000 }, (err, stdout) => {
      if (err) reject(err);
      else resolve(JSON.parse(stdout) as GoResult[]);
    });
    child.stdin?.end(JSON.stringify(requests));
  });
}

t.test(
  "every generated request pamgate accepts gets Kubernetes' own attributes",
  { skip: NO_GO },
  async (t) => {
    const arbRequest = fc.oneof(
      fc.tuple(
        fc.constantFrom(...METHODS.slice(0, 6)),
        arbUrl.filter((u) => u.startsWith("/")),
      ),
      fc.tuple(
        fc.constantFrom(...METHODS.slice(0, 6)),
        fc.tuple(arbValidPath, fc.array(fc.nat(5), { maxLength: 4 }), fc.option(arbQueryish)).map(
          ([p, mask, q]) =>
            `/${segmentsOf(p)
              .map((s) => encodeSome(s, mask))
              .join("/")}${q ? `?${q}` : ""}`,
        ),
      ),
    );
    let compared = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(arbRequest, { minLength: 100, maxLength: 100 }), async (batch) => {
        const requests = batch.map(([method, url]) => ({ method, url }));
        const results = await runGo(requests);
        return requests.every(({ method, url }, i) => {
          const r = outcome(method, url);
          if (isRequestInfoError(r)) return true;
          compared++;
          const g = results[i];
          if (!g?.info || g.unparsable || g.error) {
            t.fail(`${method} ${url}: pamgate accepts, Kubernetes does not: ${JSON.stringify(g)}`);
            return false;
          }
          const ours = [
            r.is_resource_request,
            r.path,
            r.k8s_verb,
            r.api_prefix,
            r.api_group,
            r.api_version,
            r.namespace,
            r.resource,
            r.subresource,
            r.name,
            r.parts,
            r.label_selector,
            r.field_selector,
          ];
          const gi = g.info;
          const theirs = [
            gi.IsResourceRequest,
            gi.Path,
            gi.Verb,
            gi.APIPrefix,
            gi.APIGroup,
            gi.APIVersion,
            gi.Namespace,
            gi.Resource,
            gi.Subresource,
            gi.Name,
            gi.Parts ?? [],
            gi.LabelSelector,
            gi.FieldSelector,
          ];
          if (isDeepStrictEqual(ours, theirs)) return true;
          t.same(ours, theirs, `${method} ${url}: same as Kubernetes`);
          return false;
        });
      }),
      { numRuns: Math.max(5, Math.round(RUNS / 300)) },
    );
    t.ok(compared > 0, `${compared} accepted requests compared with k8s.io/apiserver`);
  },
);
