// `pamgate audit verify` checks the hash chain of a spool directory or of the PostgreSQL sink's table and names
// the first bad record; `pamgate audit tail` shows the newest records as one-liners, and follows new ones.
import { followSpool, formatRecord, lastRecords } from "../audit/tail.js";
import { describeResult, verifyPostgres, verifySpool } from "../audit/verify.js";
import { CliError, parse } from "./args.js";

export const AUDIT_USAGE = `usage:
  pamgate audit verify [--spool DIR | --postgres URL [--table T] [--spool-id ID]] [--json]
      check the hash chain; exit 1 naming the first bad record (modified, deleted, reordered, inserted)
  pamgate audit tail [--spool DIR] [-n N] [--follow] [--kind KIND] [--json]
      the newest records as one-liners: time, action, protocol, resource, who, command, reason codes

The spool directory defaults to $PAMGATE_AUDIT_DIR.
`;

function spoolDir(given: string | undefined, command: string): string {
  const dir = given ?? process.env.PAMGATE_AUDIT_DIR;
  if (!dir) throw new CliError(`audit ${command}: --spool DIR is required (or set PAMGATE_AUDIT_DIR)`);
  return dir;
}

function out(line: string): void {
  process.stdout.write(`${line}\n`);
}

async function verify(argv: string[]): Promise<number> {
  const { values } = parse("audit verify", argv, {
    spool: { type: "string" },
    postgres: { type: "string" },
    table: { type: "string" },
    "spool-id": { type: "string" },
    json: { type: "boolean" },
  });
  if (values.spool && values.postgres)
    throw new CliError("audit verify: give --spool or --postgres, not both");
  if (values.postgres) {
    const table = values.table ?? "pamgate_audit";
    const results = await verifyPostgres(values.postgres, table, values["spool-id"]);
    if (results.length === 0) {
      out(`no records in table ${table}`);
      return 0;
    }
    for (const r of results) {
      out(values.json ? JSON.stringify(r) : describeResult(r, `table ${table}`));
      if (!values.json) for (const n of r.notes) out(`  note: ${n}`);
    }
    return results.every((r) => r.ok) ? 0 : 1;
  }
  const dir = spoolDir(values.spool, "verify");
  let result: Awaited<ReturnType<typeof verifySpool>>;
  try {
    result = await verifySpool(dir);
  } catch (err) {
    if ((err as { code?: string }).code === "ENOENT") throw new CliError(`audit verify: no spool in ${dir}`);
    throw err;
  }
  out(values.json ? JSON.stringify(result) : describeResult(result, dir));
  if (!values.json) for (const n of result.notes) out(`  note: ${n}`);
  return result.ok ? 0 : 1;
}

async function tail(argv: string[]): Promise<number> {
  const { values } = parse("audit tail", argv, {
    spool: { type: "string" },
    n: { type: "string", short: "n" },
    follow: { type: "boolean", short: "f" },
    kind: { type: "string" },
    json: { type: "boolean" },
  });
  const dir = spoolDir(values.spool, "tail");
  const n = values.n === undefined ? 20 : Number(values.n);
  if (!Number.isInteger(n) || n < 0)
    throw new CliError(`audit tail: -n must be a whole number, not "${values.n}"`);
  const show = (r: Parameters<typeof formatRecord>[0]) => {
    if (values.kind && r.kind !== values.kind) return;
    out(values.json ? r.line : formatRecord(r));
  };
  const recent = await lastRecords(dir, values.kind ? Math.max(n * 20, 1000) : n);
  const shown = values.kind ? recent.filter((r) => r.kind === values.kind).slice(-n) : recent;
  for (const r of shown) show(r);
  if (!values.follow) return 0;
  const controller = new AbortController();
  const stop = () => controller.abort();
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  const newest = recent.length > 0 ? recent : await lastRecords(dir, 1);
  const after = newest.length > 0 ? (newest[newest.length - 1] as { seq: number }).seq : 0;
  for await (const r of followSpool(dir, after, { signal: controller.signal })) show(r);
  return 0;
}

export async function auditCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === "verify") return verify(rest);
  if (sub === "tail") return tail(rest);
  if (!sub || sub === "help" || sub === "--help" || sub === "-h") {
    process.stdout.write(AUDIT_USAGE);
    return sub ? 0 : 2;
  }
  throw new CliError(`audit: unknown subcommand "${sub}"\n\n${AUDIT_USAGE}`);
}
