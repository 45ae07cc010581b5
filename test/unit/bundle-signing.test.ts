// Bundle signature verification against bundles signed by the real OPA CLI (`opa build --signing-key`,
// `opa sign`), so that the hashing rules are checked against OPA itself rather than against our reading of it.
import { execFile } from "node:child_process";
import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import t from "tap";
import { type BundleFiles, readBundleArchive, writeBundleArchive } from "../../src/bundles/archive.js";
import {
  BundleSignatureError,
  type BundleSignatureErrorCode,
  canonicalJson,
  type VerificationConfig,
  verifyBundleSignature,
} from "../../src/bundles/signing.js";

const run = promisify(execFile);
const OPA = fileURLToPath(new URL("../../.tools/bin/opa", import.meta.url));
const HMAC_SECRET = "correct horse battery staple";

const pem = (key: KeyObject) => key.export({ type: "spki", format: "pem" }).toString();
const pkcs8 = (key: KeyObject) => key.export({ type: "pkcs8", format: "pem" }).toString();

type Asserts = Pick<typeof t, "type" | "equal" | "match">;

/** Expects verification to fail with the given code and a message matching `message`. */
async function rejects(
  t: Asserts,
  files: BundleFiles,
  config: VerificationConfig,
  code: BundleSignatureErrorCode,
  message: RegExp,
): Promise<void> {
  const err = await verifyBundleSignature(files, config).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.type(err, BundleSignatureError, "throws a BundleSignatureError");
  t.equal((err as BundleSignatureError).code, code, `code is ${code}`);
  t.match((err as Error).message, message);
}

/** Copy of a bundle with `change` applied to its file map. */
function edited(files: BundleFiles, change: (f: BundleFiles) => void): BundleFiles {
  const copy = new Map(files);
  change(copy);
  return copy;
}

// Pack the edited files into a real archive and back, as an attacker would have to.
async function repacked(files: BundleFiles): Promise<BundleFiles> {
  return readBundleArchive(await writeBundleArchive(files));
}

