// A decision record's body (the OPA decision log event plus pamgate's fields, see event.ts) as one row of the web
// console's audit search, and the search filters evaluated on such a body.
//
// Both search backends must return the same rows for the same records: the spool backend filters in JavaScript
// (here), the PostgreSQL backend in SQL over the jsonb body (search-postgres.ts). The one derived value the filters
// look at — the command text the free-text filter matches — is therefore defined once, as a small table
// (COMMAND_SPEC), which both `commandText` and `commandTextSql` are built from.
//
// What the event can tell: pamgate's top-level fields name the session, protocol, resource, identity (subject and
// actor chain), the enforced `action`, its `reason_codes` (and `reasons` with messages when they differ from the
// verdict's), and the approval; OPA's `result` keeps the policy's verdict and `bundles` the deciding revision. The
// command is only in the (masked) `input`, and for PostgreSQL it never carries the SQL text — the input has the
// statement kind, tables, columns and a fingerprint, no literals — so a PostgreSQL row's command is its statement
// kind and tables; the normalized text is in the session transcript, joined by decision_id.

type Obj = Record<string, unknown>;

function obj(v: unknown): Obj | undefined {
  return v !== null && typeof v === "object" && !Array.isArray(v) ? (v as Obj) : undefined;
}

function str(v: unknown): string | undefined {
  return typeof v === "string" ? v : undefined;
}

/** Where a record is: its spool and its place in that spool's chain. */
export interface RecordPlace {
  spool_id: string;
  seq: number;
}

export interface DecisionRow {
  decision_id: string;
  /** RFC 3339, as in the event. */
  timestamp: string;
  protocol: string;
  resource: string;
  /** What the gateway enforced (the event's `action`). */
  action: string;
  /** The policy's verdict (`result.action`), when it differs from `action`. */
  verdict?: string;
  /** `chain`: the actors' subjects, original requester first; `[sub]` without delegation. */
  identity: { sub: string; chain: string[] };
  /** What was asked, as far as the event says: see commandText. "" when the input has no command (erased). */
  command: string;
  /** The statement kind (postgres), request type (ssh) or verb (kubernetes), when the event has one. */
  command_kind?: string;
  reasons: { code: string; message?: string }[];
  session_id: string | null;
  approval_id: string | null;
  /** The revision of the bundle that decided (`bundles.<name>.revision`). */
  revision: string | null;
  where: RecordPlace;
}

/** The filters that look at a record's body (the time range and paging are the backends' own). */
export interface BodyFilters {
  identity?: string;
  resource?: string;
  protocol?: string;
  action?: string;
  reason?: string;
  q?: string;
  sessionId?: string;
}

// ---- the command text ---------------------------------------------------------------------------------------

/**
 * A path under `input.command`: a part of the command text when its value is a non-empty string or a number
 * (booleans, objects and arrays are left out, in both backends).
 */
type Part = readonly string[];

/** For each SSH request type, the fields that say what was asked, after the request type itself. */
const SSH_DETAILS: Readonly<Record<string, readonly Part[]>> = {
  env: [["name"]],
  pty: [["term"]],
  subsystem: [["subsystem"]],
  sftp: [["op"], ["extension"], ["path"], ["target"]],
  port_forward: [["direction"], ["host"], ["port"], ["socket_path"]],
  channel: [["channel_type"]],
};

/**
 * The command text of each protocol, joined with single spaces from its non-empty parts:
 * - postgres: the statement kind, then the tables read and written (unique, sorted, comma-separated):
 *   `delete public.orders`;
 * - ssh: an exec's command line as logged (a mask rule may have replaced it); any other request, its type and
 *   details: `sftp open /etc/hosts`, `env LANG`, `port_forward local db 5432`;
 * - kubernetes: the verb and the path: `list /api/v1/namespaces/shop/pods`.
 */
const COMMAND_SPEC = {
  postgres: {
    kind: ["statement"] as Part,
    tables: [["tables", "write"] as Part, ["tables", "read"] as Part],
  },
  ssh: { kind: ["request"] as Part, line: ["line"] as Part, details: SSH_DETAILS },
  kubernetes: { kind: ["verb"] as Part, parts: [["verb"], ["path"]] as readonly Part[] },
} as const;

function at(c: Obj, path: Part): unknown {
  let v: unknown = c;
  for (const k of path) v = obj(v)?.[k];
  return v;
}

function partText(v: unknown): string | undefined {
  if (typeof v === "string") return v === "" ? undefined : v;
  if (typeof v === "number" && Number.isFinite(v)) return String(v);
  return undefined;
}

/** Sorted as PostgreSQL's COLLATE "C" sorts: by UTF-8 bytes (code points), not UTF-16 code units. */
function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

