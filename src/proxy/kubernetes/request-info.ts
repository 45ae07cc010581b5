// The attributes Kubernetes authorizes a request by (verb, API group and version, namespace, resource,
// subresource, name — what RBAC rules and a SubjectAccessReview see), computed from its method and URL exactly
// as the apiserver's RequestInfoFactory computes them (k8s.io/apiserver/pkg/endpoints/request/requestinfo.go).
// They become input.command for protocol kubernetes (docs/policy-contract.md).
//
//   const info = parseRequestInfo(req.method, req.url);
//   if (isRequestInfoError(info)) … answer with a Status naming info.message, forward nothing
//
// Why exact: a gateway that decides on other attributes than the apiserver then authorizes has a policy bypass
// in the gap. test/unit/kube-request-info.test.ts runs one case table through this module and through the real
// Go code (scripts/kube-requestinfo, k8s.io/apiserver v0.34.4) and requires the same attributes. Behaviours
// that follow from it and look surprising are Kubernetes': GET without a name is list (watch with ?watch=,
// where any value but "0"/"false" — even an empty one — is true); such a list gets a name from a
// fieldSelector metadata.name=… term, but a DELETE of the collection never does; /api/v1/namespaces/{ns} names
// the namespace as both namespace and name; the legacy /watch/ and /proxy/ path prefixes set the verb, and
// selectors are not reported for them.
//
// Where Kubernetes is lenient, this refuses instead of guessing, because the lenient reading is where
// intermediaries disagree (and where this parser could silently drift from the apiserver's): malformed or
// double percent-encoding, a segment that decodes to contain "/" (Go splits the decoded path, so an encoded
// "/" becomes a separator), "." and ".." segments (Kubernetes keeps them: /namespaces/a/../b/secrets is
// resource "..", name "b", subresource "secrets"), empty segments, characters a URL may not hold, overlong
// URLs, a /watch or /proxy prefix with nothing after it (the apiserver answers 500), methods that give no
// verb, and the query parameters whose decoding the attributes depend on, when Kubernetes would reject them
// (it then computes the attributes without them and the request fails later with 400). A refusal is returned,
// not thrown — this runs on every request — as {code, message}, for the caller to answer with a Status.
//
// One deliberate difference from Kubernetes: pods/exec, pods/attach and pods/portforward have their
// subresource as verb whatever the method. Kubernetes derives the verb from the method, and a WebSocket exec is
// a GET, so RBAC sees `get pods/exec` (kubernetes/kubernetes#78741) — a rule written against `create` does not
// stop it (later releases add a separate `create` check on WebSocket upgrades behind a feature gate, KEP-4006;
// the attributes still say get). The Kubernetes verb stays in k8s_verb. For these the options that say what will run are decoded
// too (command, container, stdin/stdout/stderr/tty; ports), as the apiserver decodes them. The proxy
// subresources (pods, services, nodes) keep the method's verb: through a proxy the method is what the target
// sees, so policy needs it — and any verb on nodes/proxy reaches the kubelet's API, exec included. Over SPDY,
// port-forward names its ports in stream headers, not only in ?ports=: the adapter decides each port a stream
// names that ?ports= did not, with `ports` set to it (tunnel.ts, portforward.ts).

export interface RequestInfo {
  /** A request for an API resource (under /api/{version}/… or /apis/{group}/{version}/…), not discovery etc. */
  is_resource_request: boolean;
  /** The URL path, percent-decoded (as Go's URL.Path), without the query. */
  path: string;
  /**
   * What policy decides on: the Kubernetes verb (get, list, watch, create, update, patch, delete,
   * deletecollection; the lowercase HTTP method for non-resource requests; watch/proxy from a legacy path
   * prefix), except exec, attach or portforward for those pod subresources.
   */
  verb: string;
  /** The verb exactly as Kubernetes computes it (equal to verb except for exec, attach and portforward). */
  k8s_verb: string;
  /** "api" (the core group) or "apis"; "" for non-resource requests, except "apis" for /apis/{group}/{version}. */
  api_prefix: string;
  /** "" for the core group. */
  api_group: string;
  api_version: string;
  /** "" for cluster-scoped requests; for /namespaces/{ns}[/status|/finalize] the namespace itself. */
  namespace: string;
  resource: string;
  subresource: string;
  /** "" for collections, unless a list/watch names one object by fieldSelector metadata.name=…. */
  name: string;
  /** The path segments from the resource on: resource, name, subresource and anything after. */
  parts: string[];
  /** The labelSelector / fieldSelector as sent, for list, watch and deletecollection; "" otherwise. */
  label_selector: string;
  field_selector: string;
  /** pods/exec: the argv to run, from the repeated command= parameters, in order. */
  command?: string[];
  /** pods/exec and pods/attach: the container ("" lets Kubernetes pick the only or default one). */
  container?: string;
  /** pods/exec and pods/attach: which streams the session has, and whether it has a terminal. */
  stdin?: boolean;
  stdout?: boolean;
  stderr?: boolean;
  tty?: boolean;
  /** pods/portforward: the ports named in the query (ports=80,443 or repeated). */
  ports?: number[];
}

