// The audit trail: a search form whose state is the URL (`#/audit?identity=alice&q=delete`, so a search is a
// link), the decisions it finds, newest first, and "Load more" with the server's cursor.
import { useEffect, useRef, useState } from "preact/hooks";
import { api, DECISION_FILTERS, type DecisionFilter, type DecisionPage, type DecisionRow } from "./api.js";
import { firstLine, isoToLocalInput, localInputToIso, shortId, truncate } from "./format.js";
import { href, navigate, type Route } from "./router.js";
import { ActionBadge, Chain, ErrorBox, Loading, PageHeading, ReasonCodes, Time, useTitle } from "./ui.js";

type Filters = Partial<Record<DecisionFilter, string>>;

const PROTOCOLS = ["postgres", "ssh", "kubernetes"];
const ACTIONS = ["allow", "mask", "block", "approve"];

function filtersOf(params: URLSearchParams): Filters {
  const f: Filters = {};
  for (const k of DECISION_FILTERS) {
    const v = params.get(k);
    if (v) f[k] = v;
  }
  return f;
}

interface Results {
  key: string;
  rows: DecisionRow[];
  next: string | null;
  source: string;
  scanned: number;
}

export function AuditPage({ route }: { route: Route }) {
  const filters = filtersOf(route.params);
  const highlight = route.params.get("decision");
  const key = JSON.stringify(filters);
  const [nonce, setNonce] = useState(0);
  const [results, setResults] = useState<Results | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [loading, setLoading] = useState(false);
  const generation = useRef(0);
  useTitle(Object.keys(filters).length ? "Audit search" : "Audit");

  const load = async (before: string | null) => {
    const mine = ++generation.current;
    setLoading(true);
    setError(null);
    try {
      const page: DecisionPage = await api.decisions({ ...filters, ...(before ? { before } : {}) });
      if (mine !== generation.current) return;
      setResults((prev) => ({
        key,
        rows: before && prev ? [...prev.rows, ...page.decisions] : page.decisions,
        next: page.next_cursor,
        source: page.source,
        scanned: page.scanned,
      }));
    } catch (err) {
      if (mine === generation.current) setError(err);
    } finally {
      if (mine === generation.current) setLoading(false);
    }
  };

  useEffect(() => {
    setResults(null);
    void load(null);
  }, [key, nonce]);

  // Bring the decision a link pointed at into view once it is on the page.
  useEffect(() => {
    if (!highlight || !results) return;
    document.getElementById(`decision-${highlight}`)?.scrollIntoView({ block: "center" });
  }, [highlight, results]);

  const search = (next: Filters) => {
    const target = href(["audit"], next);
    if (target === location.hash) setNonce((n) => n + 1);
    else navigate(target);
  };

  return (
    <>
      <PageHeading>Audit</PageHeading>
      <SearchForm key={key} initial={filters} onSearch={search} />
      <section aria-labelledby="h-results" class="results">
        <div class="results-head">
          <h2 id="h-results">Decisions</h2>
          {results ? (
            <p class="muted small" aria-live="off">
              {results.rows.length} shown{results.next ? " (more available)" : ""} · from the{" "}
              {results.source === "postgres" ? "PostgreSQL audit table" : "local spool"} · {results.scanned}{" "}
              records scanned
            </p>
          ) : null}
        </div>
        {error ? <ErrorBox error={error} retry={() => void load(results?.next ?? null)} /> : null}
        {!results && loading ? <Loading what="Searching" /> : null}
        {results && results.rows.length === 0 ? <p class="empty">No decision matches this search.</p> : null}
        {results && results.rows.length > 0 ? (
          <DecisionsTable rows={results.rows} label="Decisions" highlight={highlight} />
        ) : null}
        {results?.next ? (
          <p>
            <button type="button" disabled={loading} onClick={() => void load(results.next)}>
              Load more
            </button>
            {loading ? <span class="muted small"> Loading…</span> : null}
          </p>
        ) : null}
      </section>
    </>
  );
}

