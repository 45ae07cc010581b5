// Masking Secret values in Kubernetes JSON responses (src/proxy/kubernetes/mask.ts): a single Secret, lists
// (SecretList, mixed List, kindless items), watch streams split at every byte, Tables, the last-applied
// annotation, every strategy (and agreement with the PostgreSQL masker), base64 validity, malformed JSON failing
// closed, bounded memory on a large list, escapes and unicode, and the content-type gate.
import { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import t from "tap";
import type { MaskRule } from "../../src/decision/contract.js";
import {
  createMaskStream,
  KubeMaskError,
  type MaskOptions,
  maskableContentEncoding,
  maskableContentType,
  SecretMasker,
} from "../../src/proxy/kubernetes/mask.js";
import { Masker } from "../../src/proxy/postgres/masking.js";
import { REDACTED_BASE64, ValueMasker } from "../../src/util/mask-strategies.js";
import { maskValue } from "../helpers/masking.js";

const KEY = Buffer.from("k");
const values = new ValueMasker(KEY);
const REDACT: MaskRule[] = [
  { field: "data", strategy: "redact" },
  { field: "stringData", strategy: "redact" },
];
const b64 = (s: string | Buffer) => Buffer.from(s).toString("base64");
const unb64 = (s: string) => Buffer.from(s, "base64").toString();
const LAST = "kubectl.kubernetes.io/last-applied-configuration";

interface Run {
  out: string;
  error: Error | null;
}

/** The body through a SecretMasker, cut into chunks at `cuts` (ascending byte offsets). */
function run(
  body: string | Buffer,
  rules: MaskRule[] = REDACT,
  opts: Partial<MaskOptions> = {},
  cuts: number[] = [],
) {
  const m = new SecretMasker(rules, { masker: values, ...opts });
  const buf = Buffer.from(body);
  const out: Buffer[] = [];
  let error: Error | null = null;
  try {
    let from = 0;
    for (const c of [...cuts, buf.length]) {
      out.push(...m.write(buf.subarray(from, c)));
      from = c;
    }
    out.push(...m.end());
  } catch (e) {
    error = e as Error;
  }
  return { out: Buffer.concat(out).toString(), error, masker: m } satisfies Run & { masker: SecretMasker };
}

function mask(body: string | Buffer, rules: MaskRule[] = REDACT, opts: Partial<MaskOptions> = {}): string {
  const r = run(body, rules, opts);
  if (r.error) throw r.error;
  return r.out;
}

const secret = (name: string, data: Record<string, string>, extra: Record<string, unknown> = {}) => ({
  kind: "Secret",
  apiVersion: "v1",
  metadata: { name, namespace: "default", resourceVersion: "42" },
  data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, b64(v)])),
  type: "Opaque",
  ...extra,
});

t.test("a single Secret: each data value redacted, keys and everything else byte-identical", async (t) => {
  const body = JSON.stringify(secret("db", { user: "admin", password: "hunter2" }));
  const out = mask(body);
  t.equal(
    out,
    body.replace(b64("admin"), REDACTED_BASE64).replace(b64("hunter2"), REDACTED_BASE64),
    "only the values change",
  );
  const obj = JSON.parse(out);
  t.same(Object.keys(obj.data), ["user", "password"]);
  t.equal(unb64(obj.data.password), "***", "base64 -d prints the marker");
});

t.test("kind after data, duplicate kinds, escaped keys: still a Secret", async (t) => {
  const late = `{"data":{"a":"${b64("s3cret")}"},"metadata":{"name":"x"},"kind":"Secret"}`;
  t.equal(JSON.parse(mask(late)).data.a, REDACTED_BASE64, "held until its end, masked when kind comes last");
  const dup = `{"kind":"Secret","kind":"ConfigMap","data":{"a":"${b64("s3cret")}"}}`;
  t.notOk(mask(dup).includes(b64("s3cret")), "any kind Secret makes it a Secret");
  const escaped = `{"kind":"Secr\\u0065t","d\\u0061ta":{"a":"${b64("s3cret")}"}}`;
  const out = mask(escaped);
  t.notOk(out.includes(b64("s3cret")), "escapes in the kind and the field name are decoded");
  t.equal(JSON.parse(out).data.a, REDACTED_BASE64);
});