t.test(
  "OPA-signed bundles",
  { skip: existsSync(OPA) ? false : `opa binary not found at ${OPA}` },
  async (t) => {
    const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const otherRsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const ec = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const dir = t.testdir({
      src: {
        "policy.rego": "package authz\n\ndefault allow := false\n\nallow if input.user in data.admins\n",
        "data.json": '{"admins": ["alice"], "limits": {"rate": 1.50}}',
      },
      "rsa.pem": pkcs8(rsa.privateKey),
      "ec.pem": pkcs8(ec.privateKey),
      "claims.json": JSON.stringify({ scope: "write", iss: "ci" }),
    });

    async function build(name: string, ...signing: string[]): Promise<BundleFiles> {
      const out = join(dir, `${name}.tar.gz`);
      const args = ["build", "-b", "-t", "wasm", "-e", "authz/allow", "-o", out, ...signing, "."];
      await run(OPA, args, { cwd: join(dir, "src") });
      return readBundleArchive(readFileSync(out));
    }
    // Independent builds, so run them side by side.
    const [rs256, es256, hs256, scoped] = await Promise.all([
      build("rs256", "--signing-key", join(dir, "rsa.pem")),
      build("es256", "--signing-key", join(dir, "ec.pem"), "--signing-alg", "ES256"),
      build("hs256", "--signing-key", HMAC_SECRET, "--signing-alg", "HS256"),
      build("scoped", "--signing-key", join(dir, "rsa.pem"), "--claims-file", join(dir, "claims.json")),
    ]);
    const rsaKey = pem(rsa.publicKey);

    t.test("RS256 bundle verifies with the matching public key", async (t) => {
      t.strictSame([...rs256.keys()].sort(), [
        "/.manifest",
        "/.signatures.json",
        "/data.json",
        "/policy.rego",
        "/policy.wasm",
      ]);
      const result = await verifyBundleSignature(rs256, { key: rsaKey });
      t.equal(result.keyId, "default", "opa build names the key 'default' unless told otherwise");
      t.equal(result.files, 4, "every file but .signatures.json is checked");
      t.ok(await verifyBundleSignature(rs256, { key: rsaKey, keyId: "default", algorithm: "RS256" }));
      // A PKCS#8 private key works as well (OPA accepts one too).
      t.ok(await verifyBundleSignature(rs256, { key: pkcs8(rsa.privateKey) }));
    });

    t.test("ES256 bundle verifies with the EC public key", async (t) => {
      t.equal((await verifyBundleSignature(es256, { key: pem(ec.publicKey) })).files, 4);
      t.ok(await verifyBundleSignature(es256, { key: pem(ec.publicKey), algorithm: "ES256" }));
      await rejects(
        t,
        es256,
        { key: pem(ec.publicKey), algorithm: "RS256" },
        "bad-config",
        /RS256 does not fit/,
      );
      await rejects(t, es256, { key: rsaKey }, "unsupported-algorithm", /"ES256" is not allowed.*RS256/);
    });

    t.test("a wrong key fails, naming the key", async (t) => {
      const wrong = pem(otherRsa.publicKey);
      await rejects(
        t,
        rs256,
        { key: wrong, keyId: "default" },
        "bad-signature",
        /^signature does not verify with key "default"$/,
      );
      await rejects(
        t,
        rs256,
        { key: wrong },
        "bad-signature",
        /with the configured key \(the bundle names key "default"\)/,
      );
    });

    t.test("a configured key id must match the one the bundle names", async (t) => {
      await rejects(
        t,
        rs256,
        { key: rsaKey, keyId: "prod" },
        "key-mismatch",
        /signed with key "default".*configured key is "prod"/,
      );
    });

    t.test("a changed file fails, naming the file", async (t) => {
      const wasm = Buffer.from(rs256.get("/policy.wasm") ?? []);
      wasm.writeUInt8(wasm.readUInt8(100) ^ 0xff, 100); // one byte inverted
      const badWasm = await repacked(edited(rs256, (f) => f.set("/policy.wasm", wasm)));
      await rejects(t, badWasm, { key: rsaKey }, "digest-mismatch", /^file \/policy\.wasm: digest mismatch$/);

      const data = Buffer.from('{"admins": ["alice", "mallory"], "limits": {"rate": 1.50}}');
      const badData = await repacked(edited(rs256, (f) => f.set("/data.json", data)));
      await rejects(t, badData, { key: rsaKey }, "digest-mismatch", /^file \/data\.json: digest mismatch$/);

      // 1.5 is the same number as 1.50, but OPA hashes number literals as written.
      const sameValue = Buffer.from('{"admins": ["alice"], "limits": {"rate": 1.5}}');
      const renumbered = edited(rs256, (f) => f.set("/data.json", sameValue));
      await rejects(t, renumbered, { key: rsaKey }, "digest-mismatch", /\/data\.json/);

      const rego = edited(rs256, (f) =>
        f.set("/policy.rego", Buffer.concat([f.get("/policy.rego") ?? Buffer.alloc(0), Buffer.from("\n")])),
      );
      await rejects(t, rego, { key: rsaKey }, "digest-mismatch", /^file \/policy\.rego: digest mismatch$/);
    });

    t.test("data.json and .manifest are hashed as canonical JSON, not raw bytes", async (t) => {
      // Same document, other layout and key order: still verifies.
      const reformatted = Buffer.from('{\n  "limits" : { "rate" : 1.50 },\n  "admins" : [ "alice" ]\n}\n');
      const manifest = JSON.parse(rs256.get("/.manifest")?.toString() ?? "{}") as Record<string, unknown>;
      const reordered = Object.fromEntries(Object.entries(manifest).reverse());
      const files = edited(rs256, (f) => {
        f.set("/data.json", reformatted);
        f.set("/.manifest", Buffer.from(JSON.stringify(reordered, null, 4)));
      });
      t.equal((await verifyBundleSignature(await repacked(files), { key: rsaKey })).files, 4);
    });

    t.test("an added file fails", async (t) => {
      const added = await repacked(edited(rs256, (f) => f.set("/x.rego", Buffer.from("package x\n"))));
      await rejects(
        t,
        added,
        { key: rsaKey },
        "unsigned-file",
        /^file \/x\.rego is in the bundle but not in the signature$/,
      );
      // ...unless excluded the way OPA's exclude_files does it.
      t.ok(await verifyBundleSignature(added, { key: rsaKey, excludeFiles: ["*.rego"] }));
      t.ok(await verifyBundleSignature(added, { key: rsaKey, excludeFiles: ["[wx].rego"] }));
      await rejects(t, added, { key: rsaKey, excludeFiles: ["sub/*"] }, "unsigned-file", /\/x\.rego/);
      await rejects(t, added, { key: rsaKey, excludeFiles: ["[]"] }, "bad-config", /exclude pattern "\[\]"/);
    });

    t.test("a removed file fails", async (t) => {
      const removed = await repacked(edited(rs256, (f) => f.delete("/data.json")));
      await rejects(
        t,
        removed,
        { key: rsaKey },
        "missing-file",
        /^file \/data\.json is in the signature but missing from the bundle$/,
      );
      const twoGone = edited(rs256, (f) => {
        f.delete("/data.json");
        f.delete("/policy.rego");
      });
      await rejects(
        t,
        twoGone,
        { key: rsaKey },
        "missing-file",
        /\/data\.json .*\(also missing: \/policy\.rego\)/,
      );
    });

    t.test("an unsigned bundle fails", async (t) => {
      const unsigned = edited(rs256, (f) => f.delete("/.signatures.json"));
      await rejects(
        t,
        unsigned,
        { key: rsaKey },
        "unsigned",
        /^bundle is not signed \(no \.signatures\.json\)$/,
      );
    });

    t.test("garbage in .signatures.json fails", async (t) => {
      const sig = (content: string) => edited(rs256, (f) => f.set("/.signatures.json", Buffer.from(content)));
      await rejects(t, sig('{"signatures": ["garbage"]}'), { key: rsaKey }, "malformed", /not a valid JWS/);
      await rejects(t, sig("not json"), { key: rsaKey }, "malformed", /not valid JSON/);
      await rejects(t, sig('{"signatures": []}'), { key: rsaKey }, "malformed", /exactly one JWT/);
      await rejects(
        t,
        sig('{"signatures": ["a.b.c", "d.e.f"]}'),
        { key: rsaKey },
        "malformed",
        /exactly one JWT/,
      );
      const token =
        (JSON.parse(rs256.get("/.signatures.json")?.toString() ?? "") as { signatures: string[] })
          .signatures[0] ?? "";
      const payload = token.split(".")[1];
      // One character of the signature part changed (never the last: its low bits are padding).
      const changed = token.at(-2) === "A" ? "B" : "A";
      const flipped = `${token.slice(0, -2)}${changed}${token.slice(-1)}`;
      await rejects(
        t,
        sig(JSON.stringify({ signatures: [flipped] })),
        { key: rsaKey },
        "bad-signature",
        /does not verify/,
      );
      // The original payload re-announced as unsigned ("alg": "none") must not pass.
      const none = `${Buffer.from('{"alg":"none"}').toString("base64url")}.${payload}.`;
      await rejects(
        t,
        sig(JSON.stringify({ signatures: [none] })),
        { key: rsaKey },
        "unsupported-algorithm",
        /"none" is not allowed/,
      );
    });

    t.test("HS256 with a shared secret", async (t) => {
      const result = await verifyBundleSignature(hs256, { key: HMAC_SECRET, algorithm: "HS256" });
      t.equal(result.files, 4);
      await rejects(
        t,
        hs256,
        { key: "wrong secret", algorithm: "HS256", keyId: "default" },
        "bad-signature",
        /with key "default"/,
      );
      // A secret is never guessed from a key that is not PEM: the algorithm must say so.
      await rejects(
        t,
        hs256,
        { key: HMAC_SECRET },
        "bad-config",
        /not a PEM public key.*set algorithm to HS256/,
      );
      // Nor can a public key be used as an HMAC secret (the classic algorithm-confusion forgery).
      await rejects(t, rs256, { key: rsaKey, algorithm: "HS256" }, "bad-config", /needs a shared secret/);
      await rejects(t, hs256, { key: rsaKey }, "unsupported-algorithm", /"HS256" is not allowed/);
      await rejects(
        t,
        hs256,
        { key: HMAC_SECRET, algorithm: "HS999" },
        "unsupported-algorithm",
        /"HS999" is not supported/,
      );
    });

    t.test("scope must match, as in OPA", async (t) => {
      const result = await verifyBundleSignature(scoped, { key: rsaKey, scope: "write" });
      t.same(
        { scope: result.scope, issuer: result.issuer, keyId: result.keyId },
        { scope: "write", issuer: "ci", keyId: undefined },
      );
      await rejects(
        t,
        scoped,
        { key: rsaKey },
        "scope-mismatch",
        /scope "write" does not match the configured scope \(none\)/,
      );
      await rejects(t, scoped, { key: rsaKey, scope: "read" }, "scope-mismatch", /"write" .* "read"/);
      await rejects(t, rs256, { key: rsaKey, scope: "write" }, "scope-mismatch", /scope \(none\) .* "write"/);
    });

    t.test("matches `opa sign` on JSON that only a canonical encoding gets right", async (t) => {
      // Unsorted and duplicate keys, number literals that JSON.parse would rewrite, escapes, lone surrogates,
      // U+2028, HTML characters, non-BMP keys (UTF-8 vs UTF-16 order), a BOM, a non-data .json (raw bytes).
      const data =
        '\ufeff{ "z": 1.50, "n": [1E5, -0, 1e-7, 12345678901234567890, 1.0e+2], "a": 1, "a": "dup",\n' +
        '  "s": "caf\\u00e9 <b>&amp;</b> \u2028 \\/ \\b\\f\\n\\t \\u0001 \\ud83d x \\ud83d\\ude00 \u007f",\n' +
        '  "\\uffff": null, "\ud83d\ude00": true, "k": {"\\u00e9": 1, "e\\u0301": 2, "E": 3} }';
      // One testdir per test: the bundle to sign, and where `opa sign` writes .signatures.json.
      const root = t.testdir({
        bundle: {
          "data.json": data,
          sub: { "data.json": '{"x": [1, 2.0]}' },
          ".manifest": '{"roots": [""], "revision": "r1", "metadata": {"b": 1, "a": [1.0]}}',
          "other.json": '{ "b": 2, "a": 1 }',
          "p.rego": "package x\n\nallow := true\n",
        },
        out: {},
      });
      const [bundle, out] = [join(root, "bundle"), join(root, "out")];
      // Run from inside the bundle: given an absolute path, `opa sign` names the files by that whole path.
      await run(OPA, ["sign", "--signing-key", join(dir, "rsa.pem"), "--bundle", ".", "-o", out], {
        cwd: bundle,
      });
      const files: BundleFiles = new Map();
      for (const name of ["data.json", "sub/data.json", ".manifest", "other.json", "p.rego"]) {
        files.set(`/${name}`, readFileSync(join(bundle, name)));
      }
      files.set("/.signatures.json", readFileSync(join(out, ".signatures.json")));
      t.equal((await verifyBundleSignature(files, { key: rsaKey })).files, 5);
      // other.json is hashed byte for byte, so reformatting it breaks the signature.
      const reformatted = edited(files, (f) => f.set("/other.json", Buffer.from('{"a":1,"b":2}')));
      await rejects(t, reformatted, { key: rsaKey }, "digest-mismatch", /\/other\.json/);
    });
  },
);

