import { spawn } from "node:child_process";
import { writeFileSync, mkdtempSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spoolRecords } from "../src/audit/reader.js";
import { createLogger } from "../src/util/log.js";
import { startSshTestGateway } from "../test/helpers/ssh-gateway.js";
import { Spool } from "../src/audit/spool.js";
const stats = { calls: 0, bytes: 0, max: 0, rejected: 0, reasons: new Map<string, number>() };
const orig = Spool.prototype.record;
Spool.prototype.record = function (kind: string, body: string) {
  if (kind === "recording") { stats.calls++; stats.bytes += body.length; stats.max = Math.max(stats.max, body.length); }
  return orig.call(this, kind, body).catch((e: Error) => { stats.rejected++; const k = e.message.slice(0, 60); stats.reasons.set(k, (stats.reasons.get(k) ?? 0) + 1); throw e; });
};
const g = await startSshTestGateway(undefined, undefined, { log: createLogger("warn") });
const tok = await g.tokenFor("alice");
const w = mkdtempSync(join(tmpdir(), "dbg-"));
writeFileSync(join(w, "a.bin"), randomBytes(Number(process.env.SZ ?? 1 << 20)));
const t0 = performance.now();
const r = await new Promise((resolve) => {
  const c = spawn("scp", [...g.clientOptions(), "-O", "-P", String(g.sshPort), join(w, "a.bin"), `${g.login()}@127.0.0.1:${w}/b.bin`], { env: g.env(tok), stdio: ["ignore", "pipe", "pipe"] });
  let e = ""; c.stderr.on("data", (d) => { e += d; });
  c.on("close", (code) => resolve({ code, e }));
});
console.log(r, performance.now() - t0);
await new Promise((r) => setTimeout(r, 1000));
const sizes: number[] = []; let dropped = 0; let n = 0;
for await (const rec of spoolRecords(join(g.dir, "audit"))) {
  if (rec.kind !== "recording") continue;
  const b = JSON.parse(rec.body); if (b.format !== "asciicast-v2") continue;
  n++; sizes.push(rec.body.length); dropped = Math.max(dropped, b.dropped_events ?? 0);
}
console.log({ n, total: sizes.reduce((a, b) => a + b, 0), max: Math.max(...sizes), dropped });
console.log(stats);
await g.stop();
process.exit(0);
