// The PostgreSQL sink against a real server the harness starts: batched inserts into a table it creates, the chain
// verifiable in the table, a server outage mid-run (stopped, then restarted on the same port and data directory)
// losing nothing, duplicates after a lost cursor absorbed by the primary key, and tampering in the table found.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import t from "tap";
import { AuditTrail, sinkName } from "../../src/audit/index.js";
import { encodeRecord, parseRecordLine, type SpoolRecord } from "../../src/audit/record.js";
import { loadRecording, postgresRecordingRecords } from "../../src/audit/replay.js";
import { cursorPath } from "../../src/audit/shipper.js";
import { verifyPostgres } from "../../src/audit/verify.js";
import type { Decision } from "../../src/decision/contract.js";
import { serializeInput } from "../../src/decision/engine.js";
import { sampleInput } from "../helpers/bundles.js";
import { type PostgresServer, startPostgres } from "../helpers/postgres.js";

function decision(i: number, session = "pg-sess"): Decision {
  return {
    decision_id: `10000000-0000-4000-8000-${String(i).padStart(12, "0")}`,
    verdict: { action: "allow", reasons: [{ code: "pg.read", message: "ok" }], mask: [], approval: null },
    revision: "rev-1",
    eval_ns: 5000,
    input_json: serializeInput(sampleInput({ session: { id: session } })),
    policy: { has: () => true, evaluate: () => ["/input/identity/email"] },
  };
}