/** The refusals, with what each means (the form of src/decision/reasons.ts, for the adapter's table). */
export const REQUEST_INFO_REASONS = {
  "k8s.bad_method": "the HTTP method is not one Kubernetes maps to a verb",
  "k8s.bad_path":
    "the request target is not a plain absolute path: an empty segment, or a character a URL may not hold (control, space, non-ASCII, backslash, #, …)",
  "k8s.bad_encoding": "the URL has malformed or double percent-encoding, or an escape that is not UTF-8",
  "k8s.encoded_separator":
    "a path segment decodes to contain '/' or '\\', which Kubernetes would treat as more segments",
  "k8s.path_traversal": "a path segment is '.' or '..' (also when percent-encoded)",
  "k8s.too_long": "the URL or its path is longer than pamgate accepts",
  "k8s.incomplete_path": "a /watch or /proxy path prefix is not followed by what it applies to",
  "k8s.bad_query":
    "a query parameter Kubernetes decodes (selectors, limit, watch, exec and port-forward options) is malformed",
} as const satisfies Record<string, string>;

export type RequestInfoErrorCode = keyof typeof REQUEST_INFO_REASONS;

export interface RequestInfoError {
  code: RequestInfoErrorCode;
  message: string;
}

export function isRequestInfoError(r: RequestInfo | RequestInfoError): r is RequestInfoError {
  return "code" in r;
}

/** Longest path accepted; Kubernetes paths are a few hundred bytes (names are at most 253). */
export const MAX_PATH_LENGTH = 8192;
/** Longest path and query accepted: an exec's command rides in the query. */
export const MAX_URL_LENGTH = 65536;

function fail(code: RequestInfoErrorCode, message: string): RequestInfoError {
  return { code, message };
}

/** Input shown in a message, shortened: messages go back to the client and into the audit trail. */
function show(s: string): string {
  return JSON.stringify(s.length > 80 ? `${s.slice(0, 80)}…` : s);
}

// Characters a path segment may hold unencoded (RFC 3986 pchar; "%" starts an escape). Go's URL parser takes
// more (", <, >, \, ^, `, {, |, }), but clients encode them and some intermediaries read "\" as "/".
const PATH_CHAR = new Uint8Array(128);
for (const c of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@%") {
  PATH_CHAR[c.charCodeAt(0)] = 1;
}

const VERB_OF_METHOD: Readonly<Record<string, string>> = {
  GET: "get",
  HEAD: "get",
  POST: "create",
  PUT: "update",
  PATCH: "patch",
  DELETE: "delete",
};

/** Query parameters whose values matter here; the rest are only checked for well-formed encoding. */
const KNOWN_PARAMS = new Set([
  "watch",
  "labelSelector",
  "fieldSelector",
  "limit",
  "timeoutSeconds",
  "command",
  "container",
  "stdin",
  "stdout",
  "stderr",
  "tty",
  "ports",
]);

type Query = Map<string, string[]>;
/** Shared by every request without a query (never written to). */
const NO_QUERY: Query = new Map();