t.test("SecretList: items without kind are Secrets; the list envelope passes", async (t) => {
  const list = {
    kind: "SecretList",
    apiVersion: "v1",
    metadata: { resourceVersion: "7", continue: "abc" },
    items: [1, 2, 3].map((i) => {
      const { kind: _k, apiVersion: _a, ...item } = secret(`s${i}`, { token: `tok-${i}` });
      return item;
    }),
  };
  const out = JSON.parse(mask(JSON.stringify(list)));
  t.same(out.metadata, list.metadata);
  t.same(
    out.items.map((i: { data: { token: string } }) => i.data.token),
    [REDACTED_BASE64, REDACTED_BASE64, REDACTED_BASE64],
  );
  t.same(
    out.items.map((i: { metadata: { name: string } }) => i.metadata.name),
    ["s1", "s2", "s3"],
  );
});

t.test(
  "a mixed List: Secret items masked, others byte-identical; kindless items by resourceIsSecrets",
  async (t) => {
    const cm = {
      kind: "ConfigMap",
      apiVersion: "v1",
      metadata: { name: "cm" },
      data: { password: "visible" },
    };
    const kindless = { metadata: { name: "k" }, data: { a: b64("kindless") } };
    const list = {
      kind: "List",
      apiVersion: "v1",
      metadata: {},
      items: [cm, secret("s", { a: "x1" }), kindless],
    };
    const body = JSON.stringify(list);
    const out = mask(body);
    t.ok(out.includes(JSON.stringify(cm)), "the ConfigMap is untouched");
    t.ok(out.includes(JSON.stringify(kindless)), "a kindless item of a List is not assumed a Secret");
    t.equal(JSON.parse(out).items[1].data.a, REDACTED_BASE64);
    const asSecrets = JSON.parse(mask(body, REDACT, { resourceIsSecrets: true }));
    t.equal(asSecrets.items[2].data.a, REDACTED_BASE64, "with resourceIsSecrets it is");
    t.equal(asSecrets.items[0].data.password, "visible", "a ConfigMap says what it is");
  },
);

t.test("ConfigMaps and other objects pass byte-identical, whatever their layout", async (t) => {
  const pretty = JSON.stringify(
    {
      kind: "ConfigMapList",
      apiVersion: "v1",
      metadata: {},
      items: [{ kind: "ConfigMap", metadata: { name: "é\u2028" }, data: { "a\tb": 'x"y\\z', n: "" } }],
    },
    null,
    2,
  ).replace("ConfigMap", "Config\\u004dap");
  const body = `${pretty}\n`;
  t.equal(mask(body), body);
  const scalars =
    '[1, -0.5e+10, true, false, null, "s", {}, [], {"kind":"Pod","spec":{"x":[1,2,{"y":null}]}}]';
  t.equal(mask(scalars), scalars, "a top-level array of anything");
  t.equal(mask(""), "", "an empty body");
  t.equal(mask("  \n"), "  \n");
});

const EVENTS = [
  { type: "ADDED", object: secret("a", { k: "alpha-secret" }) },
  {
    type: "MODIFIED",
    object: { kind: "ConfigMap", apiVersion: "v1", metadata: { name: "c" }, data: { k: "cm-value" } },
  },
  { type: "BOOKMARK", object: { kind: "Secret", apiVersion: "v1", metadata: { resourceVersion: "99" } } },
  {
    type: "ERROR",
    object: {
      kind: "Status",
      apiVersion: "v1",
      status: "Failure",
      message: "too old resource version",
      code: 410,
    },
  },
  { type: "DELETED", object: secret("b", { k: "beta-secret", "ü\\n": "gamma-secret" }) },
];
// A last event with escapes in the names the masker looks for, so that splits land inside them too.
const ESCAPED_EVENT = `{"type":"ADDED","object":{"kind":"Secr\\u0065t","d\\u0061ta":{"k":"${b64("delta-secret")}"}}}\n`;
const WATCH = EVENTS.map((e) => `${JSON.stringify(e)}\n`).join("") + ESCAPED_EVENT;

