// Verifying OPA bundle signatures (https://www.openpolicyagent.org/docs/management-bundles#signing).
//
// A signed bundle carries /.signatures.json = {"signatures": ["<JWS compact>"]}. The JWS payload lists every
// file of the bundle with its digest: {"files": [{"name", "hash", "algorithm"}], "keyid"?, "scope"?, "iat"?,
// "iss"?}. Verification is two steps, as in OPA's bundle/verify.go: check the JWS with the configured key, then
// check that the files in the archive are exactly the files in the payload, digest for digest.
//
// Digests follow OPA's bundle/hash.go, which does not always hash raw bytes. "Structured" files — by base name
// data.json, data.yaml, .manifest (and signatures.json) — are parsed and hashed in a canonical encoding: object
// keys sorted by their UTF-8 bytes, no whitespace, strings encoded like Go's encoding/json without HTML
// escaping, and numbers written exactly as they appear in the file (OPA decodes with json.Number, so `1.50`
// stays `1.50`). Every other file (policy.wasm, *.rego, any other *.json) is hashed byte for byte. This was
// checked against `opa build --signing-key` and `opa sign` output (test/unit/bundle-signing.test.ts).
//
// Where this is stricter than OPA, it is on purpose (a gateway should fail closed):
// - only /.signatures.json is the signature file (OPA treats any path ending in "signatures.json" as one);
// - a configured keyId must match the key id the bundle names, if it names one;
// - MD5 and SHA-1 file digests are refused (OPA's own tools always write SHA-256);
// - structured files must be valid UTF-8 JSON; a data.yaml that is not plain JSON is refused rather than
//   hashed through a YAML→JSON conversion that could not be reproduced exactly here;
// - without an explicit HS* algorithm the key must be a PEM key, so a mistyped key path never becomes an
//   HMAC secret.
import { createHash, createPublicKey, type KeyObject } from "node:crypto";
import { compactVerify, decodeProtectedHeader, errors as joseErrors } from "jose";
import type { BundleFiles } from "./archive.js";

export const SIGNATURES_PATH = "/.signatures.json";

export type BundleSignatureErrorCode =
  | "unsigned" // no /.signatures.json
  | "malformed" // .signatures.json, the JWS or its payload is not what OPA writes
  | "bad-config" // the verification key or settings cannot be used
  | "unsupported-algorithm" // signature or file digest algorithm not allowed
  | "key-mismatch" // the bundle names a different key id than configured
  | "bad-signature" // the JWS does not verify with the configured key
  | "scope-mismatch"
  | "unsigned-file" // a file in the bundle is not listed in the signature
  | "missing-file" // a file listed in the signature is not in the bundle
  | "digest-mismatch"; // a file's content does not match its signed digest

export class BundleSignatureError extends Error {
  override name = "BundleSignatureError";
  constructor(
    readonly code: BundleSignatureErrorCode,
    message: string,
    /** The bundle file concerned, when the problem is about one file (with a leading "/"). */
    readonly file?: string,
  ) {
    super(message);
  }
}

export interface VerificationConfig {
  /** Name of the key. When set, a bundle that names another key id is rejected. */
  keyId?: string;
  /** PEM public key / certificate (RS*, PS*, ES*, EdDSA), or the shared secret for HS*. */
  key: string;
  /** Signature algorithm to accept. Default: those that fit the PEM key's type. Required for HS*. */
  algorithm?: string;
  /** Scope the signature must carry; as in OPA, a bundle with a scope is rejected when none is configured. */
  scope?: string;
  /** OPA's `exclude_files`: Go filepath.Match patterns on paths without the leading "/", e.g. "docs/*". */
  excludeFiles?: string[];
}

export interface VerifiedSignature {
  keyId?: string;
  scope?: string;
  issuer?: string;
  issuedAt?: number;
  /** Number of files whose digest was checked. */
  files: number;
}

/** Algorithms OPA accepts for bundle signatures (jwx names). "none" is never accepted. */
const HMAC_ALGS = ["HS256", "HS384", "HS512"];
const EC_ALG_BY_CURVE: Record<string, string> = {
  prime256v1: "ES256",
  secp384r1: "ES384",
  secp521r1: "ES512",
};
const RSA_ALGS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"];
const SUPPORTED_ALGS = new Set([...HMAC_ALGS, ...RSA_ALGS, ...Object.values(EC_ALG_BY_CURVE), "EdDSA"]);

