// `pamgate approvals list|get|approve|deny`: the approval workflow from a terminal, through the control-plane
// API (docs/api.md). The caller's own access token says who approves; the API decides whether they may.
import { readFile } from "node:fs/promises";
import { CliError, parse } from "./args.js";

export const APPROVALS_USAGE = `usage:
  pamgate approvals list [--status pending|approved|denied|expired|all] [--limit N] [--json]
      approval requests you may see, newest first (default: pending)
  pamgate approvals get ID [--json]
      one request: who asked, the exact command, why it needs approval, the votes
  pamgate approvals approve ID [--comment TEXT] [--json]
  pamgate approvals deny ID [--comment TEXT] [--json]
      vote with your own identity

common options:
  --api URL          the control-plane API (default $PAMGATE_API, else http://127.0.0.1:8181)
  --token TOKEN      your access token (default $PAMGATE_TOKEN)
  --token-file FILE  read the access token from a file
`;

export const DEFAULT_API = "http://127.0.0.1:8181";

/** Where the command reads its environment and writes its output (tests pass their own). */
export interface CliIo {
  env: NodeJS.ProcessEnv;
  out: (text: string) => void;
  fetch: typeof fetch;
  now: () => Date;
}

const defaultIo: CliIo = {
  env: process.env,
  out: (text) => process.stdout.write(text),
  fetch: (...args) => fetch(...args),
  now: () => new Date(),
};

/** The API's answer for a request, as far as this command reads it. */
interface Approval {
  id: string;
  status: string;
  requester: { sub: string; email: string | null; actors: { sub: string }[] };
  resource: string;
  protocol: string;
  command: { text: string; fingerprint: string };
  reasons: { code: string; message: string }[];
  rule: { groups: string[]; min_approvals: number; ttl_s: number };
  created_at: string;
  expires_at: string;
  decided_at: string | null;
  grant_expires_at: string | null;
  approvals: number;
  votes?: { approver: { sub: string }; vote: string; comment: string | null; created_at: string }[];
}

/** The API refused: its code and message, shown as "pamgate: <code>: <message>" (exit 1). */
export class ApiRefusal extends Error {
  override name = "ApiRefusal";
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(`${code}: ${message}`);
  }
}

const common = {
  api: { type: "string" },
  token: { type: "string" },
  "token-file": { type: "string" },
  json: { type: "boolean" },
} as const;

class Client {
  constructor(
    private readonly base: string,
    private readonly token: string,
    private readonly io: CliIo,
  ) {}

