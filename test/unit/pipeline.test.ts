// The protocol-neutral pipeline fails closed: an audit trail that cannot take the record, an expired token,
// approvals that are not configured or denied — each becomes a block with a reason. (The approval and audit
// ports are small in-memory implementations here; the real ones are tested in their own suites and end to end
// in pg-proxy.test.ts.)
import t from "tap";
import { DecisionEngine, SessionInput } from "../../src/decision/engine.js";
import type { ApprovalPort, AuditPort, SessionContext } from "../../src/pipeline/pipeline.js";
import { CommandPipeline } from "../../src/pipeline/pipeline.js";
import { activeFrom, buildTestBundle, sampleInput, verdictPolicy } from "../helpers/bundles.js";

const approveVerdict = `{"action": "approve", "reasons": [{"code": "t.ddl", "message": "needs a dba"}], "mask": [], "approval": {"groups": ["dba"], "min_approvals": 1, "ttl_s": 60}}`;
const allowVerdict = `{"action": "allow", "reasons": [{"code": "t.ok", "message": "fine"}], "mask": [], "approval": null}`;

async function engineWith(verdict: string) {
  const engine = new DecisionEngine();
  engine.activate(await activeFrom(verdictPolicy(verdict)));
  return engine;
}

function session(expiresInMs = 60_000): SessionContext {
  const base = sampleInput();
  return {
    id: "s-1",
    protocol: "postgres",
    resource: base.resource,
    identity: base.identity,
    expiresAt: new Date(Date.now() + expiresInMs),
    clientAddr: "127.0.0.1",
    input: new SessionInput(base),
  };
}

const req = { command: { statement: "select", category: "read" }, text: "SELECT 1", fingerprint: "f1" };

t.test("an audit trail that cannot record turns the command into a block", async (t) => {
  const audit: AuditPort = {
    recordDecision: async () => {
      throw new Error("audit spool full: 1024 bytes of 1024");
    },
  };
  const out = await new CommandPipeline(await engineWith(allowVerdict), { audit }).decide(session(), req);
  t.equal(out.action, "block");
  t.equal(out.reasons[0]?.code, "audit.unavailable");
  t.match(out.reasons[0]?.message, /audit spool full/);
});

t.test("records happen before the outcome is returned", async (t) => {
  const recorded: string[] = [];
  const audit: AuditPort = { recordDecision: async (_d, ctx) => void recorded.push(ctx.action) };
  const out = await new CommandPipeline(await engineWith(allowVerdict), { audit }).decide(session(), req);
  t.equal(out.action, "allow");
  t.same(recorded, ["allow"]);
});

t.test("an expired token is a fatal block", async (t) => {
  const out = await new CommandPipeline(await engineWith(allowVerdict)).decide(session(-1), req);
  t.equal(out.action, "block");
  t.equal(out.fatal, true);
  t.equal(out.reasons[0]?.code, "identity.token_expired");
});

t.test("approve without approvals configured is a block", async (t) => {
  const out = await new CommandPipeline(await engineWith(approveVerdict)).decide(session(), req);
  t.equal(out.action, "block");
  t.equal(out.reasons.at(-1)?.code, "approval.unavailable");
});

t.test("approve: grant, approved, denied, timeout, failure", async (t) => {
  const engine = await engineWith(approveVerdict);
  const make = (over: Partial<ApprovalPort>): ApprovalPort => ({
    findGrant: async () => null,
    create: async () => ({ id: "a-1" }),
    waitForOutcome: async () => "approved",
    ...over,
  });
  const recorded: string[] = [];
  const audit: AuditPort = { recordDecision: async (_d, ctx) => void recorded.push(ctx.action) };
  const granted = await new CommandPipeline(engine, {
    audit,
    approvals: make({ findGrant: async () => ({ approval_id: "a-0" }) }),
  }).decide(session(), req);
  t.same([granted.action, granted.approvalId], ["allow", "a-0"]);

  recorded.length = 0;
  let held = "";
  const approved = await new CommandPipeline(engine, { audit, approvals: make({}) }).decide(session(), req, {
    onHold: (id) => {
      held = id;
    },
  });
  t.same([approved.action, approved.approvalId, held], ["allow", "a-1", "a-1"]);
  t.same(recorded, ["approve", "allow"], "the request and the outcome are both on record");

  for (const outcome of ["denied", "expired", "timeout"] as const) {
    const out = await new CommandPipeline(engine, {
      approvals: make({ waitForOutcome: async () => outcome }),
      approvalTimeoutMs: 1000,
    }).decide(session(), req);
    t.equal(out.action, "block", outcome);
    t.equal(out.reasons[0]?.code, `approval.${outcome}`);
  }
  const broken = await new CommandPipeline(engine, {
    approvals: make({
      create: async () => {
        throw new Error("store unreachable");
      },
    }),
  }).decide(session(), req);
  t.equal(broken.action, "block");
  t.match(broken.reasons[0]?.message, /store unreachable/);
});

const maskVerdict = `{"action": "mask", "reasons": [{"code": "t.pii", "message": "pii"}], "mask": [{"field": "public.users.ssn", "strategy": "redact"}], "approval": null}`;

