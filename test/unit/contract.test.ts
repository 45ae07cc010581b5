// The policy contract's lists are kept once, in src/decision/contract.ts; the JSON Schemas policy authors read
// must agree with them.
import { readFileSync } from "node:fs";
import t from "tap";
import { PROTOCOLS } from "../../src/decision/contract.js";
import { ADAPTERS } from "../../src/proxy/registry.js";
import { packagePath } from "../../src/util/tools.js";

t.test("the input schema's protocol enums are the contract's protocol list", async (t) => {
  const schema = JSON.parse(readFileSync(packagePath("policies", "schemas", "input.schema.json"), "utf8"));
  t.same(schema.properties.protocol.enum, [...PROTOCOLS], "input.protocol");
  t.same(schema.properties.resource.properties.kind.enum, [...PROTOCOLS], "input.resource.kind");
});

t.test("every registered adapter serves a protocol of the contract, each at most once", async (t) => {
  const served = ADAPTERS.map((a) => a.protocol);
  for (const p of served) t.ok((PROTOCOLS as readonly string[]).includes(p), p);
  t.equal(new Set(served).size, served.length);
});