  async call<T>(method: "GET" | "POST", path: string, body?: unknown): Promise<T> {
    const url = `${this.base}${path}`;
    let response: Response;
    try {
      response = await this.io.fetch(url, {
        method,
        headers: {
          authorization: `Bearer ${this.token}`,
          accept: "application/json",
          ...(body === undefined ? {} : { "content-type": "application/json" }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(30_000),
      });
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      const why = cause?.code ?? cause?.message ?? (err as Error).message;
      throw new Error(`cannot reach the pamgate API at ${this.base} (${why}); set PAMGATE_API or --api`);
    }
    const text = await response.text();
    let parsed: unknown;
    try {
      parsed = text === "" ? undefined : JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    if (!response.ok) {
      const error = (parsed as { error?: { code?: string; message?: string } } | undefined)?.error;
      throw new ApiRefusal(
        response.status,
        error?.code ?? `http_${response.status}`,
        error?.message ?? `${method} ${path} answered ${response.status} ${response.statusText}`,
      );
    }
    if (parsed === undefined)
      throw new Error(`${method} ${path}: the API answered something that is not JSON`);
    return parsed as T;
  }
}

async function connect(
  command: string,
  values: { api?: string; token?: string; "token-file"?: string },
  io: CliIo,
): Promise<Client> {
  const rawBase = values.api ?? io.env.PAMGATE_API ?? DEFAULT_API;
  let base: URL;
  try {
    base = new URL(rawBase);
  } catch {
    throw new CliError(`approvals ${command}: --api ${JSON.stringify(rawBase)} is not a URL`);
  }
  if (values.token && values["token-file"])
    throw new CliError(`approvals ${command}: give --token or --token-file, not both`);
  let token = values.token;
  if (values["token-file"]) {
    try {
      token = (await readFile(values["token-file"], "utf8")).trim();
    } catch (err) {
      throw new CliError(`approvals ${command}: --token-file: ${(err as Error).message}`);
    }
  }
  token ??= io.env.PAMGATE_TOKEN;
  if (!token) {
    throw new CliError(
      `approvals ${command}: no access token: set PAMGATE_TOKEN or pass --token / --token-file`,
    );
  }
  return new Client(base.toString().replace(/\/+$/, ""), token.replace(/^Bearer\s+/i, "").trim(), io);
}

function requireId(command: string, positionals: string[]): string {
  const id = positionals[0];
  if (!id) throw new CliError(`approvals ${command}: the approval id is required\n\n${APPROVALS_USAGE}`);
  return id;
}

function who(a: Approval): string {
  const chain = a.requester.actors.length > 0 ? a.requester.actors.map((x) => x.sub) : [a.requester.sub];
  return chain.length === 1 ? a.requester.sub : `${chain.at(-1)} for ${chain.slice(0, -1).join(" via ")}`;
}

/** "3m", "2h", "5d" ago (or "in …" for the future). */
export function relative(iso: string, now: Date): string {
  const seconds = Math.round((now.getTime() - Date.parse(iso)) / 1000);
  const abs = Math.abs(seconds);
  const text =
    abs < 60
      ? `${abs}s`
      : abs < 3600
        ? `${Math.floor(abs / 60)}m`
        : abs < 86_400
          ? `${Math.floor(abs / 3600)}h`
          : `${Math.floor(abs / 86_400)}d`;
  return seconds >= 0 ? `${text} ago` : `in ${text}`;
}

function oneLine(text: string, max: number): string {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length))) ?? [];
  return rows
    .map((r) =>
      r
        .map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

export function formatList(approvals: Approval[], now: Date): string {
  if (approvals.length === 0) return "no approval requests\n";
  const rows = [["ID", "STATUS", "REQUESTER", "RESOURCE", "CREATED", "COMMAND"]];
  for (const a of approvals) {
    rows.push([a.id, a.status, who(a), a.resource, relative(a.created_at, now), oneLine(a.command.text, 60)]);
  }
  return `${table(rows)}\n`;
}

export function formatApproval(a: Approval, now: Date): string {
  const lines = [
    `approval ${a.id}: ${a.status.toUpperCase()}`,
    `  requester  ${who(a)}${a.requester.email ? ` <${a.requester.email}>` : ""}`,
    `  resource   ${a.resource} (${a.protocol})`,
    `  command    ${a.command.text.split("\n").join("\n             ")}`,
  ];
  for (const [i, r] of a.reasons.entries()) {
    lines.push(`  ${i === 0 ? "why      " : "         "}  [${r.code}] ${r.message}`);
  }
  lines.push(
    `  approvers  ${a.rule.groups.join(", ")}: ${a.approvals} of ${a.rule.min_approvals} approval${a.rule.min_approvals === 1 ? "" : "s"}; grant for ${a.rule.ttl_s} s`,
    `  created    ${a.created_at} (${relative(a.created_at, now)})`,
  );
  if (a.status === "pending") lines.push(`  decide by  ${a.expires_at} (${relative(a.expires_at, now)})`);
  if (a.decided_at) lines.push(`  decided    ${a.decided_at}`);
  if (a.grant_expires_at)
    lines.push(`  grant      until ${a.grant_expires_at} (${relative(a.grant_expires_at, now)})`);
  if (a.votes && a.votes.length > 0) {
    lines.push("  votes");
    for (const v of a.votes) {
      lines.push(
        `    ${v.vote === "approve" ? "approved" : "denied  "} by ${v.approver.sub} at ${v.created_at}${v.comment ? `: ${v.comment}` : ""}`,
      );
    }
  }
  if (a.status === "pending") {
    lines.push("", `  pamgate approvals approve ${a.id}`, `  pamgate approvals deny ${a.id} --comment "…"`);
  }
  return `${lines.join("\n")}\n`;
}

function voteOutcome(a: Approval, vote: "approve" | "deny"): string {
  if (vote === "deny") return `denied approval request ${a.id}\n`;
  if (a.status === "approved") {
    return `approved ${a.id}: ${who(a)} may run the command on ${a.resource} until ${a.grant_expires_at}\n`;
  }
  return `recorded your approval of ${a.id}: ${a.approvals} of ${a.rule.min_approvals}; it stays pending\n`;
}

const STATUSES = ["pending", "approved", "denied", "expired", "all"];

export async function approvalsCommand(argv: string[], io: CliIo = defaultIo): Promise<number> {
  const [sub, ...rest] = argv;
  const print = (value: unknown, text: string, json: boolean | undefined) =>
    io.out(json ? `${JSON.stringify(value, null, 2)}\n` : text);
  switch (sub) {
    case "list": {
      const { values } = parse("approvals list", rest, {
        ...common,
        status: { type: "string" },
        limit: { type: "string" },
      });
      const status = values.status ?? "pending";
      if (!STATUSES.includes(status))
        throw new CliError(`approvals list: --status must be one of ${STATUSES.join(", ")}`);
      const limit = values.limit === undefined ? 100 : Number(values.limit);
      if (!Number.isInteger(limit) || limit < 1 || limit > 1000)
        throw new CliError("approvals list: --limit must be a whole number from 1 to 1000");
      const client = await connect("list", values, io);
      const query = new URLSearchParams({ limit: String(limit) });
      if (status !== "all") query.set("status", status);
      const page = await client.call<{ approvals: Approval[] }>("GET", `/v1/approvals?${query}`);
      print(page.approvals, formatList(page.approvals, io.now()), values.json);
      return 0;
    }
    case "get": {
      const { values, positionals } = parse("approvals get", rest, common, 1);
      const id = requireId("get", positionals);
      const client = await connect("get", values, io);
      const approval = await client.call<Approval>("GET", `/v1/approvals/${encodeURIComponent(id)}`);
      print(approval, formatApproval(approval, io.now()), values.json);
      return 0;
    }
    case "approve":
    case "deny": {
      const { values, positionals } = parse(
        `approvals ${sub}`,
        rest,
        { ...common, comment: { type: "string" } },
        1,
      );
      const id = requireId(sub, positionals);
      const client = await connect(sub, values, io);
      const body = values.comment === undefined ? {} : { comment: values.comment };
      const approval = await client.call<Approval>(
        "POST",
        `/v1/approvals/${encodeURIComponent(id)}/${sub}`,
        body,
      );
      print(approval, voteOutcome(approval, sub), values.json);
      return 0;
    }
    case undefined:
    case "help":
    case "--help":
    case "-h":
      io.out(APPROVALS_USAGE);
      return sub === undefined ? 2 : 0;
    default:
      throw new CliError(`approvals: unknown subcommand "${sub}"\n\n${APPROVALS_USAGE}`);
  }
}
