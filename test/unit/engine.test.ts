// The decision engine against real wasm bundles compiled by the OPA CLI: verdicts pass through, and every way a
// policy or bundle can be wrong ends in `block` with a reason naming it, while the last good policy keeps answering.
import t from "tap";
import { readBundleArchive, writeBundleArchive } from "../../src/bundles/archive.js";
import { loadBundleArchive } from "../../src/bundles/bundle.js";
import { currentTime, currentTimestamp, nowFromRfc3339, policyTime } from "../../src/decision/contract.js";
import {
  type ActivePolicy,
  DecisionEngine,
  SessionInput,
  serializeInput,
} from "../../src/decision/engine.js";
import { activeFrom, buildTestBundle, sampleInput, verdictPolicy } from "../helpers/bundles.js";

const allow = `{"action": "allow", "reasons": [{"code": "test.ok", "message": "fine"}], "mask": [], "approval": null}`;

t.test("no bundle loaded: block with engine.no_bundle", async (t) => {
  const engine = new DecisionEngine();
  const d = engine.evaluate(sampleInput());
  t.equal(d.verdict.action, "block");
  t.equal(d.verdict.reasons[0]?.code, "engine.no_bundle");
  t.equal(d.revision, null);
  t.match(d.decision_id, /^[0-9a-f-]{36}$/);
});

t.test("a valid verdict passes through with revision, id and timing", async (t) => {
  const engine = new DecisionEngine();
  engine.activate(await activeFrom(verdictPolicy(allow, "rev-a")));
  const d = engine.evaluate(sampleInput());
  t.same(d.verdict, {
    action: "allow",
    reasons: [{ code: "test.ok", message: "fine" }],
    mask: [],
    approval: null,
  });
  t.equal(d.revision, "rev-a");
  t.ok(d.eval_ns > 0);
  t.not(engine.evaluate(sampleInput()).decision_id, d.decision_id, "every decision gets its own id");
});

t.test("the policy sees the input, including exact nanoseconds", async (t) => {
  const engine = new DecisionEngine();
  const rego = `package pamgate.main

exact := input.now.ns == 1795680001123456789

verdict := {"action": "allow", "reasons": [{"code": "test.echo", "message": sprintf("%s %v %s", [input.identity.sub, exact, input.now.rfc3339])}]}
`;
  engine.activate(await activeFrom(buildTestBundle({ "main.rego": rego })));
  const d = engine.evaluate(sampleInput());
  // Compared inside the wasm: sprintf is implemented in JavaScript by opa-wasm and would round the integer.
  t.equal(d.verdict.reasons[0]?.message, "alice true 2026-11-26T08:00:01.123456789Z");
  t.same(d.verdict.mask, [], "optional mask is normalized to []");
  t.equal(d.verdict.approval, null, "optional approval is normalized to null");
  t.match(d.input_json, /"now":\{"rfc3339":"2026-11-26T08:00:01.123456789Z","ns":1795680001123456789\}\}$/);
});

t.test("undefined verdict: block with engine.undefined", async (t) => {
  const engine = new DecisionEngine();
  const rego = `package pamgate.main\n\nverdict := ${allow} if input.protocol == "ssh"\n`;
  engine.activate(await activeFrom(buildTestBundle({ "main.rego": rego })));
  const d = engine.evaluate(sampleInput());
  t.equal(d.verdict.action, "block");
  t.equal(d.verdict.reasons[0]?.code, "engine.undefined");
  t.match(d.verdict.reasons[0]?.message, /give it a default/);
});

t.test("a policy that throws at runtime: block with engine.eval_error", async (t) => {
  const engine = new DecisionEngine();
  // Two complete-rule definitions that disagree: a conflict error at evaluation time.
  const rego = `package pamgate.main

verdict := ${allow} if input.protocol == "postgres"

verdict := {"action": "block", "reasons": [{"code": "test.no", "message": "no"}]} if input.resource.name == "orders-db"
`;
  engine.activate(await activeFrom(buildTestBundle({ "main.rego": rego })));
  const d = engine.evaluate(sampleInput());
  t.equal(d.verdict.action, "block");
  t.equal(d.verdict.reasons[0]?.code, "engine.eval_error");
  t.match(d.verdict.reasons[0]?.message, /policy evaluation failed/);
  // The instance is still usable after the abort.
  const ok = engine.evaluate(sampleInput({ resource: { name: "other", kind: "postgres", labels: {} } }));
  t.equal(ok.verdict.action, "allow");
});