/** OPA's file digest algorithm names → node:crypto names. MD5/SHA-1 are known to OPA but refused here. */
const FILE_HASHES: Record<string, string> = {
  "SHA-224": "sha224",
  "SHA-256": "sha256",
  "SHA-384": "sha384",
  "SHA-512": "sha512",
  "SHA-512-224": "sha512-224",
  "SHA-512-256": "sha512-256",
};

/** Base names OPA hashes as canonical JSON instead of raw bytes (bundle.IsStructuredDoc). */
const STRUCTURED_NAMES = new Set(["data.json", "data.yaml", ".manifest", "signatures.json"]);

interface SignedFile {
  name: string;
  hash: string;
  algorithm: string;
}

interface SignaturePayload {
  files: SignedFile[];
  keyid?: string;
  scope?: string;
  iss?: string;
  iat?: number;
}

/**
 * Verifies a bundle's signature and that its files are exactly the signed ones. Throws BundleSignatureError
 * naming the problem; resolves with what the signature says about itself.
 */
export async function verifyBundleSignature(
  files: BundleFiles,
  config: VerificationConfig,
): Promise<VerifiedSignature> {
  // Configuration first: a misconfigured gateway should say so whatever bundle it is shown.
  const verifier = verificationKey(config);
  const excluded = (config.excludeFiles ?? []).map(compileGlob);
  const raw = files.get(SIGNATURES_PATH);
  if (raw === undefined)
    throw new BundleSignatureError("unsigned", "bundle is not signed (no .signatures.json)");
  const token = readToken(raw);
  const { payload, namedKeyId } = await verifyToken(token, config, verifier);
  const checked = verifyFiles(files, payload.files, excluded);
  return {
    keyId: config.keyId ?? namedKeyId,
    scope: payload.scope,
    issuer: payload.iss,
    issuedAt: payload.iat,
    files: checked,
  };
}

// --- .signatures.json and the JWS -------------------------------------------------------------------------

function readToken(raw: Buffer): string {
  let doc: unknown;
  try {
    doc = JSON.parse(raw.toString("utf8"));
  } catch (err) {
    throw new BundleSignatureError(
      "malformed",
      `.signatures.json is not valid JSON: ${(err as Error).message}`,
    );
  }
  if (!isObject(doc) || !Array.isArray(doc.signatures)) {
    throw new BundleSignatureError("malformed", '.signatures.json has no "signatures" array');
  }
  // Signature plugins are OPA extensions compiled into the OPA binary; only the default JWT scheme exists here.
  if (doc.plugin !== undefined && doc.plugin !== "" && doc.plugin !== "_default") {
    throw new BundleSignatureError(
      "unsupported-algorithm",
      `signature plugin "${String(doc.plugin)}" is not supported`,
    );
  }
  const [token, ...rest] = doc.signatures;
  if (typeof token !== "string" || rest.length > 0) {
    throw new BundleSignatureError(
      "malformed",
      `.signatures.json must hold exactly one JWT string (found ${doc.signatures.length} entries)`,
    );
  }
  return token;
}