export function parseRequestInfo(method: string, rawUrl: string): RequestInfo | RequestInfoError {
  if (rawUrl.length > MAX_URL_LENGTH) {
    return fail("k8s.too_long", `the URL is ${rawUrl.length} bytes, more than ${MAX_URL_LENGTH}`);
  }
  if (method.length === 0 || method.length > 16 || !isUpperAlpha(method)) {
    return fail("k8s.bad_method", `the HTTP method ${show(method)} is not an uppercase method name`);
  }
  const qmark = rawUrl.indexOf("?");
  const rawPath = qmark < 0 ? rawUrl : rawUrl.slice(0, qmark);
  if (rawPath.length > MAX_PATH_LENGTH) {
    return fail("k8s.too_long", `the URL path is ${rawPath.length} bytes, more than ${MAX_PATH_LENGTH}`);
  }
  if (rawPath.charCodeAt(0) !== 0x2f) {
    return fail("k8s.bad_path", `the request target ${show(rawUrl)} does not start with '/'`);
  }

  const segments: string[] = [];
  const encoded = splitPath(rawPath, segments);
  if (typeof encoded === "object") return encoded;
  // Go's URL.Path is the decoded path; it only differs from the raw one when something was encoded.
  const path = encoded
    ? `/${segments.join("/")}${rawPath.length > 1 && rawPath.endsWith("/") ? "/" : ""}`
    : rawPath;

  let query = NO_QUERY;
  if (qmark >= 0) {
    query = new Map();
    const qerr = parseQuery(rawUrl, qmark + 1, query);
    if (qerr) return qerr;
  }

  const lower = method.toLowerCase();
  const info: RequestInfo = {
    is_resource_request: false,
    path,
    verb: lower,
    k8s_verb: lower,
    api_prefix: "",
    api_group: "",
    api_version: "",
    namespace: "",
    resource: "",
    subresource: "",
    name: "",
    parts: [],
    label_selector: "",
    field_selector: "",
  };

  // /api/{version}/… and /apis/{group}/{version}/… with at least a resource are resource requests; anything
  // shorter (/api, /apis/apps/v1) and anything else (/version, /healthz, /openapi/v2) is not.
  const n = segments.length;
  const prefix = segments[0];
  if (n < 3 || (prefix !== "api" && prefix !== "apis")) return info;
  // Kubernetes records the prefix before it finds /apis/{group}/{version} too short to be a resource
  // request: group discovery is a non-resource request with api_prefix "apis".
  info.api_prefix = prefix;
  let i = 1;
  if (prefix === "apis") {
    if (n < 4) return info;
    info.api_group = segments[i++] as string;
  }
  info.is_resource_request = true;
  info.api_version = segments[i++] as string;

  let verb: string;
  let verbFromPath = false;
  const special = segments[i];
  if (special === "watch" || special === "proxy") {
    if (n - i < 2) {
      return fail("k8s.incomplete_path", `${show(path)}: nothing follows the /${special} prefix`);
    }
    verb = special;
    verbFromPath = true;
    i++;
  } else {
    const v = VERB_OF_METHOD[method];
    // Kubernetes gives other methods the verb "" (which no RBAC rule allows); refuse rather than decide on it.
    if (v === undefined) return fail("k8s.bad_method", `${method} is not a Kubernetes API method`);
    verb = v;
  }

  // /namespaces/{ns}/{resource}/… is namespaced; /namespaces, /namespaces/{ns} and its status and finalize
  // subresources are the namespace object itself (resource "namespaces", name and namespace both {ns}).
  if (segments[i] === "namespaces") {
    if (n - i > 1) {
      info.namespace = segments[i + 1] as string;
      const next = segments[i + 2];
      if (next !== undefined && next !== "status" && next !== "finalize") i += 2;
    }
  }
  const parts = segments.slice(i);
  info.parts = parts;
  info.resource = parts[0] as string;
  if (parts.length >= 2) info.name = parts[1] as string;
  // The proxy prefix passes the rest of the path to the target: no subresource.
  if (parts.length >= 3 && verb !== "proxy") info.subresource = parts[2] as string;

  // A GET of a collection lists it, or watches it with ?watch.
  const listed = info.name === "" && verb === "get";
  if (listed) verb = flag(query, "watch") ? "watch" : "list";
  if (info.name === "" && verb === "delete") verb = "deletecollection";
  if (verb === "list" || verb === "watch" || verb === "deletecollection") {
    const lerr = checkListOptions(query);
    if (lerr) return lerr;
    // Only a GET that became list/watch takes its name from the field selector, and only a name that could
    // be a path segment.
    if (listed && query.size > 0) {
      const fs = query.get("fieldSelector")?.[0];
      if (fs !== undefined) {
        const name = fieldSelectorName(fs) as string; // checkListOptions parsed it
        if (name !== "." && name !== ".." && !name.includes("/") && !name.includes("%")) info.name = name;
      }
    }
    if (!verbFromPath) {
      info.field_selector = query.get("fieldSelector")?.[0] ?? "";
      info.label_selector = query.get("labelSelector")?.[0] ?? "";
    }
  }
  info.verb = verb;
  info.k8s_verb = verb;

  if (info.api_group === "" && info.resource === "pods") {
    const sub = info.subresource;
    if (sub === "exec" || sub === "attach") {
      info.verb = sub;
      if (sub === "exec") info.command = query.get("command") ?? [];
      info.container = query.get("container")?.[0] ?? "";
      info.stdin = flag(query, "stdin");
      info.stdout = flag(query, "stdout");
      info.stderr = flag(query, "stderr");
      info.tty = flag(query, "tty");
    } else if (sub === "portforward") {
      info.verb = sub;
      const ports = parsePorts(query.get("ports"));
      if (typeof ports === "string") return fail("k8s.bad_query", ports);
      info.ports = ports;
    }
  }
  return info;
}