t.test("a mask is checked with the adapter before anything is recorded", async (t) => {
  const engine = await engineWith(maskVerdict);
  const recorded: Array<[string, string[]]> = [];
  const audit: AuditPort = {
    recordDecision: async (_d, ctx) => void recorded.push([ctx.action, ctx.reasons.map((r) => r.code)]),
  };
  const pipeline = new CommandPipeline(engine, { audit });

  const ok = await pipeline.decide(session(), { ...req, checkMask: () => null });
  t.equal(ok.action, "mask");
  t.same(ok.mask, [{ field: "public.users.ssn", strategy: "redact" }]);

  const unsafe = await pipeline.decide(session(), {
    ...req,
    checkMask: async (m) => ({ code: "t.unsafe", message: `cannot mask ${m[0]?.field}` }),
  });
  t.same([unsafe.action, unsafe.reasons[0]?.message], ["block", "cannot mask public.users.ssn"]);
  t.same(unsafe.mask, [], "a blocked outcome carries no masks");

  const noHook = await pipeline.decide(session(), req);
  t.same([noHook.action, noHook.reasons[0]?.code], ["block", "mask.unsupported"], "no hook: never an allow");

  const throws = await pipeline.decide(session(), {
    ...req,
    checkMask: async () => {
      throw new Error("catalog unreachable");
    },
  });
  t.same([throws.action, throws.reasons[0]?.code], ["block", "mask.unavailable"]);
  t.match(throws.reasons[0]?.message, /catalog unreachable/);

  t.same(
    recorded,
    [
      ["mask", ["t.pii"]],
      ["block", ["t.unsafe"]],
      ["block", ["mask.unsupported"]],
      ["block", ["mask.unavailable"]],
    ],
    "each record states what was enforced",
  );
});

t.test("a batch is all or nothing, and approvals are not asked for when something is blocked", async (t) => {
  const policy = buildTestBundle({
    "main.rego": `package pamgate.main

verdict := {"action": input.command.want, "reasons": [{"code": concat(".", ["t", input.command.want]), "message": input.command.want}], "mask": [], "approval": {"groups": ["dba"], "min_approvals": 1, "ttl_s": 60}}
`,
  });
  const engine = new DecisionEngine();
  engine.activate(await activeFrom(policy));
  let asked = 0;
  const approvals: ApprovalPort = {
    findGrant: async () => null,
    create: async () => {
      asked++;
      return { id: "a-1" };
    },
    waitForOutcome: async () => "approved",
  };
  const recorded: Array<[string, string[]]> = [];
  const audit: AuditPort = {
    recordDecision: async (_d, ctx) => void recorded.push([ctx.action, ctx.reasons.map((r) => r.code)]),
  };
  const pipeline = new CommandPipeline(engine, { audit, approvals });
  const cmd = (want: string) => ({ ...req, command: { want } });

  const blocked = await pipeline.decideBatch(session(), [cmd("allow"), cmd("approve"), cmd("block")]);
  t.equal(blocked.action, "block");
  t.same(
    blocked.reasons.map((r) => r.code),
    ["t.block"],
    "the client is told about the culprit",
  );
  t.same(
    blocked.outcomes.map((o) => o.action),
    ["block", "block", "block"],
  );
  t.equal(asked, 0, "no approver is bothered for a message that cannot run");
  t.same(recorded, [
    ["block", ["batch.blocked"]],
    ["block", ["batch.blocked"]],
    ["block", ["t.block"]],
  ]);

  recorded.length = 0;
  const allowed = await pipeline.decideBatch(session(), [cmd("allow"), cmd("approve")]);
  t.same(
    allowed.outcomes.map((o) => [o.action, o.approvalId]),
    [
      ["allow", null],
      ["allow", "a-1"],
    ],
  );
  t.equal(asked, 1);
  t.same(recorded, [
    ["approve", ["t.approve"]],
    ["allow", ["t.allow"]],
    ["allow", ["t.approve"]],
  ]);

  const audited = await new CommandPipeline(engine, {
    audit: {
      recordDecision: async (d) => {
        if (d.verdict.action === "allow") throw new Error("spool full");
        return undefined;
      },
    },
  }).decideBatch(session(), [cmd("allow"), cmd("allow")]);
  t.same(
    audited.outcomes.map((o) => [o.action, o.reasons[0]?.code]),
    [
      ["block", "audit.unavailable"],
      ["block", "audit.unavailable"],
    ],
    "a record the trail refuses blocks the whole batch",
  );
});

t.test(
  "durability write: the batch's durable promise goes to an adapter that holds results, else it is awaited",
  async (t) => {
    let settle: (ok: boolean) => void = () => {};
    const durable = new Promise<void>((resolve, reject) => {
      settle = (ok) => (ok ? resolve() : reject(new Error("audit spool write failed: EIO")));
    });
    durable.catch(() => {});
    const audit: AuditPort = { recordDecision: async () => ({ durable }) };
    const pipeline = new CommandPipeline(await engineWith(allowVerdict), { audit });

    const held = await pipeline.decideBatch(session(), [req, { ...req, text: "SELECT 2" }], {
      holdsResults: true,
    });
    t.equal(held.action, "allow", "returned before the records are on disk");
    t.equal(held.durable, durable, "one promise for the batch (both records in one group commit)");

    let returned = false;
    const waiting = pipeline.decide(session(), req).then((o) => {
      returned = true;
      return o;
    });
    await new Promise((r) => setTimeout(r, 20));
    t.notOk(returned, "an adapter that cannot hold results waits for the disk");
    settle(false);
    const out = await waiting;
    t.equal(out.action, "block", "and a record the disk refused blocks the command");
    t.equal(out.reasons[0]?.code, "audit.unavailable");
    t.match(out.reasons[0]?.message, /EIO/);
  },
);