/** Checks the JWS, the key id and the scope; returns the payload and the key id the bundle names, if any. */
async function verifyToken(
  token: string,
  config: VerificationConfig,
  { key, algorithms }: Verifier,
): Promise<{ payload: SignaturePayload; namedKeyId?: string }> {
  let alg: string | undefined;
  let kid: string | undefined;
  try {
    const header = decodeProtectedHeader(token);
    alg = header.alg;
    kid = typeof header.kid === "string" ? header.kid : undefined;
  } catch (err) {
    throw new BundleSignatureError("malformed", `signature is not a valid JWS: ${(err as Error).message}`);
  }
  if (alg === undefined || !algorithms.includes(alg)) {
    throw new BundleSignatureError(
      "unsupported-algorithm",
      `signature algorithm "${alg ?? "(none)"}" is not allowed with this key (allowed: ${algorithms.join(", ")})`,
    );
  }
  const keyLabel = config.keyId !== undefined ? `key "${config.keyId}"` : "the configured key";
  let payloadBytes: Uint8Array;
  try {
    ({ payload: payloadBytes } = await compactVerify(token, key, { algorithms }));
  } catch (err) {
    if (err instanceof joseErrors.JWSSignatureVerificationFailed) {
      // Naming the key the bundle claims helps to spot a key rotation that reached only one side.
      const claimed = kid !== undefined && kid !== config.keyId ? ` (the bundle names key "${kid}")` : "";
      throw new BundleSignatureError("bad-signature", `signature does not verify with ${keyLabel}${claimed}`);
    }
    if (err instanceof joseErrors.JOSEError) {
      throw new BundleSignatureError("malformed", `signature is not a valid JWS: ${err.message}`);
    }
    // jose throws a TypeError for unusable keys (e.g. an RSA key under 2048 bits).
    throw new BundleSignatureError("bad-config", `cannot verify with ${keyLabel}: ${(err as Error).message}`);
  }
  const payload = parsePayload(payloadBytes);

  // OPA picks the key by the configured id, else the header "kid", else the deprecated "keyid" claim. With a
  // single configured key there is nothing to pick, but a bundle that names another key is refused.
  const namedKeyId = kid ?? payload.keyid;
  if (config.keyId !== undefined && namedKeyId !== undefined && namedKeyId !== config.keyId) {
    throw new BundleSignatureError(
      "key-mismatch",
      `bundle is signed with key "${namedKeyId}" but the configured key is "${config.keyId}"` +
        ' (opa build names the key with --verification-key-id, "default" if unset)',
    );
  }
  // As in OPA, scopes must be equal, an absent scope being "".
  if ((payload.scope ?? "") !== (config.scope ?? "")) {
    throw new BundleSignatureError(
      "scope-mismatch",
      `signature scope ${describeScope(payload.scope)} does not match the configured scope ${describeScope(config.scope)}`,
    );
  }
  return { payload, namedKeyId };
}

function describeScope(scope: string | undefined): string {
  return scope === undefined || scope === "" ? "(none)" : `"${scope}"`;
}

interface Verifier {
  key: KeyObject | Uint8Array;
  algorithms: string[];
}

/** Turns the configured key into a jose key and the algorithms it may verify. */
function verificationKey(config: VerificationConfig): Verifier {
  const { algorithm } = config;
  if (algorithm !== undefined && !SUPPORTED_ALGS.has(algorithm)) {
    throw new BundleSignatureError(
      "unsupported-algorithm",
      `signature algorithm "${algorithm}" is not supported (supported: ${[...SUPPORTED_ALGS].join(", ")})`,
    );
  }
  if (algorithm !== undefined && HMAC_ALGS.includes(algorithm)) {
    // An HMAC "secret" that is a PEM public key would let anyone holding the public key sign bundles.
    if (config.key.includes("-----BEGIN")) {
      throw new BundleSignatureError("bad-config", `${algorithm} needs a shared secret, not a PEM key`);
    }
    if (config.key.length === 0) throw new BundleSignatureError("bad-config", `${algorithm} secret is empty`);
    // OPA uses the secret's bytes as the HMAC key.
    return { key: new TextEncoder().encode(config.key), algorithms: [algorithm] };
  }
  let key: KeyObject;
  try {
    // Accepts SPKI "PUBLIC KEY", PKCS#1 "RSA PUBLIC KEY", certificates and private keys, like OPA.
    key = createPublicKey(config.key);
  } catch (err) {
    const hint =
      algorithm === undefined ? "; for a shared secret set algorithm to HS256, HS384 or HS512" : "";
    throw new BundleSignatureError(
      "bad-config",
      `verification key is not a PEM public key or certificate (${(err as Error).message})${hint}`,
    );
  }
  const fitting = algorithmsForKey(key);
  if (algorithm === undefined) {
    if (fitting.length === 0) {
      throw new BundleSignatureError(
        "bad-config",
        `unsupported verification key type "${key.asymmetricKeyType}"`,
      );
    }
    return { key, algorithms: fitting };
  }
  if (!fitting.includes(algorithm)) {
    throw new BundleSignatureError(
      "bad-config",
      `signature algorithm ${algorithm} does not fit the verification key (a ${describeKey(key)} key)`,
    );
  }
  return { key, algorithms: [algorithm] };
}

function algorithmsForKey(key: KeyObject): string[] {
  switch (key.asymmetricKeyType) {
    case "rsa":
      return RSA_ALGS;
    case "rsa-pss":
      return RSA_ALGS.filter((a) => a.startsWith("PS"));
    case "ec": {
      const alg = EC_ALG_BY_CURVE[key.asymmetricKeyDetails?.namedCurve ?? ""];
      return alg === undefined ? [] : [alg];
    }
    case "ed25519":
      return ["EdDSA"];
    default:
      return [];
  }
}

