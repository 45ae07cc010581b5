// Durability level `write` end to end with real PostgreSQL and node-postgres: a statement goes to the server once
// its decision record is in the OS, and its result reaches the client only once the record is on disk. The
// spool's fdatasync is held or failed through the gateway's audit io hook (the real file operations otherwise):
// a real disk cannot be made to stall or fail on cue here.
import pg from "pg";
import t from "tap";
import { nodeIo, type SpoolIo } from "../../src/audit/io.js";
import { spoolRecords } from "../../src/audit/reader.js";
import { startTestGateway, type TestGateway } from "../helpers/gateway.js";

const disk = {
  /** While set, every fdatasync waits for it. */
  gate: null as Promise<void> | null,
  /** When set, every fdatasync fails with this errno code. */
  fail: null as string | null,
};
const io: SpoolIo = {
  ...nodeIo,
  async fdatasync(fd) {
    if (disk.gate) await disk.gate;
    if (disk.fail) throw Object.assign(new Error(`${disk.fail}: simulated`), { code: disk.fail });
    return nodeIo.fdatasync(fd);
  },
};

let g: TestGateway;
t.before(async () => {
  g = await startTestGateway(
    (_db, base) => ({ audit: { ...(base.audit as { dir: string }), durability: "write" } }),
    { auditIo: io },
  );
});
t.teardown(() => g?.stop());

async function client(token: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: g.url(token, "staging-db") });
  c.on("error", () => {});
  await c.connect();
  return c;
}

function holdDisk(): () => void {
  let open: () => void = () => {};
  disk.gate = new Promise<void>((r) => {
    open = r;
  });
  return () => {
    disk.gate = null;
    open();
  };
}

async function decisionRecords(): Promise<Array<Record<string, unknown>>> {
  const out: Array<Record<string, unknown>> = [];
  for await (const r of spoolRecords(g.gw.audit?.spool.dir as string))
    if (r.kind === "decision") out.push(JSON.parse(r.body) as Record<string, unknown>);
  return out;
}

t.test("the statement runs once its record is written; its result waits for the fdatasync", async (t) => {
  const c = await client(await g.tokenFor("alice"));
  t.teardown(() => c.end());
  const direct = await g.direct();
  t.teardown(() => direct.end());
  const release = holdDisk();
  let answered = false;
  const update = c.query("UPDATE orders SET status = 'held' WHERE id = 41").then((r) => {
    answered = true;
    return r;
  });
  let ran = false;
  for (let i = 0; i < 100 && !ran; i++) {
    const r = await direct.query("SELECT status FROM orders WHERE id = 41");
    ran = r.rows[0]?.status === "held";
    if (!ran) await new Promise((r) => setTimeout(r, 20));
  }
  t.ok(ran, "the server ran the statement while the record's fdatasync was held");
  await new Promise((r) => setTimeout(r, 100));
  t.notOk(answered, "the client has no result before the record is on disk");
  const records = await decisionRecords();
  t.ok(
    records.some((e) => e.action === "allow" && JSON.stringify(e).includes("orders")),
    "the decision is in the spool file already (written to the OS)",
  );
  release();
  const r = await update;
  t.equal(r.rowCount, 1, "released once durable");
  const after = await c.query("SELECT status FROM orders WHERE id = 41");
  t.equal(after.rows[0].status, "held", "and the session goes on");
});

t.test(
  "a failing fdatasync withholds the result and ends the session; the record stays, and new sessions work once the spool reopens",
  async (t) => {
    const c = await client(await g.tokenFor("alice"));
    const before = (await decisionRecords()).length;
    const release = holdDisk();
    const update = c
      .query("UPDATE orders SET status = 'lost-disk' WHERE id = 42")
      .catch((e: pg.DatabaseError) => e);
    await new Promise((r) => setTimeout(r, 100));
    disk.fail = "EIO";
    release();
    const err = (await update) as pg.DatabaseError;
    t.equal(err.code, "58030", "the client gets an I/O error, not the result");
    t.match(err.message, /could not be written to disk.*EIO.*withheld/);
    await c.end().catch(() => {});
    disk.fail = null;

    const records = await decisionRecords();
    t.ok(
      records.slice(before).some((e) => e.action === "allow"),
      "the written record of the statement that ran (allow) was not cut off",
    );

    // The spool reopens from disk (retryMs): a new session's statements are recorded again.
    let ok = false;
    for (let i = 0; i < 50 && !ok; i++) {
      const again = await client(await g.tokenFor("alice")).catch(() => null);
      const r = await again?.query("SELECT 1 AS one").catch(() => null);
      ok = r?.rows[0]?.one === 1;
      await again?.end().catch(() => {});
      if (!ok) await new Promise((r) => setTimeout(r, 100));
    }
    t.ok(ok, "a new session works once the spool is open again");
    await g.gw.audit?.spool.idle();
    const { verifySpool } = await import("../../src/audit/verify.js");
    const v = await verifySpool(g.gw.audit?.spool.dir as string);
    t.ok(v.ok, v.problem?.problem ?? "the chain verifies across the failure");
  },
);
