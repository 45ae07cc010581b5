// Loading the gateway's YAML configuration: parse, validate against the schema, and report every problem with
// the file, the line and the field, e.g. `gateway.yaml:12: resources[0].upstream.port: must be integer`.
// Credentials are resolved here (inline, environment variable or file) and never echoed in any message.
import { readFile } from "node:fs/promises";
import { dirname, isAbsolute, resolve } from "node:path";
import { Ajv, type ErrorObject } from "ajv";
import { isMap, isSeq, LineCounter, type Node, parseDocument } from "yaml";
import { ADAPTERS } from "../proxy/registry.js";
import type { CredentialSource, GatewayConfig } from "./schema.js";
import { configSchema } from "./schema.js";

export class ConfigError extends Error {
  override name = "ConfigError";
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  ${problems.join("\n  ")}`);
  }
}

// `discriminator`: resources[] and store are tagged unions; report against the variant the tag names.
const ajv = new Ajv({
  allErrors: true,
  strict: false,
  allowUnionTypes: true,
  discriminator: true,
  verbose: true, // errors carry their parentSchema: the discriminator's variants, to list the allowed tags
});
const validate = ajv.compile(configSchema);

/** "/resources/0/upstream/port" → "resources[0].upstream.port" */
function fieldName(pointer: string): string {
  return pointer
    .split("/")
    .slice(1)
    .map((p) => p.replace(/~1/g, "/").replace(/~0/g, "~"))
    .reduce((acc, p) => (/^\d+$/.test(p) ? `${acc}[${p}]` : acc ? `${acc}.${p}` : p), "");
}

/** The YAML node at a JSON pointer, to report its line. */
function nodeAt(doc: ReturnType<typeof parseDocument>, pointer: string): Node | null {
  let node: unknown = doc.contents;
  for (const part of pointer.split("/").slice(1)) {
    if (isMap(node)) node = node.get(part, true);
    else if (isSeq(node)) node = node.get(Number(part), true);
    else return null;
  }
  return (node as Node) ?? null;
}

/** The line of the field at `pointer`: its key's line for a map entry, so the report points at the field name. */
function lineOf(doc: ReturnType<typeof parseDocument>, counter: LineCounter, pointer: string): number | "?" {
  const parts = pointer.split("/");
  const parent = nodeAt(doc, parts.slice(0, -1).join("/"));
  const last = parts.at(-1) ?? "";
  if (isMap(parent)) {
    const pair = parent.items.find((i) => (i.key as { value?: unknown } | null)?.value === last);
    const key = pair?.key as Node | undefined;
    if (key?.range) return counter.linePos(key.range[0]).line;
  }
  const node = nodeAt(doc, pointer);
  return node?.range ? counter.linePos(node.range[0]).line : "?";
}

function describe(e: ErrorObject): { pointer: string; text: string } {
  const p = e.params as Record<string, unknown>;
  if (e.keyword === "additionalProperties") {
    return { pointer: `${e.instancePath}/${p.additionalProperty}`, text: "unknown field" };
  }
  if (e.keyword === "required")
    return { pointer: e.instancePath, text: `missing required field "${p.missingProperty}"` };
  if (e.keyword === "enum")
    return { pointer: e.instancePath, text: `must be one of ${JSON.stringify(p.allowedValues)}` };
  if (e.keyword === "discriminator") {
    const variants = (
      e.parentSchema as { oneOf?: Array<{ properties: Record<string, { const?: unknown }> }> }
    )?.oneOf;
    const tags = variants?.map((v) => v.properties[p.tag as string]?.const);
    return { pointer: `${e.instancePath}/${p.tag}`, text: `must be one of ${JSON.stringify(tags ?? [])}` };
  }
  return { pointer: e.instancePath, text: e.message ?? "is invalid" };
}

/** Parses and validates YAML text; `file` is used in messages and to resolve relative paths. */
export function parseConfig(text: string, file: string): GatewayConfig {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      doc.errors.map(
        (e) => `${file}:${e.linePos?.[0]?.line ?? "?"}: YAML syntax: ${e.message.split("\n")[0]}`,
      ),
    );
  }
  const value = doc.toJS() as unknown;
  if (!validate(value)) {
    const seen = new Set<string>();
    const problems: string[] = [];
    for (const e of validate.errors ?? []) {
      if (e.keyword === "anyOf" || e.keyword === "if") continue;
      // A missing tag is also reported by `required`, with the line of the object.
      if (e.keyword === "discriminator" && (e.params as { error?: string }).error === "tag") continue;
      const { pointer, text } = describe(e);
      const line = lineOf(doc, lineCounter, pointer);
      const msg = `${file}:${line}: ${fieldName(pointer) || "(top level)"}: ${text}`;
      if (!seen.has(msg)) problems.push(msg);
      seen.add(msg);
    }
    throw new ConfigError(problems);
  }
  const config = value as GatewayConfig;
  const names = new Set<string>();
  const problems: string[] = [];
  config.resources.forEach((r, i) => {
    if (names.has(r.name)) {
      const line = lineOf(doc, lineCounter, `/resources/${i}/name`);
      problems.push(`${file}:${line}: resources[${i}].name: "${r.name}" is used twice`);
    }
    names.add(r.name);
  });
  const sources = ["bundle", "url", "policies"].filter((k) => k in config.policy);
  if (sources.length !== 1) {
    const line = lineOf(doc, lineCounter, "/policy");
    problems.push(
      `${file}:${line}: policy: set exactly one of bundle, url or policies (got ${sources.join(", ") || "none"})`,
    );
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return resolvePaths(config, dirname(resolve(file)));
}

function resolvePaths(config: GatewayConfig, base: string): GatewayConfig {
  const abs = (p: string | undefined) => (p && !isAbsolute(p) && !/^https?:/.test(p) ? resolve(base, p) : p);
  const out = structuredClone(config);
  out.policy.bundle = abs(out.policy.bundle);
  out.policy.policies = abs(out.policy.policies);
  if (out.policy.verification)
    out.policy.verification.key_file = abs(out.policy.verification.key_file) as string;
  for (const adapter of ADAPTERS) {
    const listener = (out.listeners as Record<string, Record<string, unknown> | undefined>)[adapter.protocol];
    if (!listener) continue;
    const tls = listener.tls as { cert_file: string; key_file: string } | undefined;
    if (tls) {
      tls.cert_file = abs(tls.cert_file) as string;
      tls.key_file = abs(tls.key_file) as string;
    }
    for (const key of adapter.listenerFiles ?? [])
      if (typeof listener[key] === "string") listener[key] = abs(listener[key]);
  }
  if (out.store?.type === "embedded") out.store.dir = abs(out.store.dir) as string;
  if (out.audit) out.audit.dir = abs(out.audit.dir) as string;
  for (const r of out.resources) {
    if (r.credentials?.password_file) r.credentials.password_file = abs(r.credentials.password_file);
    if (r.credentials?.key_file) r.credentials.key_file = abs(r.credentials.key_file);
  }
  return out;
}

export async function loadConfig(file: string): Promise<GatewayConfig> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    throw new ConfigError([`${file}: cannot read: ${(err as Error).message}`]);
  }
  return parseConfig(text, file);
}

/** Resolves a credential source to the password. Errors name the source, never its value. */
export async function resolveCredential(source: CredentialSource, resource: string): Promise<string> {
  if (source.password !== undefined) return source.password;
  if (source.password_env) {
    const v = process.env[source.password_env];
    if (v === undefined) {
      throw new ConfigError([
        `resources "${resource}": credentials.password_env: environment variable ${source.password_env} is not set`,
      ]);
    }
    return v;
  }
  if (source.password_file) {
    try {
      return (await readFile(source.password_file, "utf8")).split(/\r?\n/)[0] ?? "";
    } catch (err) {
      throw new ConfigError([
        `resources "${resource}": credentials.password_file: cannot read ${source.password_file}: ${(err as NodeJS.ErrnoException).code ?? "error"}`,
      ]);
    }
  }
  if (source.key_file) {
    try {
      return await readFile(source.key_file, "utf8");
    } catch (err) {
      throw new ConfigError([
        `resources "${resource}": credentials.key_file: cannot read ${source.key_file}: ${(err as NodeJS.ErrnoException).code ?? "error"}`,
      ]);
    }
  }
  throw new ConfigError([`resources "${resource}": credentials: no password source`]);
}
