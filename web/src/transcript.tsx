// A session's JSON-lines transcript, readable: PostgreSQL statements with their results (psql-like), Kubernetes
// requests and tunnels as a table, SSH and everything else as a list of events with their fields. Entries stay in
// the order they happened.
import type { ComponentChildren } from "preact";
import type { DecisionRow, Transcript, TranscriptEntry } from "./api.js";
import { chainOf, formatBytes, formatTime, normalizeReasons, show } from "./format.js";
import { href } from "./router.js";
import { ActionBadge, Chain, ReasonCodes } from "./ui.js";

type Block =
  | { kind: "statement"; entry: TranscriptEntry; result: TranscriptEntry | undefined }
  | { kind: "requests"; entries: Array<{ entry: TranscriptEntry; response: TranscriptEntry | undefined }> }
  | { kind: "entry"; entry: TranscriptEntry };

const K8S_ROW = /^(request|tunnel(\..*)?)$/;

function blocks(entries: TranscriptEntry[]): Block[] {
  const results = new Map<string, TranscriptEntry>();
  const responses = new Map<string, TranscriptEntry>();
  const statements = new Set<string>();
  const requests = new Set<string>();
  for (const e of entries) {
    const id = typeof e.decision_id === "string" ? e.decision_id : null;
    if (!id) continue;
    if (e.event === "statement") statements.add(id);
    if (e.event === "request") requests.add(id);
    if (e.event === "result") results.set(id, e);
    if (e.event === "response") responses.set(id, e);
  }
  // A request-based (Kubernetes) session: everything between its start and end is a row of one table.
  const tabular = requests.size > 0;
  const isRow = (e: TranscriptEntry) =>
    typeof e.event === "string" &&
    (tabular ? e.event !== "start" && e.event !== "end" : K8S_ROW.test(e.event));
  const out: Block[] = [];
  for (const e of entries) {
    const id = typeof e.decision_id === "string" ? e.decision_id : "";
    if (e.event === "result" && statements.has(id)) continue; // shown under its statement
    if (e.event === "response" && requests.has(id)) continue; // shown in its request's row
    if (e.event === "statement") {
      out.push({ kind: "statement", entry: e, result: results.get(id) });
    } else if (isRow(e)) {
      const last = out[out.length - 1];
      const row = { entry: e, response: e.event === "request" ? responses.get(id) : undefined };
      if (last?.kind === "requests") last.entries.push(row);
      else out.push({ kind: "requests", entries: [row] });
    } else {
      out.push({ kind: "entry", entry: e });
    }
  }
  return out;
}

function At({ t, startedAt }: { t: unknown; startedAt: number | null }) {
  if (typeof t !== "number") return <span class="t muted">—</span>;
  const title = startedAt !== null ? formatTime(new Date(startedAt + t * 1000).toISOString()) : undefined;
  return (
    <span class="t" title={title}>
      +{t < 10 ? t.toFixed(2) : t.toFixed(1)} s
    </span>
  );
}

/** Entries that are not the statement/request kinds: the event's name and its fields as `key: value`. */
function Generic({ entry, startedAt }: { entry: TranscriptEntry; startedAt: number | null }) {
  const { t, event, action, reasons, decision_id, ...rest } = entry;
  let summary: ComponentChildren = null;
  if (event === "start") {
    const identity = rest.identity as { sub: string; actors?: Array<{ sub: string }> } | undefined;
    summary = (
      <>
        Session started
        {identity ? (
          <>
            {" "}
            by <Chain chain={chainOf({ sub: identity.sub, actors: identity.actors ?? [] })} />
          </>
        ) : null}
        {rest.resource ? <> on {show(rest.resource)}</> : null}
        {rest.client_addr ? <> from {show(rest.client_addr)}</> : null}
      </>
    );
  } else if (event === "end") {
    summary = <>Session ended{rest.reason ? `: ${show(rest.reason)}` : ""}</>;
  } else if (event === "recording") {
    summary = <>Terminal recording {show(rest.recording_id)} started (played above)</>;
  }
  // A command line (an SSH exec, a typed line) is the point of its entry: shown first, as code.
  const line = typeof rest.line === "string" ? rest.line : null;
  const fields = summary
    ? []
    : Object.entries(rest).filter(([k, v]) => k !== "line" && v !== undefined && v !== null && v !== "");
  const codes = normalizeReasons(reasons);
  return (
    <li class="entry">
      <div class="entry-head">
        <At t={t} startedAt={startedAt} />
        {summary ? <span>{summary}</span> : <strong class="event">{show(event) || "entry"}</strong>}
        {line !== null && !summary ? <code class="cmd line">{line}</code> : null}
        {typeof action === "string" ? <ActionBadge action={action} /> : null}
        {codes.length ? <ReasonCodes reasons={codes} /> : null}
      </div>
      {fields.length ? (
        <dl class="kv">
          {fields.map(([k, v]) => (
            <div key={k}>
              <dt>{k}</dt>
              <dd>{typeof v === "object" ? <code>{show(v)}</code> : show(v)}</dd>
            </div>
          ))}
          {typeof decision_id === "string" ? (
            <div>
              <dt>decision_id</dt>
              <dd>
                <code>{decision_id}</code>
              </dd>
            </div>
          ) : null}
        </dl>
      ) : null}
    </li>
  );
}