t.test("a watch stream: one event per line, Secrets masked, the rest as it was", async (t) => {
  const out = mask(WATCH);
  const lines = out.split("\n");
  t.equal(lines.length, EVENTS.length + 2);
  const events = lines.slice(0, -1).map((l) => JSON.parse(l));
  t.same(events[0].object.data, { k: REDACTED_BASE64 });
  t.equal(lines[1], JSON.stringify(EVENTS[1]), "ConfigMap event untouched");
  t.equal(lines[2], JSON.stringify(EVENTS[2]), "BOOKMARK untouched");
  t.equal(lines[3], JSON.stringify(EVENTS[3]), "ERROR untouched");
  t.same(Object.keys(events[4].object.data), ["k", "ü\\n"]);
  t.same(JSON.parse(lines[5] as string).object, { kind: "Secret", data: { k: REDACTED_BASE64 } });
  for (const s of ["alpha-secret", "beta-secret", "gamma-secret", "delta-secret"])
    t.notOk(out.includes(b64(s)));
});

t.test("a watch stream split at every byte boundary gives the same bytes", async (t) => {
  const want = mask(WATCH);
  const n = Buffer.byteLength(WATCH);
  let bad = 0;
  for (let i = 1; i < n; i++) if (run(WATCH, REDACT, {}, [i]).out !== want) bad++;
  t.equal(bad, 0, "every 2-way split");
  t.equal(
    run(
      WATCH,
      REDACT,
      {},
      Array.from({ length: n - 1 }, (_, i) => i + 1),
    ).out,
    want,
    "1-byte chunks",
  );
  let seed = 7;
  const rand = () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed;
  };
  for (let k = 0; k < 300; k++) {
    const cuts = [...new Set(Array.from({ length: 5 }, () => 1 + (rand() % (n - 1))))].sort((a, b) => a - b);
    if (run(WATCH, REDACT, {}, cuts).out !== want) bad++;
  }
  t.equal(bad, 0, "random 6-way splits");
});

t.test("a Table: row objects that are Secrets are masked, cells pass", async (t) => {
  const pom = {
    kind: "PartialObjectMetadata",
    apiVersion: "meta.k8s.io/v1",
    metadata: {
      name: "p",
      annotations: { [LAST]: `${JSON.stringify(secret("p", { pw: "applied-pw" }))}\n`, other: "kept" },
    },
  };
  const { kind: _k, ...kindless } = secret("n", { pw: "kindless-pw" });
  const table = {
    kind: "Table",
    apiVersion: "meta.k8s.io/v1",
    metadata: { resourceVersion: "5" },
    columnDefinitions: [{ name: "Name", type: "string", format: "name", description: "", priority: 0 }],
    rows: [
      { cells: ["s", "Opaque", 1, "5m"], object: secret("s", { pw: "row-pw" }) },
      { cells: ["p", "Opaque", 1, "5m"], object: pom },
      { cells: ["n", "Opaque", 1, "5m"], object: kindless },
      { cells: ["none", "Opaque", 1, "5m"] },
    ],
  };
  const body = JSON.stringify(table);
  const out = mask(body);
  const o = JSON.parse(out);
  t.same(o.columnDefinitions, table.columnDefinitions);
  t.same(
    o.rows.map((r: { cells: unknown }) => r.cells),
    table.rows.map((r) => r.cells),
  );
  t.equal(o.rows[0].object.data.pw, REDACTED_BASE64);
  const applied = o.rows[1].object.metadata.annotations[LAST];
  t.equal(
    JSON.parse(applied).data.pw,
    REDACTED_BASE64,
    "metadata-only rows: the last-applied Secret is masked",
  );
  t.equal(o.rows[1].object.metadata.annotations.other, "kept");
  t.equal(o.rows[2].object.data.pw, b64("kindless-pw"), "a kindless row object without resourceIsSecrets");
  const asSecrets = JSON.parse(mask(body, REDACT, { resourceIsSecrets: true }));
  t.equal(asSecrets.rows[2].object.data.pw, REDACTED_BASE64, "… and with it");
  for (const s of ["row-pw", "applied-pw"]) t.notOk(out.includes(b64(s)) || out.includes(s));
});