function join(parts: Array<string | undefined>): string {
  return parts.filter((p): p is string => p !== undefined).join(" ");
}

/** The command text and kind of a decision event's body (see COMMAND_SPEC). */
export function commandOf(body: Obj): { text: string; kind?: string } {
  const c = obj(obj(body.input)?.command);
  // The gateway's own text of the command (PostgreSQL: the normalized statement) when the event has one.
  const given = typeof body.command_text === "string" && body.command_text !== "" ? body.command_text : null;
  if (!c) return { text: given ?? "" };
  let text = "";
  let kind: unknown;
  switch (body.protocol) {
    case "postgres": {
      const spec = COMMAND_SPEC.postgres;
      kind = at(c, spec.kind);
      const tables = new Set<string>();
      for (const path of spec.tables) {
        const list = at(c, path);
        if (Array.isArray(list)) for (const t of list) if (typeof t === "string" && t !== "") tables.add(t);
      }
      text = join([partText(kind), tables.size > 0 ? [...tables].sort(byteOrder).join(",") : undefined]);
      break;
    }
    case "ssh": {
      const spec = COMMAND_SPEC.ssh;
      kind = at(c, spec.kind);
      if (kind === "exec") text = partText(at(c, spec.line)) ?? "";
      else {
        // hasOwn: a request type named "constructor" must not find Object's.
        const details =
          typeof kind === "string" && Object.hasOwn(spec.details, kind) ? spec.details[kind] : [];
        text = join([partText(kind), ...(details ?? []).map((p) => partText(at(c, p)))]);
      }
      break;
    }
    case "kubernetes": {
      const spec = COMMAND_SPEC.kubernetes;
      kind = at(c, spec.kind);
      text = join(spec.parts.map((p) => partText(at(c, p))));
      break;
    }
  }
  if (given !== null) text = given;
  return typeof kind === "string" && kind !== "" ? { text, kind } : { text };
}

/**
 * The same command text as a SQL expression over the jsonb column `body` (for the free-text filter in
 * PostgreSQL). Built from COMMAND_SPEC with constants only: no user input is ever part of it.
 */
export function commandTextSql(body = "body"): string {
  const c = `${body}->'input'->'command'`;
  const path = (p: Part) => `${c}${p.map((k) => `->${sqlString(k)}`).join("")}`;
  // A part: a string or number, as text; NULL (left out by concat_ws) when absent, empty or another type.
  const part = (p: Part) =>
    `NULLIF(CASE WHEN jsonb_typeof(${path(p)}) IN ('string', 'number') THEN ${path(p)} #>> '{}' END, '')`;
  const array = (p: Part) =>
    `CASE WHEN jsonb_typeof(${path(p)}) = 'array' THEN ${path(p)} ELSE '[]'::jsonb END`;
  const pgSpec = COMMAND_SPEC.postgres;
  const tables = `(SELECT string_agg(u.t, ',' ORDER BY u.t) FROM (SELECT DISTINCT e #>> '{}' COLLATE "C" AS t FROM jsonb_array_elements(${pgSpec.tables.map(array).join(" || ")}) AS x(e) WHERE jsonb_typeof(e) = 'string' AND e #>> '{}' <> '') AS u)`;
  const sshSpec = COMMAND_SPEC.ssh;
  const sshKind = `${c}->>${sqlString(sshSpec.kind[0] as string)}`;
  const sshCases = Object.entries(sshSpec.details)
    .map(
      ([k, parts]) =>
        `WHEN ${sqlString(k)} THEN concat_ws(' ', ${[sshSpec.kind, ...parts].map(part).join(", ")})`,
    )
    .join(" ");
  const k8s = COMMAND_SPEC.kubernetes.parts.map(part).join(", ");
  return `coalesce(NULLIF(CASE WHEN jsonb_typeof(${body}->'command_text') = 'string' THEN ${body}->>'command_text' END, ''), CASE ${body}->>'protocol'
    WHEN 'postgres' THEN concat_ws(' ', ${part(pgSpec.kind)}, ${tables})
    WHEN 'ssh' THEN (CASE ${sshKind} WHEN 'exec' THEN coalesce(${part(sshSpec.line)}, '') ${sshCases} ELSE concat_ws(' ', ${part(sshSpec.kind)}) END)
    WHEN 'kubernetes' THEN concat_ws(' ', ${k8s})
    ELSE '' END)`;
}

/** A constant of this file as a SQL string literal (never user input). */
function sqlString(s: string): string {
  if (!/^[a-z_]+$/.test(s)) throw new Error(`not a plain field name: ${s}`);
  return `'${s}'`;
}

// ---- the row --------------------------------------------------------------------------------------------------