function Cell({ value }: { value: unknown }) {
  if (value === null || value === undefined) return <td class="null">NULL</td>;
  return <td>{show(value)}</td>;
}

function Result({ r }: { r: TranscriptEntry }) {
  const ms = typeof r.duration_ms === "number" ? `Time: ${r.duration_ms.toFixed(3)} ms` : null;
  if (r.not_run)
    return <p class="result-line muted">Not run: an earlier statement of the same message failed.</p>;
  const error = r.error as { code?: string; message?: string } | undefined;
  if (error)
    return (
      <div class="result">
        <p class="result-error">
          ERROR: {error.message}
          {error.code ? <span class="muted"> (SQLSTATE {error.code})</span> : null}
        </p>
        {ms ? <p class="result-line muted">{ms}</p> : null}
      </div>
    );
  const columns = Array.isArray(r.columns) ? (r.columns as string[]) : null;
  const sample = Array.isArray(r.sample) ? (r.sample as unknown[][]) : [];
  const rows = typeof r.rows === "number" ? r.rows : sample.length;
  return (
    <div class="result">
      {columns ? (
        <div class="table-wrap">
          <table class="result-table">
            <thead>
              <tr>
                {columns.map((c, i) => (
                  <th key={i} scope="col">
                    {c}
                  </th>
                ))}
              </tr>
            </thead>
            <tbody>
              {sample.map((row, i) => (
                <tr key={i}>
                  {columns.map((_, j) => (
                    <Cell key={j} value={Array.isArray(row) ? row[j] : undefined} />
                  ))}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
      <p class="result-line muted">
        {columns ? `(${rows} ${rows === 1 ? "row" : "rows"})` : show(r.tag)}
        {columns && r.truncated ? ` — the first ${sample.length} shown` : ""}
        {columns && r.tag ? ` · ${show(r.tag)}` : ""}
        {ms ? ` · ${ms}` : ""}
      </p>
    </div>
  );
}

function Statement({
  entry,
  result,
  startedAt,
}: {
  entry: TranscriptEntry;
  result: TranscriptEntry | undefined;
  startedAt: number | null;
}) {
  const action = typeof entry.action === "string" ? entry.action : "";
  const text =
    typeof entry.text === "string"
      ? entry.text
      : `(${show(entry.statement) || "statement"}${entry.fingerprint ? `, fingerprint ${show(entry.fingerprint)}` : ""}; its text is not recorded)`;
  return (
    <li class="entry statement">
      <div class="entry-head">
        <At t={entry.t} startedAt={startedAt} />
        {action ? <ActionBadge action={action} /> : null}
        {entry.statement ? <span class="muted small">{show(entry.statement)}</span> : null}
        {normalizeReasons(entry.reasons).length ? (
          <ReasonCodes reasons={normalizeReasons(entry.reasons)} />
        ) : null}
        {typeof entry.approval_id === "string" && entry.approval_id ? (
          <a href={href(["approvals", entry.approval_id])} class="small">
            approval
          </a>
        ) : null}
      </div>
      <pre class="sql">
        <span class="prompt" aria-hidden="true">
          {"=> "}
        </span>
        {text}
        {typeof entry.text === "string" && !text.trimEnd().endsWith(";") ? ";" : ""}
      </pre>
      {action === "block" ? (
        <p class="result-line muted">Blocked by the policy: not run.</p>
      ) : result ? (
        <Result r={result} />
      ) : null}
    </li>
  );
}

function requestCells(entry: TranscriptEntry, response: TranscriptEntry | undefined) {
  if (entry.event === "request") {
    return {
      what: (
        <>
          <span class="method">{show(entry.method)}</span> <span class="muted">{show(entry.verb)}</span>{" "}
          <code class="break">{show(entry.path)}</code>
        </>
      ),
      extra: response ? (
        <span title={response.error ? show(response.error) : undefined}>
          {show(response.code)} · {formatBytes(response.bytes)}
          {typeof response.ms === "number" ? ` · ${response.ms} ms` : ""}
          {response.masked ? " · masked" : ""}
          {response.error ? <span class="bad-text"> · {show(response.error)}</span> : null}
        </span>
      ) : entry.body_bytes !== undefined ? (
        <span class="muted">body {formatBytes(entry.body_bytes)}</span>
      ) : null,
    };
  }
  const { t: _t, event: _e, action: _a, reasons: _r, decision_id: _d, ...rest } = entry;
  if (entry.event === "tunnel") {
    return {
      what: (
        <>
          {show(entry.subresource)} <span class="muted">over {show(entry.upgrade)}</span>
          {entry.protocol ? <span class="muted"> ({show(entry.protocol)})</span> : null}
        </>
      ),
      extra: (
        <span>
          {formatBytes(entry.bytes_to_cluster)} in, {formatBytes(entry.bytes_from_cluster)} out
          {entry.recording ? <span class="muted"> · not recorded: {show(entry.recording)}</span> : null}
        </span>
      ),
    };
  }
  return {
    what: (
      <span>
        {Object.entries(rest)
          .filter(([, v]) => v !== undefined && v !== null)
          .map(([k, v]) => `${k}: ${show(v)}`)
          .join(" · ")}
      </span>
    ),
    extra: null,
  };
}

function Requests({
  entries,
  startedAt,
}: {
  entries: Array<{ entry: TranscriptEntry; response: TranscriptEntry | undefined }>;
  startedAt: number | null;
}) {
  return (
    <li class="entry">
      <div class="table-wrap">
        <table class="requests" aria-label="Requests">
          <thead>
            <tr>
              <th scope="col">Time</th>
              <th scope="col">Event</th>
              <th scope="col">Request</th>
              <th scope="col">Action</th>
              <th scope="col">Reasons</th>
              <th scope="col">Response</th>
            </tr>
          </thead>
          <tbody>
            {entries.map(({ entry, response }, i) => {
              const { what, extra } = requestCells(entry, response);
              return (
                <tr key={i}>
                  <td class="nowrap">
                    <At t={entry.t} startedAt={startedAt} />
                  </td>
                  <td class="nowrap">{show(entry.event)}</td>
                  <td>{what}</td>
                  <td>{typeof entry.action === "string" ? <ActionBadge action={entry.action} /> : null}</td>
                  <td>
                    <ReasonCodes reasons={normalizeReasons(entry.reasons)} />
                  </td>
                  <td>{extra}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
    </li>
  );
}

export function TranscriptLog({
  transcript,
  startedAt,
}: {
  transcript: Transcript;
  decisions: DecisionRow[];
  startedAt: number | null;
}) {
  const list = blocks(transcript.entries);
  if (list.length === 0) return <p class="empty">The transcript has no entries.</p>;
  return (
    <ol class="log">
      {list.map((b, i) => {
        const key = `${i}-${b.kind}`;
        if (b.kind === "statement")
          return <Statement key={key} entry={b.entry} result={b.result} startedAt={startedAt} />;
        if (b.kind === "requests") return <Requests key={key} entries={b.entries} startedAt={startedAt} />;
        return <Generic key={key} entry={b.entry} startedAt={startedAt} />;
      })}
    </ol>
  );
}