t.test("the last-applied annotation: its data and stringData masked, re-stringified", async (t) => {
  const applied = {
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name: "s", namespace: "default" },
    data: { pw: b64("applied-data") },
    stringData: { token: "applied-string" },
  };
  const s = secret("s", { pw: "live" }, {});
  (s.metadata as Record<string, unknown>).annotations = { [LAST]: `${JSON.stringify(applied)}\n` };
  const out = mask(JSON.stringify(s));
  const annotation = JSON.parse(out).metadata.annotations[LAST] as string;
  t.ok(annotation.endsWith("\n"), "kubectl's trailing newline is kept");
  const a = JSON.parse(annotation);
  t.same(a.data, { pw: REDACTED_BASE64 });
  t.same(a.stringData, { token: "***" }, "stringData is text: the marker itself");
  t.same(a.metadata, applied.metadata);
  for (const v of ["applied-data", "applied-string", "live"])
    t.notOk(out.includes(v) || out.includes(b64(v)));

  (s.metadata as Record<string, unknown>).annotations = { [LAST]: "not json {" };
  t.equal(JSON.parse(mask(JSON.stringify(s))).metadata.annotations[LAST], "***", "unparsable: the marker");

  const cm = {
    kind: "ConfigMap",
    metadata: { annotations: { [LAST]: JSON.stringify({ kind: "ConfigMap", data: { Secret: "x" } }) } },
    data: { Secret: "x" },
  };
  t.equal(mask(JSON.stringify(cm)), JSON.stringify(cm), "a ConfigMap's annotation is left alone");
});

t.test("strategies on data (base64 in, base64 out) and on stringData (text)", async (t) => {
  const body = JSON.stringify({
    kind: "Secret",
    data: {
      a: b64("supersecret"),
      b: b64("abc"),
      e: "",
      bin: Buffer.from([0, 1, 0xff, 0xfe, 9, 8]).toString("base64"),
    },
    stringData: { s: "José Müller", u: "ab😀😀😀😀" },
  });
  const partial = JSON.parse(
    mask(body, [
      { field: "data", strategy: "partial" },
      { field: "stringData", strategy: "partial" },
    ]),
  );
  t.equal(unb64(partial.data.a), "*******cret");
  t.equal(unb64(partial.data.b), "***", "4 characters or fewer: nothing kept");
  t.equal(unb64(partial.data.e), "*", "an empty value still shows it was masked");
  t.same(
    [...Buffer.from(partial.data.bin, "base64")],
    [0x2a, 0x2a, 0xff, 0xfe, 9, 8],
    "binary: the last 4 bytes",
  );
  t.equal(partial.stringData.s, "*******ller");
  t.equal(partial.stringData.u, "**😀😀😀😀", "characters, not UTF-16 units");

  const hashed = JSON.parse(
    mask(body, [
      { field: "data", strategy: "hash" },
      { field: "stringData", strategy: "hash" },
    ]),
  );
  t.match(unb64(hashed.data.a), /^h:[0-9a-f]{16}$/);
  t.equal(hashed.data.a.length, 24, "18 bytes: 24 base64 characters, no padding");
  t.match(hashed.stringData.s, /^h:[0-9a-f]{16}$/);
  // The same plaintext hashes alike in a Secret and in a SQL result (same key, same derivation).
  const pg = new Masker(KEY);
  const sql = (v: string) => maskValue(pg, Buffer.from(v), { strategy: "hash", textLike: true })?.toString();
  t.equal(unb64(hashed.data.a), sql("supersecret"));
  t.equal(hashed.stringData.s, sql("José Müller"));
  t.equal(unb64(hashed.data.e), sql(""));
  const sqlPartial = (v: string) =>
    maskValue(pg, Buffer.from(v), { strategy: "partial", textLike: true })?.toString();
  t.equal(partial.stringData.s, sqlPartial("José Müller"), "partial agrees with PostgreSQL's");
  t.not(JSON.parse(mask(body, [{ field: "data", strategy: "hash" }])).data.a, partial.data.a);
  const other = new SecretMasker([{ field: "data", strategy: "hash" }], {
    masker: new ValueMasker(Buffer.from("x")),
  });
  const otherOut = JSON.parse(Buffer.concat([...other.write(Buffer.from(body)), ...other.end()]).toString());
  t.not(otherOut.data.a, hashed.data.a, "keyed: another key, another hash");
  t.equal(
    JSON.parse(mask(body, [{ field: "data", strategy: "hash" }])).stringData.s,
    "José Müller",
    "no rule, no mask",
  );
});