function reasonsOf(body: Obj): { code: string; message?: string }[] {
  const one = (r: unknown): { code: string; message?: string } | null => {
    const o = obj(r);
    const code = str(o?.code);
    if (code === undefined) return null;
    const message = str(o?.message);
    return message ? { code, message } : { code };
  };
  const keep = (list: unknown[]) =>
    list.map(one).filter((r): r is { code: string; message?: string } => r !== null);
  // The reasons the client was told, with messages, when they differ from the verdict's.
  if (Array.isArray(body.reasons)) return keep(body.reasons);
  const verdict = Array.isArray(obj(body.result)?.reasons)
    ? keep(obj(body.result)?.reasons as unknown[])
    : [];
  if (!Array.isArray(body.reason_codes)) return verdict;
  return body.reason_codes
    .filter((c): c is string => typeof c === "string")
    .map((code) => {
      const message = verdict.find((r) => r.code === code)?.message;
      return message ? { code, message } : { code };
    });
}

function revisionOf(body: Obj): string | null {
  const bundles = obj(body.bundles);
  if (!bundles) return null;
  // One bundle decides; its key is the configured bundleName ("pamgate" by default).
  for (const b of Object.values(bundles)) {
    const revision = str(obj(b)?.revision);
    if (revision !== undefined) return revision;
  }
  return null;
}

/**
 * A decision event's body as a search row; null when the body is not a decision event (not an object, or no
 * decision_id). Never throws: fields missing from an old or odd record get empty values.
 */
export function decisionRow(body: unknown, where: RecordPlace): DecisionRow | null {
  const b = obj(body);
  const decisionId = str(b?.decision_id);
  if (!b || !decisionId) return null;
  const identity = obj(b.identity);
  const sub = str(identity?.sub) ?? "";
  const actors = Array.isArray(identity?.actors) ? identity.actors : [];
  const chain = actors.map((a) => str(obj(a)?.sub)).filter((s): s is string => s !== undefined);
  const action = str(b.action) ?? "";
  const verdict = str(obj(b.result)?.action);
  const command = commandOf(b);
  const row: DecisionRow = {
    decision_id: decisionId,
    timestamp: str(b.timestamp) ?? "",
    protocol: str(b.protocol) ?? "",
    resource: str(obj(b.resource)?.name) ?? "",
    action,
    identity: { sub, chain: chain.length > 0 ? chain : sub ? [sub] : [] },
    command: command.text,
    reasons: reasonsOf(b),
    session_id: str(b.session_id) ?? null,
    approval_id: str(b.approval_id) ?? null,
    revision: revisionOf(b),
    where: { spool_id: where.spool_id, seq: where.seq },
  };
  if (verdict !== undefined && verdict !== action) row.verdict = verdict;
  if (command.kind !== undefined) row.command_kind = command.kind;
  return row;
}

// ---- the filters --------------------------------------------------------------------------------------------

/**
 * Whether a decision event's body passes the filters. The same predicates as the SQL in search-postgres.ts:
 * top-level fields compared exactly, the identity against the subject or any actor, the reason against
 * `reason_codes` (what was enforced), the free text case-insensitively against the command text.
 */
export function bodyMatches(body: Obj, f: BodyFilters): boolean {
  if (f.identity !== undefined) {
    const identity = obj(body.identity);
    const actors = Array.isArray(identity?.actors) ? identity.actors : [];
    if (identity?.sub !== f.identity && !actors.some((a) => obj(a)?.sub === f.identity)) return false;
  }
  if (f.resource !== undefined && obj(body.resource)?.name !== f.resource) return false;
  if (f.protocol !== undefined && body.protocol !== f.protocol) return false;
  if (f.action !== undefined && body.action !== f.action) return false;
  if (f.sessionId !== undefined && body.session_id !== f.sessionId) return false;
  if (f.reason !== undefined && !(Array.isArray(body.reason_codes) && body.reason_codes.includes(f.reason)))
    return false;
  if (f.q !== undefined && !commandOf(body).text.toLowerCase().includes(f.q.toLowerCase())) return false;
  return true;
}

/**
 * Byte strings every matching record line must contain: the exact-match filter values as JSON strings, for the
 * spool scan to skip lines without parsing them. Only values whose JSON form is unique (printable ASCII without
 * quote or backslash) are used; the free text is never, since the command text is composed of several fields.
 */
export function lineNeedles(f: BodyFilters): Buffer[] {
  const out: Buffer[] = [];
  for (const v of [f.identity, f.resource, f.protocol, f.action, f.reason, f.sessionId]) {
    if (v !== undefined && /^[\x20-\x7e]*$/.test(v) && !/["\\]/.test(v)) out.push(Buffer.from(`"${v}"`));
  }
  return out;
}