function describeKey(key: KeyObject): string {
  const curve = key.asymmetricKeyDetails?.namedCurve;
  return curve === undefined ? String(key.asymmetricKeyType) : `${key.asymmetricKeyType} ${curve}`;
}

function parsePayload(bytes: Uint8Array): SignaturePayload {
  let doc: unknown;
  try {
    doc = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw new BundleSignatureError("malformed", "signature payload is not JSON");
  }
  if (!isObject(doc) || !Array.isArray(doc.files)) {
    throw new BundleSignatureError("malformed", 'signature payload has no "files" list');
  }
  const files: SignedFile[] = doc.files.map((f, i) => {
    if (
      !isObject(f) ||
      typeof f.name !== "string" ||
      typeof f.hash !== "string" ||
      typeof f.algorithm !== "string"
    ) {
      throw new BundleSignatureError(
        "malformed",
        `signature payload: files[${i}] needs string name, hash, algorithm`,
      );
    }
    return { name: f.name, hash: f.hash, algorithm: f.algorithm };
  });
  return {
    files,
    keyid: optionalString(doc, "keyid"),
    scope: optionalString(doc, "scope"),
    iss: optionalString(doc, "iss"),
    iat: typeof doc.iat === "number" ? doc.iat : undefined,
  };
}

function optionalString(doc: Record<string, unknown>, field: string): string | undefined {
  const v = doc[field];
  if (v === undefined) return undefined;
  if (typeof v !== "string")
    throw new BundleSignatureError("malformed", `signature payload: "${field}" is not a string`);
  return v;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

// --- Files ---------------------------------------------------------------------------------------------------

/** Checks that the bundle's files and the signed list match one to one. Returns how many digests were checked. */
function verifyFiles(files: BundleFiles, signedList: SignedFile[], excluded: RegExp[]): number {
  const isExcluded = (path: string) => excluded.some((re) => re.test(path.slice(1)));

  // Signed names have no leading "/" (OPA trims it); BundleFiles keys have one.
  const signed = new Map<string, SignedFile>();
  for (const f of signedList) {
    const path = `/${f.name.replace(/^\/+/, "")}`;
    if (signed.has(path))
      throw new BundleSignatureError("malformed", `signature lists file ${path} twice`, path);
    signed.set(path, f);
  }

  let checked = 0;
  for (const path of [...files.keys()].sort()) {
    if (path === SIGNATURES_PATH) continue;
    const entry = signed.get(path);
    signed.delete(path);
    if (isExcluded(path)) continue;
    if (entry === undefined) {
      throw new BundleSignatureError(
        "unsigned-file",
        `file ${path} is in the bundle but not in the signature`,
        path,
      );
    }
    // biome-ignore lint/style/noNonNullAssertion: path comes from files.keys()
    checkDigest(path, files.get(path)!, entry);
    checked++;
  }
  // As in OPA, a signed file that is missing is an error even if it matches an exclude pattern.
  const missing = [...signed.keys()].sort();
  const [first, ...others] = missing;
  if (first !== undefined) {
    const also = others.length > 0 ? ` (also missing: ${others.join(", ")})` : "";
    throw new BundleSignatureError(
      "missing-file",
      `file ${first} is in the signature but missing from the bundle${also}`,
      first,
    );
  }
  return checked;
}

function checkDigest(path: string, content: Buffer, entry: SignedFile): void {
  const hashName = FILE_HASHES[entry.algorithm];
  if (hashName === undefined) {
    throw new BundleSignatureError(
      "unsupported-algorithm",
      `file ${path}: hashing algorithm "${entry.algorithm}" is not supported (supported: ${Object.keys(FILE_HASHES).join(", ")})`,
      path,
    );
  }
  const baseName = path.slice(path.lastIndexOf("/") + 1);
  const hashed = STRUCTURED_NAMES.has(baseName) ? Buffer.from(canonicalJson(path, content), "utf8") : content;
  const actual = createHash(hashName).update(hashed).digest();
  // OPA compares decoded bytes, so upper-case hex is as good as lower-case.
  const expected = /^(?:[0-9a-fA-F]{2})*$/.test(entry.hash) ? Buffer.from(entry.hash, "hex") : undefined;
  if (expected === undefined || !expected.equals(actual)) {
    throw new BundleSignatureError("digest-mismatch", `file ${path}: digest mismatch`, path);
  }
}

/**
 * Go's filepath.Match as a RegExp: "*" and "?" do not cross "/", "[...]" classes (with "^" negation and
 * ranges), "\" escapes. The pattern must match the whole path.
 */
function compileGlob(pattern: string): RegExp {
  const bad = () =>
    new BundleSignatureError("bad-config", `exclude pattern "${pattern}" is not a valid glob`);
  let re = "";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern.charAt(i);
    if (c === "*") re += "[^/]*";
    else if (c === "?") re += "[^/]";
    else if (c === "\\") {
      if (++i >= pattern.length) throw bad();
      re += escapeRegExp(pattern.charAt(i));
    } else if (c === "[") {
      // A class: "^" negates, "a-z" is a range, "\\" escapes; Go rejects an empty class.
      let j = i + 1;
      let cls = "";
      if (pattern.charAt(j) === "^") {
        cls = "^";
        j++;
      }
      for (let n = 0; ; j++, n++) {
        const d = pattern.charAt(j);
        if (d === "") throw bad();
        if (d === "]") {
          if (n === 0) throw bad();
          break;
        }
        if (d === "\\") {
          if (++j >= pattern.length) throw bad();
          cls += escapeRegExp(pattern.charAt(j));
        } else cls += d === "-" ? "-" : escapeRegExp(d);
      }
      re += `[${cls}]`;
      i = j;
    } else re += escapeRegExp(c);
  }
  return new RegExp(`^${re}$`);
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/-]/g, "\\$&"); // no "u" flag, so escaping "-" is allowed
}