function SearchForm({ initial, onSearch }: { initial: Filters; onSearch: (f: Filters) => void }) {
  const [f, setF] = useState<Filters>({
    ...initial,
    since: isoToLocalInput(initial.since),
    until: isoToLocalInput(initial.until),
  });
  const bind = (k: DecisionFilter) => ({
    id: `f-${k}`,
    name: k,
    value: f[k] ?? "",
    onInput: (e: Event) => {
      const value = (e.currentTarget as HTMLInputElement | HTMLSelectElement).value;
      setF((prev) => ({ ...prev, [k]: value }));
    },
  });
  const submit = (e: Event) => {
    e.preventDefault();
    const out: Filters = {};
    for (const k of DECISION_FILTERS) {
      const v = (f[k] ?? "").trim();
      if (!v) continue;
      out[k] = k === "since" || k === "until" ? localInputToIso(v) : v;
    }
    onSearch(out);
  };
  return (
    <form class="search card" onSubmit={submit} aria-label="Search decisions">
      <div class="search-grid">
        <div class="field">
          <label for="f-identity">Identity</label>
          <input type="text" {...bind("identity")} aria-describedby="f-identity-hint" autoComplete="off" />
          <span id="f-identity-hint" class="hint">
            any link of the delegation chain
          </span>
        </div>
        <div class="field">
          <label for="f-resource">Resource</label>
          <input type="text" {...bind("resource")} autoComplete="off" />
        </div>
        <div class="field">
          <label for="f-protocol">Protocol</label>
          <select {...bind("protocol")}>
            <option value="">any</option>
            {PROTOCOLS.map((p) => (
              <option key={p} value={p}>
                {p}
              </option>
            ))}
          </select>
        </div>
        <div class="field">
          <label for="f-action">Action</label>
          <select {...bind("action")}>
            <option value="">any</option>
            {ACTIONS.map((a) => (
              <option key={a} value={a}>
                {a}
              </option>
            ))}
          </select>
        </div>
        <div class="field">
          <label for="f-reason">Reason code</label>
          <input type="text" {...bind("reason")} placeholder="pg.no_where" autoComplete="off" />
        </div>
        <div class="field">
          <label for="f-since">From</label>
          <input type="datetime-local" {...bind("since")} />
        </div>
        <div class="field">
          <label for="f-until">To</label>
          <input type="datetime-local" {...bind("until")} />
        </div>
        <div class="field field-wide">
          <label for="f-q">Command contains</label>
          <input type="search" {...bind("q")} autoComplete="off" />
        </div>
        <div class="field">
          <label for="f-session">Session</label>
          <input type="text" {...bind("session")} autoComplete="off" spellcheck={false} />
        </div>
      </div>
      <div class="buttons">
        <button type="submit" class="button-primary">
          Search
        </button>
        <a class="button-link" href="#/audit">
          Clear
        </a>
      </div>
    </form>
  );
}

function CommandCell({ row }: { row: DecisionRow }) {
  const text = row.command ?? "";
  const kind = row.command_kind ? <span class="muted small kind">{row.command_kind}</span> : null;
  if (!text) return kind ?? <span class="muted">—</span>;
  const long = text.length > 80 || text.trim().includes("\n");
  if (!long)
    return (
      <>
        {kind}
        <code class="cmd" title={text}>
          {text}
        </code>
      </>
    );
  return (
    <>
      {kind}
      <details class="cmd-details">
        <summary title={truncate(text, 2000)}>
          <code class="cmd">{truncate(firstLine(text), 80)}</code>
          <span class="visually-hidden"> (show the full command)</span>
        </summary>
        <pre>{text}</pre>
      </details>
    </>
  );
}

/** Decision rows as a table; each row links to its session, its approval and the policy revision. */
export function DecisionsTable({
  rows,
  label,
  highlight,
  showSession = true,
}: {
  rows: DecisionRow[];
  label: string;
  highlight?: string | null;
  showSession?: boolean;
}) {
  return (
    <div class="table-wrap">
      <table aria-label={label} class="decisions">
        <thead>
          <tr>
            <th scope="col">Time</th>
            <th scope="col">Who</th>
            <th scope="col">Protocol</th>
            <th scope="col">Resource</th>
            <th scope="col">Action</th>
            <th scope="col">Command</th>
            <th scope="col">Reasons</th>
            <th scope="col">Links</th>
          </tr>
        </thead>
        <tbody>
          {rows.map((r) => (
            <tr
              key={`${r.where?.spool_id}:${r.where?.seq}:${r.decision_id}`}
              id={`decision-${r.decision_id}`}
              class={highlight === r.decision_id ? "highlight" : undefined}
              aria-current={highlight === r.decision_id ? "true" : undefined}
            >
              <td class="nowrap">
                <Time iso={r.timestamp} />
              </td>
              <td>
                <Chain chain={r.identity.chain.length ? r.identity.chain : [r.identity.sub]} />
              </td>
              <td>{r.protocol}</td>
              <td>{r.resource}</td>
              <td>
                <ActionBadge action={r.action} verdict={r.verdict} />
              </td>
              <td class="cmd-cell">
                <CommandCell row={r} />
              </td>
              <td>
                <ReasonCodes reasons={r.reasons ?? []} />
              </td>
              <td class="links">
                {showSession && r.session_id ? (
                  <a href={href(["sessions", r.session_id])} aria-label={`Session ${r.session_id}`}>
                    Session
                  </a>
                ) : null}
                {r.approval_id ? (
                  <a href={href(["approvals", r.approval_id])} aria-label={`Approval ${r.approval_id}`}>
                    Approval
                  </a>
                ) : null}
                {r.revision ? (
                  <a href="#/status" class="rev" title={`policy revision ${r.revision}`}>
                    rev {shortId(r.revision, 7).replace("…", "")}
                  </a>
                ) : null}
                <span
                  class="muted small"
                  title={`spool ${r.where?.spool_id ?? "?"}, record ${r.where?.seq ?? "?"}`}
                >
                  #{r.where?.seq ?? "?"}
                </span>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
