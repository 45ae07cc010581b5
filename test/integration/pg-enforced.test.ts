// The decision log records what the client actually got. Real parts: PostgreSQL from the installed binaries,
// the development issuer, the example policies built with opa, psql and node-postgres as clients; the records
// are read back from the gateway's own audit spool.
import pg from "pg";
import t from "tap";
import { spoolRecords } from "../../src/audit/reader.js";
import { recordBody } from "../../src/audit/record.js";
import { startTestGateway, type TestGateway } from "../helpers/gateway.js";

let g: TestGateway;
t.before(async () => {
  g = await startTestGateway();
});
t.teardown(() => g?.stop());

type Body = Record<string, unknown> & {
  action?: string;
  reason_codes?: string[];
  reasons?: Array<{ code: string; message: string }>;
  result?: { action?: string };
  session_id?: string;
};

/** Every record of `kind` in the spool, in order. */
async function records(kind: string): Promise<Body[]> {
  const out: Body[] = [];
  for await (const r of spoolRecords(`${g.dir}/audit`)) if (r.kind === kind) out.push(recordBody(r) as Body);
  return out;
}

/** The decision records written while `fn` ran. */
async function decisionsDuring(fn: () => Promise<unknown>): Promise<Body[]> {
  const before = (await records("decision")).length;
  await fn();
  return (await records("decision")).slice(before);
}

t.test(
  "a mask the adapter cannot apply is recorded as the block the client got (pg.mask_unsafe)",
  async (t) => {
    const alice = await g.tokenFor("alice");
    let r: Awaited<ReturnType<TestGateway["psql"]>> | undefined;
    const recs = await decisionsDuring(async () => {
      r = await g.psql(alice, "SELECT upper(ssn) FROM users");
    });
    t.match(r?.stderr, /ERROR:\s+upper\(ssn\)|ERROR:.*output through an expression/);
    t.notMatch(r?.stdout, /123-45-6789/, "no value left");
    t.equal(recs.length, 1);
    t.equal(recs[0]?.result?.action, "mask", "the policy's verdict is kept in OPA's result");
    t.equal(recs[0]?.action, "block", "pamgate's action is what was enforced");
    t.same(recs[0]?.reason_codes, ["pg.mask_unsafe"]);
    t.match(
      recs[0]?.reasons?.[0]?.message,
      /cannot be masked; select the column itself/,
      "with the reason told",
    );
  },
);

t.test("COPY of masked columns in a format the masker cannot rewrite: pg.mask_unsupported", async (t) => {
  const alice = await g.tokenFor("alice");
  let r: Awaited<ReturnType<TestGateway["psql"]>> | undefined;
  const recs = await decisionsDuring(async () => {
    r = await g.psql(alice, "COPY users (name, ssn) TO STDOUT (FORMAT csv)");
  });
  t.match(r?.stderr, /masked columns can be copied out only as COPY table/);
  t.notMatch(r?.stdout, /123-45-6789/);
  t.equal(recs.length, 1);
  t.equal(recs[0]?.action, "block");
  t.same(recs[0]?.reason_codes, ["pg.mask_unsupported"]);

  const text = await decisionsDuring(async () => {
    r = await g.psql(alice, "COPY users (name, ssn) TO STDOUT");
  });
  t.equal(r?.code, 0, r?.stderr ?? "");
  t.match(r?.stdout, /\*{7}6789/, "text COPY of a table is masked");
  t.equal(text[0]?.action, "mask", "and recorded as mask");
});

t.test("a message whose second statement is blocked runs nothing, and every record says block", async (t) => {
  const alice = await g.tokenFor("alice");
  let r: Awaited<ReturnType<TestGateway["psql"]>> | undefined;
  const recs = await decisionsDuring(async () => {
    r = await g.psql(alice, "UPDATE orders SET status = 'batch-test' WHERE id = 40; DELETE FROM orders");
  });
  t.match(r?.stderr, /ERROR:\s+DELETE without a WHERE clause/, "the client is told about the culprit");
  const direct = await g.direct();
  t.teardown(() => direct.end());
  const row = await direct.query("SELECT status FROM orders WHERE id = 40");
  t.not(row.rows[0]?.status, "batch-test", "the first statement did not run");
  const n = await direct.query("SELECT count(*)::int AS n FROM orders");
  t.ok(n.rows[0].n > 0, "nor the second");

  t.equal(recs.length, 2, "one record per statement");
  t.equal(recs[0]?.result?.action, "allow", "the UPDATE alone was allowed by policy");
  t.equal(recs[0]?.action, "block", "but it was not run, and its record says so");
  t.same(recs[0]?.reason_codes, ["batch.blocked"]);
  t.match(recs[0]?.reasons?.[0]?.message, /command 2 of 2 in this message was blocked \(pg\.no_where\)/);
  t.equal(recs[1]?.action, "block");
  t.same(recs[1]?.reason_codes, ["pg.no_where"]);
  t.notOk(recs[1]?.reasons, "a block with the policy's own reasons has nothing to add to result");
});

t.test(
  "the same all-or-nothing rule holds in the extended protocol, and the session stays usable",
  async (t) => {
    const c = new pg.Client({ connectionString: g.url(await g.tokenFor("alice")) });
    c.on("error", () => {});
    await c.connect();
    t.teardown(() => c.end());
    const err = await c
      .query({ text: "SELECT upper(ssn) FROM users WHERE id = $1", values: [1] })
      .catch((e: pg.DatabaseError) => e);
    t.equal((err as pg.DatabaseError).code, "42501");
    t.match((err as Error).message, /cannot be masked/);
    const ok = await c.query({ text: "SELECT id FROM orders WHERE id = $1", values: [40] });
    t.equal(ok.rows[0]?.id, 40, "the next statement runs");
  },
);

t.test("sessions have durable start and end records", async (t) => {
  const alice = await g.tokenFor("alice");
  const c = new pg.Client({ connectionString: g.url(alice) });
  c.on("error", () => {});
  await c.connect();
  await c.query("SELECT 1");
  await c.end();
  // The end record is written when the proxy sees the connection close.
  let sessions: Body[] = [];
  for (let i = 0; i < 50; i++) {
    sessions = await records("session");
    const starts = sessions.filter((s) => s.event === "start");
    const last = starts.at(-1);
    if (last && sessions.some((s) => s.event === "end" && s.session_id === last.session_id)) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const start = sessions.filter((s) => s.event === "start").at(-1);
  t.match(start, { protocol: "postgres", resource: "orders-db", sub: "alice", tls: false });
  const end = sessions.find((s) => s.event === "end" && s.session_id === start?.session_id);
  t.match(end?.reason, /client terminated the session|client closed the connection/);
});