// --- Canonical JSON (OPA bundle/hash.go) ---------------------------------------------------------------------

// Go allows 10000 levels; a recursive parser cannot go that deep on Node's default stack, and no real data
// document needs to.
const MAX_DEPTH = 1000;

/**
 * The byte string OPA hashes for a structured file: the JSON re-encoded with keys sorted by UTF-8 bytes, no
 * whitespace, Go string escaping without HTML escaping, and number literals kept verbatim. JSON.parse cannot
 * be used because it loses the literal form of numbers (1.50, 1e3, 12345678901234567890).
 */
export function canonicalJson(path: string, content: Buffer): string {
  let text: string;
  try {
    // Go replaces invalid UTF-8 with U+FFFD in a way TextDecoder does not reproduce exactly, so refuse it.
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(content);
  } catch {
    throw new BundleSignatureError("malformed", `file ${path}: not valid UTF-8`, path);
  }
  try {
    return new CanonicalJsonParser(text).document();
  } catch (err) {
    const reason = err instanceof SyntaxError ? err.message : String(err);
    const yaml = path.endsWith(".yaml")
      ? " (YAML data files are only supported when they are plain JSON)"
      : "";
    throw new BundleSignatureError("malformed", `file ${path}: not valid JSON: ${reason}${yaml}`, path);
  }
}

