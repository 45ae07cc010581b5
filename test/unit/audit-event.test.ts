// Decision log events: OPA's format plus pamgate's fields, masked by the deciding bundle's system.log.mask rule
// with OPA's semantics, exact nanoseconds kept, and written with the whole input erased when masking fails.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import t from "tap";
import { buildDecisionEvent, MASK_ENTRYPOINT } from "../../src/audit/event.js";
import { parseExact, stringifyExact } from "../../src/audit/json.js";
import { applyMask, type MaskTarget, parseMaskRules, pathEscape } from "../../src/audit/mask.js";
import { buildBundle } from "../../src/bundles/build.js";
import { loadBundleArchive } from "../../src/bundles/bundle.js";
import type { Decision, WasmPolicyLike } from "../../src/decision/contract.js";
import { DecisionEngine, serializeInput } from "../../src/decision/engine.js";
import { alice, ciBotForAlice, samples } from "../../src/demo/samples.js";
import { packagePath } from "../../src/util/tools.js";
import { activeFrom, sampleInput, verdictPolicy } from "../helpers/bundles.js";

const options = { labels: { id: "instance-1", version: "0.1.0", env: "test" }, bundleName: "pamgate" };

/** A policy whose mask rule returns `mask` (or throws it when it is an Error), recording what it was asked. */
function fakePolicy(mask: unknown): WasmPolicyLike & { seen: string[] } {
  const seen: string[] = [];
  return {
    seen,
    has: (e) => e === MASK_ENTRYPOINT,
    evaluate(inputJson, entrypoint) {
      if (entrypoint !== MASK_ENTRYPOINT) throw new Error("unexpected entrypoint");
      seen.push(inputJson);
      if (mask instanceof Error) throw mask;
      return mask;
    },
  };
}

function decision(policy: WasmPolicyLike | null, input = sampleInput()): Decision {
  return {
    decision_id: "5f0c6a1e-8a6e-4c57-9a55-6f1e2b0c9d11",
    verdict: {
      action: "allow",
      reasons: [{ code: "pg.read", message: "reads are fine" }],
      mask: [],
      approval: null,
    },
    revision: "rev-123",
    eval_ns: 41234,
    input_json: serializeInput(input),
    policy,
  };
}

t.test("an event has OPA's decision log fields and pamgate's own", async (t) => {
  const ev = buildDecisionEvent(decision(fakePolicy([])), options, { requested_by: "10.0.0.7:5555" });
  const e = JSON.parse(ev.json);
  t.equal(e.decision_id, "5f0c6a1e-8a6e-4c57-9a55-6f1e2b0c9d11");
  t.equal(e.path, "pamgate/main/verdict");
  t.same(e.bundles, { pamgate: { revision: "rev-123" } });
  t.same(e.labels, options.labels);
  t.equal(e.timestamp, "2026-11-26T08:00:01.123456789Z", "the decision time, with nanoseconds");
  t.same(e.metrics, { timer_rego_query_eval_ns: 41234 });
  t.same(e.result, decision(null).verdict);
  t.equal(e.requested_by, "10.0.0.7:5555");
  t.notOk("erased" in e, "nothing erased: no erased field (as OPA omits it)");
  t.notOk("masked" in e);
  t.equal(e.session_id, "s-1");
  t.equal(e.protocol, "postgres");
  t.same(e.resource, { name: "orders-db", kind: "postgres", labels: { env: "production" } });
  t.same(e.identity, {
    sub: "alice",
    iss: "https://idp.example.com",
    client_id: null,
    actors: [{ sub: "alice" }],
  });
  t.equal(e.action, "allow");
  t.same(e.reason_codes, ["pg.read"]);
  t.equal(e.approval_id, null);
  t.equal(ev.session_id, "s-1");
  t.ok(
    ev.json.includes(`"input":${decision(null).input_json}`),
    "without masks the input is the exact text the policy saw",
  );
});

t.test(
  "what the gateway enforced can differ from the verdict: pamgate's action, OPA's result unchanged",
  async (t) => {
    const d = decision(fakePolicy([]));
    d.verdict = {
      action: "approve",
      reasons: [{ code: "pg.ddl_needs_approval", message: "needs dba" }],
      mask: [],
      approval: { groups: ["dba"], min_approvals: 1, ttl_s: 60 },
    };
    const e = JSON.parse(
      buildDecisionEvent(d, options, {
        action: "block",
        reasons: [{ code: "approval.timeout", message: "no approval within 300 s" }],
        approval_id: "apr-1",
      }).json,
    );
    t.equal(e.result.action, "approve", "the policy's verdict, as OPA would log it");
    t.equal(e.action, "block");
    t.same(e.reason_codes, ["approval.timeout"]);
    t.equal(e.approval_id, "apr-1");
  },
);

t.test("the mask rule sees the event as input, the way OPA evaluates it", async (t) => {
  const policy = fakePolicy([]);
  buildDecisionEvent(decision(policy), options, { requested_by: "x" });
  const seen = JSON.parse(policy.seen[0] as string);
  t.equal(seen.input.identity.email, "alice@example.com");
  t.equal(seen.result.action, "allow");
  t.equal(seen.path, "pamgate/main/verdict");
  t.equal(seen.decision_id, "5f0c6a1e-8a6e-4c57-9a55-6f1e2b0c9d11");
});