/** Stops the postmaster but keeps its data directory (the harness's stop() would delete it). */
async function stopServer(server: PostgresServer): Promise<void> {
  const pid = Number(readFileSync(join(server.dataDir, "postmaster.pid"), "utf8").split("\n")[0]);
  process.kill(pid, "SIGINT");
  for (;;) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Starts the server again on the same data directory (so the same port, from postgresql.conf). */
async function restartServer(server: PostgresServer): Promise<ChildProcess> {
  const id = (flag: string) => Number(execFileSync("id", [flag, "postgres"], { encoding: "utf8" }).trim());
  const asPostgres = process.getuid?.() === 0 ? { uid: id("-u"), gid: id("-g") } : {};
  const proc = spawn(join(server.bin, "postgres"), ["-D", server.dataDir], {
    stdio: "ignore",
    ...asPostgres,
  });
  for (let i = 0; i < 300; i++) {
    try {
      execFileSync(join(server.bin, "pg_isready"), ["-h", "127.0.0.1", "-p", String(server.port), "-q"]);
      return proc;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  throw new Error("postgres did not come back");
}

async function query<T extends pg.QueryResultRow>(
  url: string,
  sql: string,
  params: unknown[] = [],
): Promise<T[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query<T>(sql, params)).rows;
  } finally {
    await c.end();
  }
}

t.test("PostgreSQL sink", async (t) => {
  const server = await startPostgres();
  let restarted: ChildProcess | null = null;
  t.teardown(async () => {
    if (restarted && restarted.exitCode === null) {
      const gone = new Promise((r) => restarted?.once("exit", r));
      restarted.kill("SIGINT");
      await gone;
    }
    await server.stop();
  });
  const backoff = { initialMs: 50, maxMs: 400 };

  await t.test("batched inserts, table created, chain verifiable in the table", async (t) => {
    const dir = t.testdir();
    const audit = await AuditTrail.open({ dir, sinks: [{ type: "postgres", url: server.url }], backoff });
    const rec = audit.openTranscript("pg-sess", { meta: { protocol: "postgres" } });
    await Promise.all(Array.from({ length: 500 }, (_, i) => audit.recordDecision(decision(i))));
    rec.entry({ type: "statement", decision_id: decision(1).decision_id, action: "allow" });
    await rec.close();
    t.ok(await audit.waitForSinks(20_000), "the sink caught up");
    const spoolId = audit.spool.id as string;
    const last = audit.spool.lastSeq;
    await audit.close();

    const rows = await query<{ n: string; decisions: string; max: string; sessions: string }>(
      server.url,
      `SELECT count(*) AS n, count(*) FILTER (WHERE kind = 'decision') AS decisions, max(seq) AS max,
              count(DISTINCT session_id) AS sessions FROM pamgate_audit WHERE spool_id = $1`,
      [spoolId],
    );
    t.same(rows[0], { n: String(last), decisions: "500", max: String(last), sessions: "1" });
    const [one] = await query<{
      decision_id: string;
      ts: Date;
      action: string;
      record: string;
      email: string | null;
    }>(
      server.url,
      `SELECT decision_id, ts, body->>'action' AS action, record, body->'input'->'identity'->>'email' AS email
       FROM pamgate_audit WHERE decision_id = $1`,
      [decision(7).decision_id],
    );
    t.equal(one?.action, "allow");
    t.equal(one?.email, null, "masked before it was written, so masked in the table");
    t.equal(one?.ts.toISOString(), "2026-11-26T08:00:01.123Z");
    t.type(parseRecordLine(one?.record as string), "object", "the row holds the record exactly as hashed");

    const [v] = await verifyPostgres(server.url, "pamgate_audit", spoolId);
    t.ok(v?.ok, v?.problem?.problem ?? "the chain verifies in the table");
    t.equal(v?.records, last);

    const replay = await loadRecording(
      postgresRecordingRecords(server.url, "pamgate_audit", "pg-sess"),
      "pg-sess",
    );
    t.equal(replay?.events.length, 1, "recordings can be replayed from the table");
  });

  await t.test("a server outage loses nothing; a lost cursor's duplicates are absorbed", async (t) => {
    const dir = t.testdir();
    const table = "audit.decisions";
    await query(server.url, "CREATE SCHEMA IF NOT EXISTS audit");
    const sinks = [{ type: "postgres" as const, url: server.url, table, batchSize: 50 }];
    let audit = await AuditTrail.open({ dir, sinks, backoff });
    const spoolId = audit.spool.id as string;
    let i = 0;
    let writing = true;
    const writer = (async () => {
      while (writing) {
        await audit.recordDecision(decision(i++));
        if (i % 20 === 0) await new Promise((r) => setTimeout(r, 5));
      }
    })();
    await new Promise((r) => setTimeout(r, 300));
    await stopServer(server);
    const duringOutage = i;
    await new Promise((r) => setTimeout(r, 700));
    t.ok(i > duringOutage + 50, `${i - duringOutage} decisions recorded while the sink was down`);
    const status = audit.status().sinks[0];
    t.ok((status?.failures ?? 0) > 0, `the shipper saw the outage: ${status?.last_error}`);
    t.ok((status?.lag ?? 0) > 0, "records wait in the spool");
    restarted = await restartServer(server);
    await new Promise((r) => setTimeout(r, 200));
    writing = false;
    await writer;
    t.ok(await audit.waitForSinks(20_000), "caught up after the server returned");
    const last = audit.spool.lastSeq;
    await audit.close();

    let [row] = await query<{ n: string; distinct_seq: string; decisions: string }>(
      server.url,
      `SELECT count(*) AS n, count(DISTINCT seq) AS distinct_seq, count(*) FILTER (WHERE kind = 'decision') AS decisions
       FROM audit.decisions WHERE spool_id = $1`,
      [spoolId],
    );
    t.same(
      row,
      { n: String(last), distinct_seq: String(last), decisions: String(i) },
      "every record, exactly once",
    );

    // The cursor is lost: everything is sent again, and the table still holds each record once.
    const name = sinkName(sinks[0] as (typeof sinks)[0]);
    rmSync(cursorPath(dir, name));
    audit = await AuditTrail.open({ dir, sinks, backoff });
    t.ok(await audit.waitForSinks(20_000));
    await audit.close();
    [row] = await query<{ n: string; distinct_seq: string; decisions: string }>(
      server.url,
      "SELECT count(*) AS n, count(DISTINCT seq) AS distinct_seq, count(*) FILTER (WHERE kind = 'decision') AS decisions FROM audit.decisions WHERE spool_id = $1",
      [spoolId],
    );
    t.equal(row?.n, String(last), "ON CONFLICT DO NOTHING: no duplicate rows");
    const [v] = await verifyPostgres(server.url, table, spoolId);
    t.ok(v?.ok, v?.problem?.problem ?? "chain intact");
  });

  await t.test("a writer role that may only insert into an existing table", async (t) => {
    await query(server.url, "CREATE TABLE ship_only (LIKE pamgate_audit INCLUDING ALL)");
    await query(server.url, "CREATE ROLE audit_writer LOGIN PASSWORD 'writer-pw'");
    // ON CONFLICT (spool_id, seq) reads the key columns: the least a writer needs.
    await query(server.url, "GRANT INSERT, SELECT (spool_id, seq) ON ship_only TO audit_writer");
    const url = server.url.replace(/\/\/[^@]+@/, "//audit_writer:writer-pw@");
    const dir = t.testdir();
    const audit = await AuditTrail.open({
      dir,
      sinks: [{ type: "postgres", url, table: "ship_only" }],
      backoff,
    });
    for (let i = 0; i < 10; i++) await audit.recordDecision(decision(i));
    t.ok(await audit.waitForSinks(10_000), audit.status().sinks[0]?.last_error ?? "shipped");
    await audit.close();
    const [row] = await query<{ n: string }>(server.url, "SELECT count(*) AS n FROM ship_only");
    t.equal(row?.n, "10");
  });

  await t.test("tampering in the table is found: modified, deleted, reordered, inserted", async (t) => {
    const dir = t.testdir();
    const table = "tamper";
    const audit = await AuditTrail.open({
      dir,
      sinks: [{ type: "postgres", url: server.url, table }],
      backoff,
    });
    for (let i = 0; i < 20; i++) await audit.recordDecision(decision(i));
    t.ok(await audit.waitForSinks(10_000));
    const spoolId = audit.spool.id as string;
    await audit.close();
    const c = new pg.Client({ connectionString: server.url });
    await c.connect();
    t.teardown(() => c.end());
    const check = async () => (await verifyPostgres(server.url, table, spoolId))[0];
    t.ok((await check())?.ok, "intact to begin with");

    const snapshot = (await c.query(`SELECT *, body::text AS body_text FROM ${table} ORDER BY seq`)).rows;
    const restore = async () => {
      await c.query(`DELETE FROM ${table}`);
      for (const r of snapshot) {
        await c.query(
          `INSERT INTO ${table} (spool_id, seq, kind, prev_hash, hash, record, body, decision_id, session_id, ts, shipped_at)
           VALUES ($1,$2,$3,$4,$5,$6,$7::jsonb,$8,$9,$10,$11)`,
          [
            r.spool_id,
            r.seq,
            r.kind,
            r.prev_hash,
            r.hash,
            r.record,
            r.body_text,
            r.decision_id,
            r.session_id,
            r.ts,
            r.shipped_at,
          ],
        );
      }
      const after = await check();
      t.ok(after?.ok, after?.problem?.problem ?? "restored");
    };

    // Modified: the record text.
    await c.query(
      `UPDATE ${table} SET record = replace(record, '"action":"allow"', '"action":"block"') WHERE seq = 5`,
    );
    let r = await check();
    t.equal(r?.problem?.seq, 5);
    t.match(r?.problem?.problem, /seq 5 was modified/);
    await restore();

    // Modified: only the queryable body column.
    await c.query(`UPDATE ${table} SET body = jsonb_set(body, '{action}', '"block"') WHERE seq = 6`);
    r = await check();
    t.equal(r?.problem?.seq, 6);
    t.match(r?.problem?.problem, /body column differs from the record/);
    await restore();

    // Deleted.
    await c.query(`DELETE FROM ${table} WHERE seq = 9`);
    r = await check();
    t.equal(r?.problem?.seq, 9);
    t.match(r?.problem?.problem, /seq 10 follows seq 8: seq 9 is missing/);
    await restore();

    // Reordered: two rows swap their seq.
    await c.query(`UPDATE ${table} SET seq = -1 WHERE seq = 3`);
    await c.query(`UPDATE ${table} SET seq = 3 WHERE seq = 4`);
    await c.query(`UPDATE ${table} SET seq = 4 WHERE seq = -1`);
    r = await check();
    t.equal(r?.problem?.seq, 3);
    t.match(r?.problem?.problem, /row seq 3 holds the record of seq 4: rows were renumbered/);
    await restore();

    // Inserted: rows after 11 renumbered and a forged record, correctly chained from seq 11, put in as seq 12.
    await c.query(`UPDATE ${table} SET seq = seq + 1000 WHERE seq > 11`);
    await c.query(`UPDATE ${table} SET seq = seq - 999 WHERE seq > 1000`);
    const prev = (snapshot.find((x) => Number(x.seq) === 11) as { hash: string }).hash;
    const forged = encodeRecord(12, "decision", prev, '{"decision_id":"forged","action":"allow"}');
    const fr = parseRecordLine(forged.line.trimEnd()) as SpoolRecord;
    await c.query(
      `INSERT INTO ${table} (spool_id, seq, kind, prev_hash, hash, record) VALUES ($1, 12, 'decision', $2, $3, $4)`,
      [spoolId, fr.prev, fr.hash, fr.line],
    );
    r = await check();
    t.equal(r?.problem?.seq, 13);
    t.match(r?.problem?.problem, /row seq 13 holds the record of seq 12/);
    await restore();
  });
});
