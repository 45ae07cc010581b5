// `pamgate approvals …` against a real API listening on 127.0.0.1 (dev issuer tokens, PGlite store): the
// readable output of list/get/approve/deny, the API's refusals as one line, and the usage errors. The last
// test runs the real `bin/pamgate.js` as a child process.
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import t from "tap";
import { buildApi } from "../../src/api/index.js";
import { ObservableApprovalService } from "../../src/api/observable.js";
import type { NewApprovalRequest } from "../../src/approvals/types.js";
import { approvalsCommand, type CliIo } from "../../src/cli/approvals.js";
import { CliError } from "../../src/cli/args.js";
import { DecisionEngine } from "../../src/decision/engine.js";
import { TokenVerifier } from "../../src/identity/verifier.js";
import { openStore } from "../../src/store/open.js";
import { packagePath } from "../../src/util/tools.js";
import { startTestIdp } from "../helpers/idp.js";
import { freePort } from "../helpers/postgres.js";

const idp = await startTestIdp(t, {
  users: { alice: { email: "alice@example.com", groups: ["engineering"] }, carol: { groups: ["dba"] } },
});
const verifier = new TokenVerifier([idp.issuerConfig()]);
const store = await openStore({ kind: "pglite" });
t.teardown(() => store.close());
const approvals = new ObservableApprovalService({ store, sweepIntervalMs: 0 });
t.teardown(() => approvals.close());
const api = buildApi({ verifier, approvals, engine: new DecisionEngine(), adminGroups: [] });
await api.listen({ host: "127.0.0.1", port: 0 });
t.teardown(() => api.close());
const base = `http://127.0.0.1:${(api.server.address() as AddressInfo).port}`;

const aliceToken = await idp.tokenFor("alice");
const carolToken = await idp.tokenFor("carol");
const alice = (await verifier.verify(aliceToken)).identity;

const newRequest = (text: string): NewApprovalRequest => ({
  requester: alice,
  resource: "orders-db",
  protocol: "postgres",
  command: { text, fingerprint: `fp-${crypto.randomUUID()}` },
  reasons: [{ code: "pg.ddl_needs_approval", message: "ALTER TABLE is a schema change (DDL)" }],
  rule: { groups: ["dba"], min_approvals: 1, ttl_s: 600 },
  decisionId: crypto.randomUUID(),
  sessionId: "s-1",
});

/** Runs the command with PAMGATE_API/PAMGATE_TOKEN set; resolves with its exit code and output. */
async function run(argv: string[], env: Record<string, string | undefined> = {}) {
  let output = "";
  const io: CliIo = {
    env: { PAMGATE_API: base, PAMGATE_TOKEN: carolToken, ...env },
    out: (text) => {
      output += text;
    },
    fetch: (...args) => fetch(...args),
    now: () => new Date(),
  };
  const code = await approvalsCommand(argv, io);
  return { code, output };
}

t.test("list, get, approve, deny: readable output", async (t) => {
  const r1 = await approvals.create(newRequest("ALTER TABLE orders ADD COLUMN note text"));
  const r2 = await approvals.create(newRequest("DROP INDEX orders_created_idx"));

  const list = await run(["list"]);
  t.equal(list.code, 0);
  const lines = list.output.trimEnd().split("\n");
  t.match(lines[0], /^ID\s+STATUS\s+REQUESTER\s+RESOURCE\s+CREATED\s+COMMAND$/);
  t.match(
    list.output,
    new RegExp(`${r1.id}\\s+pending\\s+alice\\s+orders-db\\s+\\d+s ago\\s+ALTER TABLE orders`),
  );
  t.match(list.output, new RegExp(`${r2.id}\\s+pending`));

  const get = await run(["get", r1.id]);
  t.equal(get.code, 0);
  t.match(get.output, new RegExp(`^approval ${r1.id}: PENDING`));
  t.match(get.output, /requester {2}alice <alice@example\.com>/);
  t.match(get.output, /command {4}ALTER TABLE orders ADD COLUMN note text/);
  t.match(get.output, /\[pg\.ddl_needs_approval\] ALTER TABLE is a schema change/);
  t.match(get.output, /approvers {2}dba: 0 of 1 approval; grant for 600 s/);
  t.match(get.output, new RegExp(`pamgate approvals approve ${r1.id}`));

  const approve = await run(["approve", r1.id, "--comment", "looks fine"]);
  t.equal(approve.code, 0);
  t.match(
    approve.output,
    new RegExp(`^approved ${r1.id}: alice may run the command on orders-db until \\d{4}-`),
  );
  const after = await run(["get", r1.id]);
  t.match(after.output, /APPROVED/);
  t.match(after.output, /approved by carol at .*: looks fine/);

  const deny = await run(["deny", r2.id, "--comment", "not during the freeze", "--api", base]);
  t.match(deny.output, new RegExp(`^denied approval request ${r2.id}`));
  t.equal((await approvals.get(r2.id)).status, "denied");

  const json = await run(["list", "--status", "all", "--json"]);
  const parsed = JSON.parse(json.output) as { id: string }[];
  t.ok(
    parsed.some((r) => r.id === r1.id) && parsed.some((r) => r.id === r2.id),
    "--json prints the API's objects",
  );
  t.equal((await run(["list"])).output.includes(r1.id), false, "decided requests leave the pending list");
});