const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
const WHITESPACE = /[ \t\n\r]*/y;
// biome-ignore lint/suspicious/noControlCharactersInRegex: JSON strings may not hold raw control characters
const PLAIN_STRING_PART = /[^"\\\u0000-\u001f]*/y;
const SHORT_ESCAPES: Record<string, string> = {
  '"': '"',
  "\\": "\\",
  "/": "/",
  b: "\b",
  f: "\f",
  n: "\n",
  r: "\r",
  t: "\t",
};

class CanonicalJsonParser {
  private pos = 0;
  constructor(private readonly text: string) {}

  document(): string {
    const out = this.value(0);
    this.skipWhitespace();
    if (this.pos !== this.text.length) this.fail("unexpected data after the top-level value");
    return out;
  }

  private value(depth: number): string {
    if (depth > MAX_DEPTH) this.fail(`nesting deeper than ${MAX_DEPTH} levels`);
    this.skipWhitespace();
    const c = this.text.charAt(this.pos);
    if (c === "{") return this.object(depth);
    if (c === "[") return this.array(depth);
    if (c === '"') return encodeString(this.string());
    for (const literal of ["true", "false", "null"]) {
      if (this.text.startsWith(literal, this.pos)) {
        this.pos += literal.length;
        return literal;
      }
    }
    NUMBER.lastIndex = this.pos;
    const m = NUMBER.exec(this.text);
    if (m === null || m[0] === "") this.fail("unexpected character");
    this.pos += m[0].length;
    return m[0]; // verbatim, as Go's json.Number
  }

  private object(depth: number): string {
    this.pos++; // {
    // Later duplicates win, as when Go decodes into a map.
    const members = new Map<string, string>();
    this.skipWhitespace();
    if (this.eat("}")) return "{}";
    do {
      this.skipWhitespace();
      if (this.text.charAt(this.pos) !== '"') this.fail("expected a string key");
      const key = this.string();
      this.skipWhitespace();
      if (!this.eat(":")) this.fail('expected ":"');
      members.set(key, this.value(depth + 1));
      this.skipWhitespace();
    } while (this.eat(","));
    if (!this.eat("}")) this.fail('expected "," or "}"');
    // Go sorts keys as byte strings, i.e. by UTF-8 bytes — not by UTF-16 units as Array.prototype.sort does.
    const keys = [...members.keys()].map((k) => ({ k, bytes: Buffer.from(k, "utf8") }));
    keys.sort((a, b) => Buffer.compare(a.bytes, b.bytes));
    return `{${keys.map(({ k }) => `${encodeString(k)}:${members.get(k)}`).join(",")}}`;
  }

  private array(depth: number): string {
    this.pos++; // [
    const items: string[] = [];
    this.skipWhitespace();
    if (this.eat("]")) return "[]";
    do {
      items.push(this.value(depth + 1));
      this.skipWhitespace();
    } while (this.eat(","));
    if (!this.eat("]")) this.fail('expected "," or "]"');
    return `[${items.join(",")}]`;
  }

  /** Decodes a string literal starting at the opening quote. */
  private string(): string {
    this.pos++; // "
    let out = "";
    for (;;) {
      PLAIN_STRING_PART.lastIndex = this.pos;
      // biome-ignore lint/style/noNonNullAssertion: the pattern matches the empty string at worst
      const part = PLAIN_STRING_PART.exec(this.text)![0];
      out += part;
      this.pos += part.length;
      const c = this.text.charAt(this.pos);
      if (c === '"') {
        this.pos++;
        return out;
      }
      if (c !== "\\") this.fail(c === "" ? "unterminated string" : "control character in string");
      const e = this.text.charAt(this.pos + 1);
      const short = SHORT_ESCAPES[e];
      if (short !== undefined) {
        out += short;
        this.pos += 2;
      } else if (e === "u") {
        out += this.unicodeEscape();
      } else this.fail("invalid escape");
    }
  }

  /** \uXXXX, joining surrogate pairs; a lone surrogate becomes U+FFFD, as in Go. */
  private unicodeEscape(): string {
    const hi = this.hex4(this.pos + 2);
    this.pos += 6;
    if (hi < 0xd800 || hi > 0xdfff) return String.fromCharCode(hi);
    if (hi <= 0xdbff && this.text.startsWith("\\u", this.pos)) {
      const lo = this.hex4(this.pos + 2);
      if (lo >= 0xdc00 && lo <= 0xdfff) {
        this.pos += 6;
        return String.fromCharCode(hi, lo);
      }
    }
    return "\uFFFD";
  }

  private hex4(at: number): number {
    const digits = this.text.slice(at, at + 4);
    if (!/^[0-9a-fA-F]{4}$/.test(digits)) this.fail("invalid \\u escape");
    return Number.parseInt(digits, 16);
  }

  private skipWhitespace(): void {
    WHITESPACE.lastIndex = this.pos;
    WHITESPACE.exec(this.text);
    this.pos = WHITESPACE.lastIndex;
  }

  private eat(c: string): boolean {
    if (this.text.charAt(this.pos) !== c) return false;
    this.pos++;
    return true;
  }

  private fail(message: string): never {
    throw new SyntaxError(`${message} at offset ${this.pos}`);
  }
}

/**
 * Go's encoding/json string encoding with SetEscapeHTML(false): like JSON.stringify (same short escapes,
 * lower-case \u00XX for other control characters), except that U+2028 and U+2029 are escaped too. Lone
 * surrogates cannot occur: the parser already replaced them.
 */
function encodeString(s: string): string {
  return JSON.stringify(s).replace(/[\u2028\u2029]/g, (c) => (c === "\u2028" ? "\\u2028" : "\\u2029"));
}