function isUpperAlpha(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x41 || c > 0x5a) return false;
  }
  return true;
}

function isHex(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}

/**
 * Splits the path (which starts with "/") into decoded segments, refusing what Kubernetes would read
 * differently from a plain reading. One trailing "/" is allowed (Kubernetes ignores it). Returns whether any
 * segment was percent-encoded, or the refusal.
 */
function splitPath(rawPath: string, out: string[]): boolean | RequestInfoError {
  let encoded = false;
  let start = 1;
  let escapes = false;
  for (let i = 1; i <= rawPath.length; i++) {
    const c = i < rawPath.length ? rawPath.charCodeAt(i) : 0x2f;
    if (c === 0x2f) {
      if (i === start) {
        if (i === rawPath.length) break; // "/" or a trailing slash
        return fail("k8s.bad_path", `${show(rawPath)} has an empty path segment ('//')`);
      }
      let seg = rawPath.slice(start, i);
      if (seg === "." || seg === "..") {
        return fail("k8s.path_traversal", `${show(rawPath)} has a ${show(seg)} segment`);
      }
      if (escapes) {
        const decoded = decode(seg, false);
        if (decoded === undefined) {
          return fail("k8s.bad_encoding", `path segment ${show(seg)} does not decode to UTF-8`);
        }
        const why = badDecodedSegment(decoded);
        if (why) return fail(why[0], `path segment ${show(seg)} decodes to ${show(decoded)}, ${why[1]}`);
        seg = decoded;
        encoded = true;
        escapes = false;
      }
      out.push(seg);
      start = i + 1;
      continue;
    }
    if (c >= 0x80 || PATH_CHAR[c] !== 1) {
      const what =
        c < 0x20 || c === 0x7f ? `a control character (0x${c.toString(16)})` : show(rawPath[i] as string);
      return fail("k8s.bad_path", `the URL path holds ${what} unencoded`);
    }
    if (c === 0x25) {
      if (!isHex(rawPath.charCodeAt(i + 1)) || !isHex(rawPath.charCodeAt(i + 2))) {
        return fail(
          "k8s.bad_encoding",
          `malformed percent-encoding at ${show(rawPath.slice(i, i + 3))} in the path`,
        );
      }
      escapes = true;
      i += 2;
    }
  }
  return encoded;
}

/** Why a decoded path segment is refused: [code, reason], or undefined. */
function badDecodedSegment(s: string): [RequestInfoErrorCode, string] | undefined {
  if (s === "." || s === "..") return ["k8s.path_traversal", "a dot segment"];
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x2f || c === 0x5c) return ["k8s.encoded_separator", "which holds a path separator"];
    if (c === 0x25) return ["k8s.bad_encoding", "which holds '%' (double encoding)"];
    if (c < 0x20 || c === 0x7f) return ["k8s.bad_path", "which holds a control character"];
  }
  return undefined;
}

