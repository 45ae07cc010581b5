// The protocol-neutral pipeline fails closed: an audit trail that cannot take the record, an expired token,
// approvals that are not configured or denied — each becomes a block with a reason. (The approval and audit
// ports are small in-memory implementations here; the real ones are tested in their own suites and end to end
// in pg-proxy.test.ts.)
import t from "tap";
import { DecisionEngine, SessionInput } from "../../src/decision/engine.js";
import type { ApprovalPort, AuditPort, SessionContext } from "../../src/pipeline/pipeline.js";
import { CommandPipeline } from "../../src/pipeline/pipeline.js";
import { activeFrom, sampleInput, verdictPolicy } from "../helpers/bundles.js";

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