t.test("every masked data value is valid base64, the redact marker decodes to the marker", async (t) => {
  t.equal(REDACTED_BASE64, "Kioq");
  t.equal(Buffer.from(REDACTED_BASE64, "base64").toString(), "***");
  const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
  const data: Record<string, string> = {};
  for (let n = 0; n < 40; n++)
    data[`k${n}`] = Buffer.from(Array.from({ length: n }, (_, i) => (i * 37) % 256)).toString("base64");
  data.text = b64("päßwörd-über-lang");
  for (const strategy of ["redact", "partial", "hash"] as const) {
    const out = JSON.parse(mask(JSON.stringify({ kind: "Secret", data }), [{ field: "data", strategy }]));
    const bad = Object.values(out.data as Record<string, string>).filter((v) => !BASE64.test(v));
    t.same(bad, [], `${strategy}: all valid`);
  }
});

t.test("values that are not strings, and maps that are not flat, are masked too", async (t) => {
  const body =
    '{"kind":"Secret","data":{"a":12345,"b":{"nested":"deep-secret"},"c":null,"d":["x"]},"stringData":"whole"}';
  const out = JSON.parse(mask(body));
  t.same(out.data, { a: REDACTED_BASE64, b: REDACTED_BASE64, c: null, d: REDACTED_BASE64 });
  t.equal(out.stringData, "***", "a field that is not a map is masked whole");
  t.same(JSON.parse(mask('{"kind":"Secret","data":{ }}')).data, {});
  const spaced = '{ "kind" : "Secret" , "data" : { "a" : "eHl6" , "b\\"q" : "eHl6" } }';
  t.equal(
    mask(spaced),
    spaced.replaceAll('"eHl6"', '"Kioq"'),
    "whitespace and escaped keys keep their layout",
  );
});

t.test("a container's own masked field, should one come after its items, is masked", async (t) => {
  const body = `{"items":[],"data":{"a":"${b64("odd")}"},"kind":"Weird"}`;
  t.equal(JSON.parse(mask(body)).data.a, REDACTED_BASE64, "kind unknown when data came: masked to be safe");
  const list = `{"kind":"List","items":[],"data":{"a":"${b64("odd")}"}}`;
  t.equal(mask(list), list, "a List says it is not a Secret");
});

t.test("unicode and escapes in keys and values", async (t) => {
  const body =
    '{"kind":"Secret","metadata":{"name":"\\u00e9t\\u00e9","labels":{"日本":"語\\"\\\\"}},' +
    `"data":{"ключ":"${b64("значение")}","a\\u0000b":"${b64("x")}","\\ud83d\\ude00":"${b64("😀")}"},` +
    '"type":"k8s.io/\\/x"}';
  const out = mask(body);
  const o = JSON.parse(out);
  t.same(Object.keys(o.data), ["ключ", "a\u0000b", "😀"]);
  t.same(Object.values(o.data), [REDACTED_BASE64, REDACTED_BASE64, REDACTED_BASE64]);
  t.equal(o.metadata.name, "été");
  t.ok(
    out.startsWith('{"kind":"Secret","metadata":{"name":"\\u00e9t\\u00e9","labels":{"日本":"語\\"\\\\"}},'),
  );
  t.ok(out.endsWith('"type":"k8s.io/\\/x"}'), "the rest keeps its escapes byte for byte");
  const partial = JSON.parse(
    mask(`{"kind":"Secret","stringData":{"k":"sécrét\\n\\u00fcber"}}`, [
      { field: "stringData", strategy: "partial" },
    ]),
  );
  t.equal(partial.stringData.k, "*******über", "escaped text is decoded before masking");
});