/** Percent-decodes (and in a query, '+' to space), with escapes already checked well-formed; undefined when not UTF-8. */
function decode(s: string, plus: boolean): string | undefined {
  const t = plus && s.includes("+") ? s.replaceAll("+", " ") : s;
  if (!t.includes("%")) return t;
  try {
    return decodeURIComponent(t);
  } catch {
    return undefined;
  }
}

/**
 * Reads the query from `from` as Go's url.ParseQuery does ("&"-separated, '+' is space, the first "=" splits),
 * keeping the values of KNOWN_PARAMS in order. Go drops pairs it cannot decode and pairs with ";" (which
 * other servers take as a separator); they are refused here instead.
 */
function parseQuery(url: string, from: number, out: Query): RequestInfoError | undefined {
  let start = from;
  let eq = -1;
  let plain = true; // no '%' or '+' in the pair
  for (let i = from; i <= url.length; i++) {
    const c = i < url.length ? url.charCodeAt(i) : 0x26;
    if (c === 0x26) {
      if (i > start) {
        const err = addPair(url, start, eq < 0 ? i : eq, eq < 0 ? i : eq + 1, i, plain, out);
        if (err) return err;
      }
      start = i + 1;
      eq = -1;
      plain = true;
    } else if (c === 0x3d) {
      if (eq < 0) eq = i;
    } else if (c === 0x25) {
      if (!isHex(url.charCodeAt(i + 1)) || !isHex(url.charCodeAt(i + 2))) {
        return fail(
          "k8s.bad_encoding",
          `malformed percent-encoding at ${show(url.slice(i, i + 3))} in the query`,
        );
      }
      plain = false;
      i += 2;
    } else if (c === 0x2b) {
      plain = false;
    } else if (c <= 0x20 || c >= 0x7f || c === 0x3b || c === 0x23 || c === 0x5c) {
      const what = c === 0x3b ? "';' (not a separator for Kubernetes)" : `character 0x${c.toString(16)}`;
      return fail("k8s.bad_query", `the query holds ${what} unencoded`);
    }
  }
  return undefined;
}

function addPair(
  url: string,
  start: number,
  keyEnd: number,
  valueStart: number,
  end: number,
  plain: boolean,
  out: Query,
): RequestInfoError | undefined {
  const rawKey = url.slice(start, keyEnd);
  const key = plain ? rawKey : decode(rawKey, true);
  if (key === undefined) return fail("k8s.bad_encoding", `query parameter name ${show(rawKey)} is not UTF-8`);
  if (!KNOWN_PARAMS.has(key)) return undefined;
  const rawValue = valueStart >= end ? "" : url.slice(valueStart, end);
  const value = plain ? rawValue : decode(rawValue, true);
  if (value === undefined) return fail("k8s.bad_encoding", `query parameter ${key} is not UTF-8`);
  // A command's arguments may hold newlines and tabs (sh -c scripts); nothing else here may hold a control
  // character (the label selector lexer even stops at NUL).
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c === 0 || ((c < 0x20 || c === 0x7f) && key !== "command")) {
      return fail("k8s.bad_query", `query parameter ${key} holds a control character (0x${c.toString(16)})`);
    }
  }
  const values = out.get(key);
  if (values) values.push(value);
  else out.set(key, [value]);
  return undefined;
}

/**
 * A boolean query parameter as Kubernetes converts it (runtime.Convert_Slice_string_To_bool): only absent,
 * "0" or "false" in any case is false — so ?watch= and ?stdin=no are true. Go compares with Unicode case
 * folding, under which "falſe" (long s) is "false" too.
 */
function flag(query: Query, key: string): boolean {
  const v = query.get(key)?.[0];
  if (v === undefined) return false;
  return !(v === "0" || (v.length === 5 && v.toLowerCase().replace("\u017f", "s") === "false"));
}

/**
 * Refuses the list options Kubernetes would fail to decode (metainternalversion.ListOptions from the query):
 * then the apiserver computes the attributes without them — no name from the field selector — and the
 * request fails with 400 after authorization. Only the first value of each parameter counts, as in Go.
 */