t.test("verdicts that break the schema: block with engine.invalid_verdict naming the problem", async (t) => {
  const cases: Array<[string, string, RegExp]> = [
    [
      "unknown action",
      `{"action": "permit", "reasons": [{"code": "a.b", "message": "m"}]}`,
      /\/action .*allowed values.*allow/,
    ],
    ["no reasons", `{"action": "allow", "reasons": []}`, /\/reasons/],
    ["not an object", `"allow"`, /\(root\) must be object/],
    [
      "mask without fields",
      `{"action": "mask", "reasons": [{"code": "a.b", "message": "m"}], "mask": []}`,
      /\/mask/,
    ],
    [
      "approve without approval",
      `{"action": "approve", "reasons": [{"code": "a.b", "message": "m"}], "approval": null}`,
      /\/approval/,
    ],
    ["extra key", `{"action": "allow", "reasons": [{"code": "a.b", "message": "m"}], "note": 1}`, /"note"/],
    [
      "bad strategy",
      `{"action": "mask", "reasons": [{"code": "a.b", "message": "m"}], "mask": [{"field": "x", "strategy": "rot13"}]}`,
      /strategy/,
    ],
  ];
  for (const [name, verdict, message] of cases) {
    const engine = new DecisionEngine();
    engine.activate(await activeFrom(verdictPolicy(verdict)));
    const d = engine.evaluate(sampleInput());
    t.equal(d.verdict.action, "block", name);
    t.equal(d.verdict.reasons[0]?.code, "engine.invalid_verdict", name);
    t.match(d.verdict.reasons[0]?.message, message, name);
  }
});

t.test("input that cannot be serialized: block with engine.bad_input", async (t) => {
  const engine = new DecisionEngine();
  engine.activate(await activeFrom(verdictPolicy(allow)));
  const command: Record<string, unknown> = {};
  command.self = command;
  const d = engine.evaluate(sampleInput({ command }));
  t.equal(d.verdict.action, "block");
  t.equal(d.verdict.reasons[0]?.code, "engine.bad_input");
});

t.test("bad bundles are rejected with a reason naming the problem", async (t) => {
  const good = verdictPolicy(allow);
  const files = await readBundleArchive(good);
  const without = (name: string) => writeBundleArchive(new Map([...files].filter(([k]) => k !== name)));
  const withFile = (name: string, content: string) =>
    writeBundleArchive(new Map([...files, [name, Buffer.from(content)]]));

  await t.rejects(loadBundleArchive(Buffer.from("not a bundle"), "x"), /not a valid gzip archive/);
  await t.rejects(
    loadBundleArchive(good.subarray(0, good.length / 2), "x"),
    /not a valid gzip archive|corrupt/,
  );
  await t.rejects(
    loadBundleArchive(await without("/policy.wasm"), "x"),
    /no \/policy\.wasm.*opa build -t wasm/,
  );
  await t.rejects(
    loadBundleArchive(await withFile("/data.json", "{not json"), "x"),
    /\/data\.json is not valid JSON/,
  );
  await t.rejects(
    loadBundleArchive(await withFile("/data.json", "[1]"), "x"),
    /\/data\.json must hold a JSON object/,
  );
  await t.rejects(
    loadBundleArchive(await withFile("/.manifest", "{"), "x"),
    /\/\.manifest is not valid JSON/,
  );
  await t.rejects(
    loadBundleArchive(await withFile("/policy.wasm", "\0asm garbage"), "x"),
    /policy\.wasm cannot be loaded/,
  );

  const otherEntrypoint = buildTestBundle(
    { "main.rego": `package other\n\nallow := true\n` },
    { entrypoints: ["other/allow"] },
  );
  await t.rejects(
    loadBundleArchive(otherEntrypoint, "x"),
    /lacks entrypoint "pamgate\/main\/verdict".*has: other\/allow/,
  );
});

t.test("nested data.json files merge under their directory, conflicts are named", async (t) => {
  const rego = `package pamgate.main

verdict := {"action": "allow", "reasons": [{"code": "test.data", "message": sprintf("%v", [data.teams.db.owner])}]}
`;
  const bundle = buildTestBundle({ "main.rego": rego, "teams/db/data.json": `{"owner": "dba"}` });
  const engine = new DecisionEngine();
  engine.activate(await activeFrom(bundle));
  t.equal(engine.evaluate(sampleInput()).verdict.reasons[0]?.message, "dba");

  const files = await readBundleArchive(bundle);
  files.set("/teams/data.json", Buffer.from(`{"db": 1}`));
  await t.rejects(loadBundleArchive(await writeBundleArchive(files), "x"), /conflicts|redefines/);
});

t.test("activation is atomic and status reports revision and rejections", async (t) => {
  const engine = new DecisionEngine();
  engine.activate(await activeFrom(verdictPolicy(allow, "rev-1")));
  const before = engine.status();
  t.equal(before.revision, "rev-1");
  t.equal(before.activations, 1);
  engine.recordRejection("bundle from x rejected: broken");
  t.equal(engine.status().revision, "rev-1", "a rejection leaves the active policy");
  t.match(engine.status().last_error?.message, /broken/);
  t.equal(engine.evaluate(sampleInput()).verdict.action, "allow");
  engine.activate(
    await activeFrom(
      verdictPolicy(`{"action": "block", "reasons": [{"code": "t.b", "message": "b"}]}`, "rev-2"),
    ),
  );
  const d = engine.evaluate(sampleInput());
  t.equal(d.revision, "rev-2");
  t.equal(d.verdict.action, "block");
  t.equal(engine.status().last_error, null, "a successful activation clears the last error");
});