t.test("remove and upsert, with OPA's reporting and nanoseconds intact", async (t) => {
  const policy = fakePolicy([
    "/input/identity/email",
    "/input/does/not/exist",
    { op: "upsert", path: "/input/command/statement", value: "[redacted]" },
    "/result/reasons/0/message",
  ]);
  const e = JSON.parse(buildDecisionEvent(decision(policy), options).json);
  t.notOk("email" in e.input.identity);
  t.equal(e.input.command.statement, "[redacted]");
  t.same(e.erased, ["/input/identity/email", "/result/reasons/0/message"], "a missing path is not reported");
  t.same(e.masked, ["/input/command/statement"]);
  t.same(e.result.reasons, [{ code: "pg.read" }]);
  const ev = buildDecisionEvent(decision(policy), options);
  t.match(ev.json, /"now":\{"rfc3339":"2026-11-26T08:00:01.123456789Z","ns":1795680001123456789\}/);
});

t.test("pamgate's fields follow the mask too", async (t) => {
  const policy = fakePolicy(["/input/identity/actors"]);
  const e = JSON.parse(buildDecisionEvent(decision(policy), options).json);
  t.same(e.identity, { sub: "alice", iss: "https://idp.example.com", client_id: null });
});

t.test("masking fails: the event is written with the whole input erased", async (t) => {
  for (const [name, mask] of [
    ["the rule throws", new Error("eval_conflict_error: complete rules must not produce multiple outputs")],
    ["a path outside /input and /result", ["/labels/id"]],
    ["an unknown op", [{ op: "replace", path: "/input/x" }]],
    ["not a set", { "/input/identity/email": true }],
    ["a number in the set", [42]],
  ] as const) {
    const ev = buildDecisionEvent(decision(fakePolicy(mask)), options);
    const e = JSON.parse(ev.json);
    t.notOk("input" in e, `${name}: no input`);
    t.same(e.erased, ["/input"], name);
    t.match(e.mask_error, /system\.log\.mask failed/, name);
    t.equal(e.action, "allow", `${name}: the verdict is still there`);
    t.equal(e.identity.sub, "alice", `${name}: who is still attributed`);
    t.notOk(ev.json.includes("alice@example.com"), `${name}: no email anywhere`);
    t.notOk(ev.json.includes("public.orders"), `${name}: no command anywhere`);
  }
  const none = JSON.parse(buildDecisionEvent(decision(null), options).json);
  t.same(none.erased, ["/input"], "no policy (no bundle loaded): nothing can mask, so the input is erased");
});

t.test("a bundle without a mask rule logs the input as is (OPA's behaviour)", async (t) => {
  const policy: WasmPolicyLike = { has: () => false, evaluate: () => t.fail("not called") };
  const e = JSON.parse(buildDecisionEvent(decision(policy), options).json);
  t.equal(e.input.identity.email, "alice@example.com");
});

t.test("OPA mask semantics in detail", async (t) => {
  const run = (rules: unknown, input: unknown, result: unknown = { action: "allow" }) => {
    const target: MaskTarget = {
      input: structuredClone(input) as never,
      result: result as never,
      erased: [],
      masked: [],
    };
    applyMask(parseMaskRules(rules), target);
    return target;
  };
  const arr = run(["/input/list/1", "/input/list/7", "/input/list/x"], { list: [1, 2, 3] });
  t.same(arr.input, { list: [1, 3] }, "array element by index");
  t.same(arr.erased, ["/input/list/1"], "out of range and non-numeric indexes do nothing");

  const nested = run(["/input/a/0/b"], { a: [{ b: 1, c: 2 }] });
  t.same(nested.input, { a: [{ c: 2 }] });

  const up = run([{ op: "upsert", path: "/input/x/y/z", value: 1 }], { x: 5 });
  t.same(up.input, { x: 5 }, "upsert through a scalar does nothing");
  t.same(up.masked, []);
  const mk = run([{ op: "upsert", path: "/input/x/y/z", value: { v: true } }], {});
  t.same(mk.input, { x: { y: { z: { v: true } } } }, "upsert creates intermediate objects");

  const whole = run(["/input"], { a: 1 });
  t.equal(whole.input, undefined);
  t.same(whole.erased, ["/input"]);
  const wholeUp = run([{ op: "upsert", path: "/input", value: "gone" }], { a: 1 });
  t.equal(wholeUp.input, "gone");

  const order = run(
    [
      { op: "upsert", path: "/input/b", value: 2 },
      "/input/c",
      { op: "remove", path: "/input/a" },
      "/input/b",
    ],
    { a: 1, b: 1, c: 1 },
  );
  t.same(
    order.erased,
    ["/input/b", "/input/c", "/input/a"],
    "strings (sorted) first, then objects by op, path",
  );
  t.same(order.input, { b: 2 });

  t.equal(pathEscape("a b"), "a%20b", "segments are reported path-escaped like Go's url.PathEscape");
  t.equal(pathEscape("x-y_z.~$&+:=@"), "x-y_z.~$&+:=@");
  t.throws(() => parseMaskRules(["input/x"]), /slash-prefixed/);
  t.throws(() => parseMaskRules([""]), /non-empty/);
  t.throws(() => parseMaskRules(["/nd_builtin_cache"]), /prefix not allowed/);
  t.throws(() => parseMaskRules([{ op: "", path: "/input/x" }]), /invalid "op"/);
  t.same(parseMaskRules(undefined), [], "an undefined rule masks nothing");
});