function checkListOptions(query: Query): RequestInfoError | undefined {
  if (query.size === 0) return undefined;
  for (const key of INT_OPTIONS) {
    const v = query.get(key)?.[0];
    if (v !== undefined && !isInt64(v)) return fail("k8s.bad_query", `${key}=${show(v)} is not an integer`);
  }
  const fs = query.get("fieldSelector")?.[0];
  if (fs !== undefined && fieldSelectorName(fs) === undefined) {
    return fail("k8s.bad_query", `fieldSelector ${show(fs)} does not parse`);
  }
  const ls = query.get("labelSelector")?.[0];
  if (ls !== undefined) {
    const why = labelSelectorError(ls);
    if (why) return fail("k8s.bad_query", `labelSelector ${show(ls)} does not parse: ${why}`);
  }
  return undefined;
}

const INT_OPTIONS = ["limit", "timeoutSeconds"] as const;

/** strconv.ParseInt(s, 10, 64) succeeds. */
function isInt64(s: string): boolean {
  let i = s.charCodeAt(0) === 0x2b || s.charCodeAt(0) === 0x2d ? 1 : 0;
  const negative = s.charCodeAt(0) === 0x2d;
  if (i === s.length) return false;
  for (let j = i; j < s.length; j++) {
    const c = s.charCodeAt(j);
    if (c < 0x30 || c > 0x39) return false;
  }
  while (i < s.length - 1 && s.charCodeAt(i) === 0x30) i++;
  const digits = s.length - i;
  if (digits !== 19) return digits < 19;
  return s.slice(i) <= (negative ? "9223372036854775808" : "9223372036854775807");
}

/**
 * fields.ParseSelector's reading of a field selector: undefined when it fails, else the value the selector
 * requires metadata.name to equal ("" if none). Terms are split at unescaped commas and sorted (Go sorts them
 * bytewise, i.e. by code point) before the first metadata.name term is taken, so
 * metadata.name=b,metadata.name=a names "a".
 */
function fieldSelectorName(sel: string): string | undefined {
  let name = "";
  let nameTerm: string | undefined;
  let start = 0;
  for (let i = 0; i <= sel.length; i++) {
    const c = i < sel.length ? sel.charCodeAt(i) : 0x2c;
    if (c === 0x5c) {
      i++; // the escaped character is data, even a comma
      continue;
    }
    if (c !== 0x2c) continue;
    const term = sel.slice(start, i);
    start = i + 1;
    if (term === "") continue;
    // The first operator anywhere splits, with "!=" and "==" tried before "=": no escaping on the left.
    let op = -1;
    let opLen = 0;
    for (let j = 0; j < term.length; j++) {
      const a = term.charCodeAt(j);
      const b = term.charCodeAt(j + 1);
      if ((a === 0x21 || a === 0x3d) && b === 0x3d) {
        op = j;
        opLen = 2;
        break;
      }
      if (a === 0x3d) {
        op = j;
        opLen = 1;
        break;
      }
    }
    if (op < 0) return undefined;
    const value = unescapeFieldValue(term.slice(op + opLen));
    if (value === undefined) return undefined;
    if (term.charCodeAt(op) !== 0x21 && term.slice(0, op) === "metadata.name") {
      if (nameTerm === undefined || compareCodePoints(term, nameTerm) < 0) {
        nameTerm = term;
        name = value;
      }
    }
  }
  return name;
}

/** fields.UnescapeValue: "\\", "\," and "\=" are the escapes; a bare "," or "=" is an error. */
function unescapeFieldValue(s: string): string | undefined {
  let out = "";
  let from = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x2c || c === 0x3d) return undefined;
    if (c !== 0x5c) continue;
    const e = s.charCodeAt(i + 1);
    if (e !== 0x5c && e !== 0x2c && e !== 0x3d) return undefined;
    out += s.slice(from, i);
    from = i + 1;
    i++;
  }
  return from === 0 ? s : out + s.slice(from);
}

/** Orders strings as Go does (bytes of UTF-8, i.e. code points), not as JavaScript does (UTF-16 units). */
function compareCodePoints(a: string, b: string): number {
  for (let i = 0; i < a.length && i < b.length; i++) {
    const x = a.codePointAt(i) as number;
    const y = b.codePointAt(i) as number;
    if (x !== y) return x - y;
    if (x > 0xffff) i++;
  }
  return a.length - b.length;
}