t.test("malformed JSON fails closed: an error, nothing unmasked after the bad point", async (t) => {
  const good = JSON.stringify({
    kind: "SecretList",
    items: [secret("a", { k: "first-secret" }), secret("b", { k: "second-secret" })],
  });
  // Each break is in the second item, after the first went out masked.
  const inB = (from: string, to: string) => {
    const at = good.lastIndexOf(from);
    if (at < good.indexOf('"name":"b"')) throw new Error(`${from} is not in the second item`);
    return good.slice(0, at) + to + good.slice(at + from.length);
  };
  const value = `"${b64("second-secret")}"`;
  const cases: Array<[string, string]> = [
    ["a missing colon", inB(`"k":${value}`, `"k"${value}`)],
    ["a trailing comma", inB('"type":"Opaque"}]', '"type":"Opaque",}]')],
    ["a bad literal", inB('"type":"Opaque"}]', '"type":nul}]')],
    ["a bad escape", inB('"name":"b"', '"name":"b\\x"')],
    ["a bad \\u escape", inB('"name":"b"', '"name":"\\u12g4"')],
    ["a leading zero", inB('"resourceVersion":"42"}', '"resourceVersion":042}')],
    ["a number without digits", inB('"resourceVersion":"42"}', '"resourceVersion":-}')],
    ["a stray byte", inB(',"data"', ',x"data"')],
    ["a mismatched bracket", inB('"Opaque"}]', '"Opaque"]]')],
    ["cut short", good.slice(0, -40)],
    ["cut short inside a string", good.slice(0, good.indexOf(b64("second-secret")) + 3)],
    ["a second value glued on", `${good}}`],
  ];
  const whole = mask(good);
  for (const [name, body] of cases) {
    for (const cuts of [
      [],
      [Math.floor(body.length / 2)],
      Array.from({ length: 40 }, (_, i) => i * 40 + 3),
    ]) {
      const sorted = cuts.filter((c) => c > 0 && c < body.length);
      const r = run(body, REDACT, {}, sorted);
      t.ok(r.error instanceof KubeMaskError, `${name}: an error (${sorted.length} cuts)`);
      t.notOk(
        r.out.includes(b64("first-secret")) || r.out.includes(b64("second-secret")),
        `${name}: nothing leaked`,
      );
      t.ok(whole.startsWith(r.out), `${name}: what went out is what the valid body gives up to there`);
      if (name !== "a second value glued on")
        t.notOk(r.out.includes('"name":"b"'), `${name}: not the broken item`);
    }
  }
  const r = run(cases[0]?.[1] ?? "");
  t.match(r.error?.message, /malformed JSON in the Kubernetes response at byte \d+/);
  t.throws(() => r.masker.write(Buffer.from("{}")), KubeMaskError, "and it stays failed");
  t.ok(run("[".repeat(10001)).error, "nesting too deep");
});