t.test("the API's refusals: one line with the code", async (t) => {
  const r = await approvals.create(newRequest("ALTER TABLE orders DROP COLUMN note"));
  await t.rejects(run(["approve", r.id], { PAMGATE_TOKEN: aliceToken }), {
    name: "ApiRefusal",
    code: "self_approval",
    message: /^self_approval: alice took part in the request/,
  });
  await t.rejects(run(["get", crypto.randomUUID()]), { code: "not_found", status: 404 });
  await t.rejects(run(["list"], { PAMGATE_TOKEN: "garbage" }), { code: "malformed", status: 401 });
  await t.rejects(run(["list"], { PAMGATE_TOKEN: await idp.bad.expired() }), {
    code: "expired",
    message: /^expired: token expired at/,
  });
  const closed = await freePort(); // nothing listens there
  await t.rejects(run(["list"], { PAMGATE_API: `http://127.0.0.1:${closed}` }), {
    message: new RegExp(
      `cannot reach the pamgate API at http://127\\.0\\.0\\.1:${closed} \\(ECONNREFUSED\\); set PAMGATE_API`,
    ),
  });
  t.equal((await approvals.get(r.id)).status, "pending", "nothing changed");
});

t.test("usage errors", async (t) => {
  await t.rejects(run(["list"], { PAMGATE_TOKEN: undefined }), CliError);
  await t.rejects(run(["list"], { PAMGATE_TOKEN: undefined }), {
    message: /no access token: set PAMGATE_TOKEN/,
  });
  await t.rejects(run(["approve"]), { message: /the approval id is required/ });
  await t.rejects(run(["list", "--status", "maybe"]), { message: /--status must be one of/ });
  await t.rejects(run(["frobnicate"]), { message: /unknown subcommand "frobnicate"/ });
  await t.rejects(run(["approve", "x", "--vote", "yes"]), { message: /Unknown option '--vote'/ });
  const dir = mkdtempSync(join(tmpdir(), "pamgate-cli-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, "token"), `${carolToken}\n`);
  t.equal((await run(["list", "--token-file", join(dir, "token")], { PAMGATE_TOKEN: undefined })).code, 0);
  t.equal((await run(["--help"])).code, 0);
});

t.test("bin/pamgate.js approvals, as a user runs it", async (t) => {
  const r = await approvals.create(newRequest("ALTER TABLE orders ADD COLUMN flag boolean"));
  const exec = promisify(execFile);
  const env = { ...process.env, PAMGATE_API: base, PAMGATE_TOKEN: carolToken };
  const bin = packagePath("bin", "pamgate.js");
  const approved = await exec(process.execPath, [bin, "approvals", "approve", r.id], { env });
  t.match(approved.stdout, new RegExp(`^approved ${r.id}`));
  const again = await exec(process.execPath, [bin, "approvals", "approve", r.id], { env }).catch((e) => e);
  t.equal(again.code, 1, "a refusal exits 1");
  t.match(again.stderr, /^pamgate: not_pending: approval request .* is already approved\n$/);
});