t.test("canonicalJson", async (t) => {
  const c = (s: string) => canonicalJson("/data.json", Buffer.from(s));
  t.equal(c(' { "b" : [ 1.50 , -0, 2E+3 ] , "a" : { } } '), '{"a":{},"b":[1.50,-0,2E+3]}');
  t.equal(
    c('{"\ud83d\ude00": 1, "\uffff": 2, "a": 3}'),
    '{"a":3,"\uffff":2,"\ud83d\ude00":1}',
    "UTF-8 byte order",
  );
  t.equal(c('"<&> \u2028\u2029 \\u0000 \\b"'), '"<&> \\u2028\\u2029 \\u0000 \\b"');
  t.equal(c('"\\udc00\\ud800"'), '"\ufffd\ufffd"', "lone surrogates become U+FFFD, as in Go");
  for (const bad of ["", "{", '{"a":}', "[1,]", "01", "1.", '"\u0001"', "{} {}", "'a'", "NaN"]) {
    t.throws(() => c(bad), BundleSignatureError, `rejects ${JSON.stringify(bad)}`);
  }
  t.throws(() => canonicalJson("/data.json", Buffer.from([0x7b, 0xff, 0x7d])), /not valid UTF-8/);
  t.throws(() => canonicalJson("/data.yaml", Buffer.from("a: 1")), /only supported when they are plain JSON/);
  t.equal(c(`${"[".repeat(1000)}${"]".repeat(1000)}`).length, 2000, "deep nesting is fine");
  t.throws(() => c(`${"[".repeat(1002)}${"]".repeat(1002)}`), /nesting deeper than 1000 levels/);
});

t.test("configuration errors", async (t) => {
  const files: BundleFiles = new Map([["/.signatures.json", Buffer.from('{"signatures": ["a.b.c"]}')]]);
  const err = (config: VerificationConfig) =>
    verifyBundleSignature(files, config).catch((e: Error) => e.message);
  t.match(await err({ key: "/etc/pamgate/key.pem" }), /not a PEM public key/);
  t.match(await err({ key: "", algorithm: "HS256" }), /secret is empty/);
});