t.test("the scanner accepts what JSON.parse accepts (mutated documents)", async (t) => {
  const base = [
    JSON.stringify(secret("a", { k: "v" })),
    '{"a":[1,2.5,-3e-2,0,true,false,null,"x\\"\\\\\\/\\b\\f\\n\\r\\t\\u00fc"],"b":{}}',
    JSON.stringify(EVENTS[3]),
  ];
  const alphabet = '{}[]:,"\\ 0123456789.-+eEtrufalsn';
  let seed = 11;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  let disagree = 0;
  for (let k = 0; k < 3000; k++) {
    let s = base[k % base.length] as string;
    for (let m = 1 + rand(2); m > 0; m--) {
      const p = rand(s.length + 1);
      const c = alphabet[rand(alphabet.length)] as string;
      s = rand(2) ? s.slice(0, p) + c + s.slice(p + 1) : s.slice(0, p) + c + s.slice(p);
    }
    let valid = true;
    try {
      JSON.parse(s);
    } catch {
      valid = false;
    }
    const ok = run(s).error === null;
    // The scanner reads a stream of values: "1 2" is two. JSON.parse takes one; that is the only difference.
    const several = !valid && ok && s.trim().length > 0;
    if (valid !== ok && !several) disagree++;
  }
  t.equal(disagree, 0);
});

t.test("a large list streams with memory bounded by an item", async (t) => {
  const item = (i: number) => JSON.stringify(secret(`s-${i}`, { a: `secret-${i}-${"x".repeat(1500)}` }));
  const itemSize = Buffer.byteLength(item(0));
  const count = 2000;
  const source = Readable.from(
    (function* () {
      yield Buffer.from(
        '{"kind":"SecretList","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[',
      );
      // Chunks of odd sizes, cutting items anywhere.
      let pending = "";
      for (let i = 0; i < count; i++) {
        pending += (i ? "," : "") + item(i);
        while (pending.length > 4099) {
          yield Buffer.from(pending.slice(0, 4099));
          pending = pending.slice(4099);
        }
      }
      yield Buffer.from(`${pending}]}`);
    })(),
    { objectMode: false },
  );
  const stream = createMaskStream(REDACT, { masker: values });
  let bytes = 0;
  let masked = 0;
  let leaked = 0;
  await pipeline(
    source,
    stream,
    new Writable({
      write(chunk: Buffer, _e, cb) {
        bytes += chunk.length;
        const s = chunk.toString("latin1");
        masked += s.split(REDACTED_BASE64).length - 1;
        if (s.includes(b64("secret-"))) leaked++;
        cb();
      },
    }),
  );
  t.equal(masked, count, "every item masked");
  t.equal(leaked, 0);
  t.ok(bytes > count * 100);
  t.ok(stream.maxBuffered <= 2 * itemSize, `held at most ${stream.maxBuffered} bytes (an item: ${itemSize})`);
  t.ok(stream.maxBuffered > 0);
});

t.test("the stream errors on malformed input and emits nothing after it", async (t) => {
  const body = `{"kind":"SecretList","items":[${JSON.stringify(secret("a", { k: "fine" }))},{"kind":"Secret","data":{"k":"${b64("leak")}"},]}`;
  const stream = createMaskStream(REDACT, { masker: values });
  const got: Buffer[] = [];
  await t.rejects(
    pipeline(
      Readable.from([Buffer.from(body.slice(0, 100)), Buffer.from(body.slice(100))]),
      stream,
      new Writable({
        write(chunk: Buffer, _e, cb) {
          got.push(chunk);
          cb();
        },
      }),
    ),
    KubeMaskError,
  );
  const out = Buffer.concat(got).toString();
  t.notOk(out.includes(b64("leak")));
  t.ok(body.startsWith(out.slice(0, 30)));
});

t.test("content types and encodings", async (t) => {
  for (const ct of [
    "application/json",
    "application/json; charset=utf-8",
    "Application/JSON;charset=UTF-8",
    "application/json;as=Table;v=v1;g=meta.k8s.io",
    "application/json;stream=watch",
    "application/merge-patch+json",
  ])
    t.ok(maskableContentType(ct), ct);
  for (const ct of [
    undefined,
    "",
    "application/vnd.kubernetes.protobuf",
    "application/vnd.kubernetes.protobuf;stream=watch",
    "application/yaml",
    "text/plain",
    "application/json; charset=latin1",
    "application/jsonx",
  ])
    t.notOk(maskableContentType(ct), String(ct));
  t.ok(maskableContentEncoding(undefined));
  t.ok(maskableContentEncoding("identity"));
  t.notOk(maskableContentEncoding("gzip"));
});
