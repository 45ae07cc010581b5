// One reason-code table: every code pamgate's sources give is in the gateway's table or its adapter's, and
// docs/reasons.md lists them all with the same meaning.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import t from "tap";
import { ENGINE_REASONS } from "../../src/decision/contract.js";
import { GATEWAY_REASONS } from "../../src/decision/reasons.js";
import { ADAPTERS } from "../../src/proxy/registry.js";
import { packagePath } from "../../src/util/tools.js";

const table: Record<string, string> = { ...GATEWAY_REASONS };
for (const a of ADAPTERS) Object.assign(table, a.reasons);

function sources(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && e.name.endsWith(".ts"))
    .map((e) => join(e.parentPath, e.name));
}

t.test("every reason code written in src/ is in a table", async (t) => {
  // A code literal: "<prefix>.<word>" where the prefix is one the tables use; names of status components and
  // files that look alike (audit.spool, identity.verifier, store.lock) are not codes.
  const prefixes = [...new Set(Object.keys(table).map((c) => c.split(".")[0]))];
  const pattern = new RegExp(
    `code: "((?:${prefixes.join("|")})\\.[a-z_]+)"|Reason\\("((?:${prefixes.join("|")})\\.[a-z_]+)"`,
    "g",
  );
  const used = new Set<string>();
  for (const file of sources(packagePath("src"))) {
    for (const m of readFileSync(file, "utf8").matchAll(pattern)) used.add((m[1] ?? m[2]) as string);
  }
  t.ok(used.size >= 5, "the scan finds codes");
  for (const code of used) t.ok(code in table, `${code} is in a reason table`);
  for (const code of Object.values(ENGINE_REASONS)) t.ok(code in table, `${code} (engine) is in the table`);
});

t.test("docs/reasons.md lists every code", async (t) => {
  const doc = readFileSync(packagePath("docs", "reasons.md"), "utf8");
  for (const code of Object.keys(table)) t.match(doc, `\`${code}\``, code);
});