/** "a,b" and repeated ports= as metav1.Convert_Slice_string_To_Slice_int32 reads them; a message if not ports. */
function parsePorts(values: string[] | undefined): number[] | string {
  const ports: number[] = [];
  for (const v of values ?? []) {
    for (const p of v.split(",")) {
      if (p.length === 0 || p.length > 5 || !/^[0-9]+$/.test(p) || Number(p) > 65535) {
        return `ports: ${show(p)} is not a port number`;
      }
      ports.push(Number(p));
    }
  }
  return ports;
}

// --- label selectors (labels.Parse) ---------------------------------------------------------------------
// Kubernetes rejects a list whose labelSelector does not parse; the grammar and checks here are its lexer's and
// parser's (k8s.io/apimachinery/pkg/labels/selector.go), so that pamgate refuses exactly those.

enum Tok {
  End,
  Close,
  Comma,
  Not,
  DoubleEquals,
  Equals,
  Greater,
  Id,
  In,
  Less,
  NotEquals,
  NotIn,
  Open,
}

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0d || c === 0x0a;
}

/** The one-character operators by character code; Tok.End (0) for any other character. */
const SINGLE = new Uint8Array(128);
SINGLE[0x28] = Tok.Open;
SINGLE[0x29] = Tok.Close;
SINGLE[0x2c] = Tok.Comma;
SINGLE[0x21] = Tok.Not;
SINGLE[0x3d] = Tok.Equals;
SINGLE[0x3e] = Tok.Greater;
SINGLE[0x3c] = Tok.Less;

function lexLabels(s: string, toks: Tok[], lits: string[]): void {
  let i = 0;
  for (;;) {
    while (i < s.length && isSpace(s.charCodeAt(i))) i++;
    if (i >= s.length) {
      toks.push(Tok.End);
      lits.push("");
      return;
    }
    const c = s.charCodeAt(i);
    const single: Tok = c < 128 ? (SINGLE[c] as Tok) : Tok.End;
    if (single !== Tok.End) {
      // The longest operator wins: "!=" and "==" are the only two-character ones.
      if ((c === 0x21 || c === 0x3d) && s.charCodeAt(i + 1) === 0x3d) {
        toks.push(c === 0x21 ? Tok.NotEquals : Tok.DoubleEquals);
        lits.push(s.slice(i, i + 2));
        i += 2;
      } else {
        toks.push(single);
        lits.push(s[i] as string);
        i++;
      }
      continue;
    }
    let j = i + 1;
    for (; j < s.length; j++) {
      const d = s.charCodeAt(j);
      if ((d < 128 && SINGLE[d] !== Tok.End) || isSpace(d)) break;
    }
    const lit = s.slice(i, j);
    toks.push(lit === "in" ? Tok.In : lit === "notin" ? Tok.NotIn : Tok.Id);
    lits.push(lit);
    i = j;
  }
}