t.test("serializeInput writes nanoseconds beyond 2^53 exactly", async (t) => {
  const json = serializeInput(sampleInput());
  t.match(json, /"ns":1795680001123456789}}$/);
  t.equal(JSON.parse(json).protocol, "postgres");
});

/** Activates `active` with its evaluations counted; a session input for the sample identity. */
function countingEngine(engine: DecisionEngine, active: ActivePolicy) {
  const evaluations = { count: 0 };
  const evaluate = active.policy.evaluate.bind(active.policy);
  active.policy.evaluate = (input: string, entrypoint: string) => {
    evaluations.count++;
    return evaluate(input, entrypoint);
  };
  engine.activate(active);
  const { command: _, now: __, ...fixed } = sampleInput();
  return { evaluations, session: new SessionInput(fixed), fixed };
}

t.test(
  "a session's repeated command is evaluated once per second and policy, and reused exactly",
  async (t) => {
    const engine = new DecisionEngine();
    const active = await activeFrom(
      buildTestBundle({
        "main.rego": `package pamgate.main\n\nverdict := {"action": "allow", "reasons": [{"code": "t.at", "message": input.now.rfc3339}]}\n`,
      }),
    );
    const { evaluations, session, fixed } = countingEngine(engine, active);
    const command = Object.freeze({ statement: "select", tables: Object.freeze({ read: ["public.t"] }) });
    const second = policyTime(Date.parse("2026-11-26T08:00:01Z") * 1000 + 250_000);
    t.same(
      second,
      { rfc3339: "2026-11-26T08:00:01Z", ns: 1795680001000000000n },
      "live commands carry whole seconds",
    );
    t.equal(policyTime(Date.parse("2026-11-26T08:00:01Z") * 1000 + 999_999), second, "one object per second");

    const a = engine.evaluateCommand(session, command, { now: second, memoKey: command });
    const b = engine.evaluateCommand(session, command, { now: second, memoKey: command });
    t.equal(evaluations.count, 1, "the second decision reuses the first evaluation");
    t.equal(b.verdict, a.verdict, "the very same verdict");
    t.equal(b.input_json, a.input_json, "the input it decided on is identical");
    t.ok(a.memo && b.memo === a.memo, "both decisions share the memo the decision log keys on");
    t.not(b.decision_id, a.decision_id, "but each decision has its own id");
    t.ok(
      Object.isFrozen(a.verdict) && Object.isFrozen(a.verdict.reasons[0]),
      "a shared verdict cannot be changed",
    );

    engine.evaluateCommand(session, command, {
      now: policyTime(Date.parse("2026-11-26T08:00:02Z") * 1000),
      memoKey: command,
    });
    t.equal(evaluations.count, 2, "the next second is a new input");
    engine.evaluateCommand(session, command, { now: second });
    engine.evaluateCommand(session, command, { now: second });
    t.equal(evaluations.count, 4, "a command without a memo key is never reused");
    engine.evaluateCommand(new SessionInput(fixed), command, { now: second, memoKey: command });
    t.equal(evaluations.count, 5, "another session has its own memo");

    engine.activate(
      await activeFrom(
        verdictPolicy(`{"action": "block", "reasons": [{"code": "t.new", "message": "new"}]}`),
      ),
    );
    const c = engine.evaluateCommand(session, command, { now: second, memoKey: command });
    t.equal(c.verdict.reasons[0]?.code, "t.new", "a newly activated bundle is evaluated, not the memo");
  },
);

t.test("an engine failure is not reused: the next identical command is evaluated again", async (t) => {
  const engine = new DecisionEngine();
  const active = await activeFrom(
    buildTestBundle({
      "main.rego": `package pamgate.main\n\nverdict := ${allow} if input.protocol == "ssh"\n`,
    }),
  );
  const { evaluations, session } = countingEngine(engine, active);
  const command = Object.freeze({ statement: "select" });
  const now = policyTime();
  t.equal(
    engine.evaluateCommand(session, command, { now, memoKey: command }).verdict.reasons[0]?.code,
    "engine.undefined",
  );
  t.equal(
    engine.evaluateCommand(session, command, { now, memoKey: command }).verdict.reasons[0]?.code,
    "engine.undefined",
  );
  t.equal(evaluations.count, 2);
});

t.test("decision timestamps have microseconds and agree with the nanosecond clock form", async (t) => {
  for (let i = 0; i < 50; i++) {
    const now = currentTime();
    t.match(now.rfc3339, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3}|\.\d{6})?Z$/);
    t.equal(nowFromRfc3339(now.rfc3339).ns, now.ns, "rfc3339 and ns are the same instant");
    t.match(currentTimestamp(), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z$/);
  }
});