t.test("exact JSON: integers beyond 2^53 survive parse and serialize", async (t) => {
  const text =
    '{"a":[12345678901234567890,1.5,-9007199254740993],"s":"1234567890123456789","n":{"ns":1795680001123456789}}';
  const v = parseExact(text);
  t.equal(stringifyExact(v), text);
  t.equal(
    stringifyExact(parseExact('{"x":1,"now":{"rfc3339":"r","ns":1795680001123456789}}')),
    '{"x":1,"now":{"rfc3339":"r","ns":1795680001123456789}}',
  );
  t.throws(() => parseExact('{"a":12345678901234567890'), SyntaxError);
});

t.test("the example bundle's mask rule, through the real engine", async (t) => {
  const dir = t.testdir();
  const out = join(dir, "bundle.tar.gz");
  await buildBundle({ policies: packagePath("policies"), output: out, revision: "example-rev" });
  const engine = new DecisionEngine();
  engine.activate(await loadBundleArchive(await readFile(out), out));

  const pg = samples().find((s) => s.input.protocol === "postgres") as ReturnType<typeof samples>[number];
  const d = engine.evaluate(pg.input);
  const ssh = engine.evaluate({
    ...sampleInput(),
    protocol: "ssh",
    resource: { name: "web-1", kind: "ssh", labels: { env: "staging" } },
    identity: ciBotForAlice,
    command: {
      request: "exec",
      line: "PGPASSWORD=hunter2 psql -h db",
      commands: [{ program: "psql", args: ["-h", "db"], sudo: false }],
      sudo: false,
    },
  });
  // A newer bundle (without a mask rule) becomes active before the event is written: the deciding one masks.
  engine.activate(
    await activeFrom(
      verdictPolicy(`{"action": "allow", "reasons": [{"code": "x", "message": "x"}]}`, "newer-rev"),
    ),
  );
  const e = JSON.parse(buildDecisionEvent(d, options).json);
  t.same(e.erased, ["/input/identity/email"]);
  t.notOk("email" in e.input.identity);
  t.equal(e.bundles.pamgate.revision, "example-rev");
  t.same(e.identity.actors, alice.actors);

  const s = buildDecisionEvent(ssh, options);
  const se = JSON.parse(s.json);
  t.equal(se.input.command.line, "[redacted by pamgate: secret]");
  t.notOk("commands" in se.input.command);
  t.same(se.masked, ["/input/command/line"]);
  t.same(se.erased, ["/input/command/commands", "/input/identity/email"], "in OPA's (sorted) order");
  t.notOk(s.json.includes("hunter2"), "the secret is nowhere in the event");
  t.same(
    se.identity.actors.map((a: { sub: string }) => a.sub),
    ["alice", "ci-bot"],
    "the actor chain, original requester first",
  );
});

t.test("decisions answered from one evaluation are masked once and keep their own id and time", async (t) => {
  const policy = fakePolicy(["/input/identity/email"]);
  const memo = {};
  const first = { ...decision(policy), memo, timestamp: "2026-11-26T08:00:01.000100Z" };
  const second = {
    ...decision(policy),
    memo,
    decision_id: "0b7d2f9e-3c1a-4e8b-9f60-1d2c3b4a5e6f",
    timestamp: "2026-11-26T08:00:01.000900Z",
    eval_ns: 0,
  };
  const a = JSON.parse(buildDecisionEvent(first, options, { action: "allow" }).json);
  const b = JSON.parse(
    buildDecisionEvent(second, options, { action: "block", reasons: [{ code: "x.y" }] }).json,
  );
  t.equal(policy.seen.length, 1, "the mask rule ran for the first event only");
  t.same(b.input, a.input, "the same masked input");
  t.same(b.erased, ["/input/identity/email"]);
  t.equal(b.input.identity.email, undefined);
  t.equal(b.decision_id, "0b7d2f9e-3c1a-4e8b-9f60-1d2c3b4a5e6f");
  t.equal(b.timestamp, "2026-11-26T08:00:01.000900Z", "the event's own time, not the input's");
  t.same([a.action, b.action], ["allow", "block"], "what was enforced is per event");
  t.same(b.reason_codes, ["x.y"]);

  const other = buildDecisionEvent(
    { ...decision(policy), memo },
    { ...options, labels: { ...options.labels, id: "instance-2" } },
  );
  t.equal(policy.seen.length, 2, "other labels (another audit trail) are masked afresh");
  t.equal(JSON.parse(other.json).labels.id, "instance-2");
});