/** Why labels.Parse rejects the selector, or undefined when it accepts it. */
function labelSelectorError(sel: string): string | undefined {
  const toks: Tok[] = [];
  const lits: string[] = [];
  lexLabels(sel, toks, lits);
  let p = 0;
  // Where a value is expected, "in" and "notin" are plain words.
  const peek = (values: boolean): Tok => {
    const t = toks[p] as Tok;
    return values && (t === Tok.In || t === Tok.NotIn) ? Tok.Id : t;
  };
  const next = (values: boolean): Tok => {
    const t = peek(values);
    p++;
    return t;
  };
  const at = (k: number) => (toks[k] === Tok.End ? "the end" : show(lits[k] as string));
  const found = () => `found ${at(p - 1)}`;

  const requirement = (): string | undefined => {
    let t = next(true);
    const absent = t === Tok.Not;
    if (absent) t = next(true);
    if (t !== Tok.Id) return `${found()}, expected a key`;
    const key = lits[p - 1] as string;
    if (!isQualifiedName(key)) return `${show(key)} is not a valid label key`;
    if (absent) return undefined;
    t = peek(true);
    if (t === Tok.End || t === Tok.Comma) return undefined; // exists
    const op = next(false);
    const values: string[] = [];
    if (op === Tok.In || op === Tok.NotIn) {
      if (next(true) !== Tok.Open) return `${found()}, expected '('`;
      t = peek(true);
      if (t === Tok.Close) {
        p++;
        values.push("");
      } else if (t === Tok.Id || t === Tok.Comma) {
        for (;;) {
          t = next(true);
          if (t === Tok.Id) {
            values.push(lits[p - 1] as string);
            const u = peek(true);
            if (u === Tok.Close) break;
            if (u !== Tok.Comma) return `found ${at(p)}, expected ',' or ')'`;
          } else if (t === Tok.Comma) {
            // Empty values: "(,a)", "(a,,b)" and "(a,)" hold "".
            const u = peek(true);
            if (u === Tok.Close) break;
            if (u === Tok.Comma) p++;
            values.push("");
          } else {
            return `${found()}, expected ',' or a value`;
          }
        }
        p++; // ")"
      } else {
        return `found ${at(p)}, expected a value or ')'`;
      }
    } else if (
      op === Tok.Equals ||
      op === Tok.DoubleEquals ||
      op === Tok.NotEquals ||
      op === Tok.Greater ||
      op === Tok.Less
    ) {
      t = peek(true);
      if (t === Tok.End || t === Tok.Comma) values.push("");
      else if (next(true) === Tok.Id) values.push(lits[p - 1] as string);
      else return `${found()}, expected a value`;
      if ((op === Tok.Greater || op === Tok.Less) && !isInt64(values[0] as string)) {
        return `${show(values[0] as string)} is not an integer, as '>' and '<' need`;
      }
    } else {
      return `${found()}, expected an operator (=, ==, !=, in, notin, >, <)`;
    }
    for (const v of values) {
      if (!isLabelValue(v)) return `${show(v)} is not a valid label value`;
    }
    return undefined;
  };

  for (;;) {
    const t = peek(true);
    if (t === Tok.End) return undefined;
    if (t !== Tok.Id && t !== Tok.Not) return `found ${at(p)}, expected '!' or a key`;
    const why = requirement();
    if (why) return why;
    const after = next(true);
    if (after === Tok.End) return undefined;
    if (after !== Tok.Comma) return `${found()}, expected ',' or the end`;
    const u = peek(true);
    if (u !== Tok.Id && u !== Tok.Not) return `found ${at(p)}, expected a key after ','`;
  }
}

function isAlnum(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
}

/** ([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9], at most 63 characters. */
function isQualifiedPart(s: string): boolean {
  if (s.length === 0 || s.length > 63) return false;
  if (!isAlnum(s.charCodeAt(0)) || !isAlnum(s.charCodeAt(s.length - 1))) return false;
  for (let i = 1; i < s.length - 1; i++) {
    const c = s.charCodeAt(i);
    if (!isAlnum(c) && c !== 0x2d && c !== 0x5f && c !== 0x2e) return false;
  }
  return true;
}

/** validation.IsQualifiedName: [DNS-1123 subdomain "/"] name. */
function isQualifiedName(key: string): boolean {
  const slash = key.indexOf("/");
  if (slash < 0) return isQualifiedPart(key);
  if (key.indexOf("/", slash + 1) >= 0) return false;
  return isDnsSubdomain(key.slice(0, slash)) && isQualifiedPart(key.slice(slash + 1));
}

function isLabelValue(v: string): boolean {
  return v === "" || isQualifiedPart(v);
}

/** validation.IsDNS1123Subdomain: dot-separated [a-z0-9]([-a-z0-9]*[a-z0-9])?, at most 253 characters. */
function isDnsSubdomain(s: string): boolean {
  if (s.length === 0 || s.length > 253) return false;
  let labelStart = 0;
  for (let i = 0; i <= s.length; i++) {
    const c = i < s.length ? s.charCodeAt(i) : 0x2e;
    const lowerAlnum = (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x7a);
    if (c === 0x2e) {
      if (i === labelStart || s.charCodeAt(i - 1) === 0x2d) return false;
      labelStart = i + 1;
    } else if (!lowerAlnum && (c !== 0x2d || i === labelStart)) {
      return false;
    }
  }
  return true;
}
