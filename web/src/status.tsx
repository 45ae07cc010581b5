// The gateway's status: the policy bundle in use (revision, when it was loaded, the last rejection and why),
// the audit spool and each sink, each listener, and every other component (GET /v1/status, /v1/status/bundle).
// Refreshed every 5 s while the page is visible.
import { useEffect, useRef, useState } from "preact/hooks";
import { api, type BundleStatus, type ComponentStatus, messageOf, type StatusSnapshot } from "./api.js";
import { formatBytes, relative, show } from "./format.js";
import { ErrorBox, Fields, Loading, PageHeading, StateBadge, Time, useTitle } from "./ui.js";

const REFRESH_MS = 5000;

interface Loaded {
  status: StatusSnapshot;
  bundle: BundleStatus;
  at: number;
}

export function StatusPage() {
  useTitle("Status");
  const [loaded, setLoaded] = useState<Loaded | null>(null);
  const [error, setError] = useState<string | null>(null);
  const inFlight = useRef(false);

  const refresh = async () => {
    if (inFlight.current) return;
    inFlight.current = true;
    try {
      const [status, bundle] = await Promise.all([api.status(), api.bundle()]);
      setLoaded({ status, bundle, at: Date.now() });
      setError(null);
    } catch (err) {
      setError(messageOf(err));
    } finally {
      inFlight.current = false;
    }
  };

  useEffect(() => {
    void refresh();
    const timer = setInterval(() => {
      if (document.visibilityState === "visible") void refresh();
    }, REFRESH_MS);
    const onVisible = () => {
      if (document.visibilityState === "visible") void refresh();
    };
    document.addEventListener("visibilitychange", onVisible);
    return () => {
      clearInterval(timer);
      document.removeEventListener("visibilitychange", onVisible);
    };
  }, []);

  return (
    <>
      <div class="title-row">
        <PageHeading>Status</PageHeading>
        {loaded ? (
          <span class="overall">
            <StateBadge state={loaded.status.state} />{" "}
            <strong>{loaded.status.ready ? "ready" : "not ready"}</strong>
          </span>
        ) : null}
        <span class="spacer" />
        <span class="muted small">
          {loaded ? `Updated ${new Date(loaded.at).toLocaleTimeString()} · ` : ""}refreshes every 5 s
        </span>
        <button type="button" class="button-small" onClick={() => void refresh()}>
          Refresh
        </button>
      </div>
      {error ? <ErrorBox error={error} /> : null}
      {!loaded && !error ? <Loading what="Loading the status" /> : null}
      {loaded ? <StatusView status={loaded.status} bundle={loaded.bundle} /> : null}
    </>
  );
}

function group(components: Record<string, ComponentStatus>) {
  const entries = Object.entries(components);
  const pick = (test: (name: string) => boolean) => entries.filter(([n]) => test(n));
  return {
    policy: pick((n) => n === "engine" || n.startsWith("bundle:")),
    spool: components["audit.spool"],
    sinks: pick((n) => n.startsWith("audit.sink:")),
    listeners: pick((n) => n.startsWith("listener:")),
    other: pick(
      (n) =>
        n !== "engine" &&
        !n.startsWith("bundle:") &&
        n !== "audit.spool" &&
        !n.startsWith("audit.sink:") &&
        !n.startsWith("listener:"),
    ),
  };
}

const detail = (c: ComponentStatus | undefined, key: string): unknown => c?.details?.[key];
const num = (v: unknown): number | null => (typeof v === "number" && Number.isFinite(v) ? v : null);

function StatusView({ status, bundle }: { status: StatusSnapshot; bundle: BundleStatus }) {
  const g = group(status.components);
  return (
    <div class="status-grid">
      <section aria-labelledby="h-bundle" class="card">
        <h2 id="h-bundle">Policy bundle</h2>
        {bundle.revision === null ? (
          <div class="notice notice-bad">
            <p>No policy bundle is loaded: every command is blocked.</p>
          </div>
        ) : null}
        <Fields
          entries={[
            [
              "Active revision",
              bundle.revision ? (
                <code class="break">{bundle.revision}</code>
              ) : (
                <span class="muted">none</span>
              ),
            ],
            [
              "Loaded",
              <span key="l">
                <Time iso={bundle.loaded_at} />
                {bundle.loaded_at ? <span class="muted"> ({relative(bundle.loaded_at)})</span> : null}
              </span>,
            ],
            ["Source", bundle.source ? <span class="break">{bundle.source}</span> : "—"],
            ["Activations since start", String(bundle.activations)],
            [
              "Last rejection",
              bundle.last_error ? (
                <span class="bad-text">
                  {bundle.last_error.message}{" "}
                  <span class="muted">
                    (<Time iso={bundle.last_error.at} />)
                  </span>
                </span>
              ) : (
                <span class="muted">none</span>
              ),
            ],
          ]}
        />
        {g.policy.length ? <ComponentTable label="Policy components" rows={g.policy} /> : null}
      </section>

      <section aria-labelledby="h-listeners" class="card">
        <h2 id="h-listeners">Listeners</h2>
        {g.listeners.length === 0 ? (
          <p class="muted">No listeners are reported.</p>
        ) : (
          <ComponentTable label="Listeners" rows={g.listeners} strip="listener:" />
        )}
      </section>

      <section aria-labelledby="h-audit" class="card card-wide">
        <h2 id="h-audit">Audit trail</h2>
        {g.spool ? <Spool c={g.spool} /> : <p class="muted">No audit spool is reported.</p>}
        <h3>Sinks</h3>
        {g.sinks.length === 0 ? (
          <p class="muted">No sinks are configured: the spool is the audit store.</p>
        ) : (
          <div class="table-wrap">
            <table aria-label="Audit sinks">
              <thead>
                <tr>
                  <th scope="col">Sink</th>
                  <th scope="col">State</th>
                  <th scope="col">Behind</th>
                  <th scope="col">Failures</th>
                  <th scope="col">Last shipped</th>
                  <th scope="col">Message</th>
                </tr>
              </thead>
              <tbody>
                {g.sinks.map(([name, c]) => (
                  <tr key={name}>
                    <th scope="row">
                      {name.slice("audit.sink:".length)}
                      {detail(c, "sink") ? (
                        <span class="muted small"> ({show(detail(c, "sink"))})</span>
                      ) : null}
                    </th>
                    <td>
                      <StateBadge state={c.state} />
                    </td>
                    <td>{num(detail(c, "lag")) ?? "—"}</td>
                    <td>{num(detail(c, "failures")) ?? "—"}</td>
                    <td class="nowrap">
                      <Time iso={(detail(c, "last_success") as string | null) ?? null} />
                    </td>
                    <td>{c.message ?? (detail(c, "last_error") ? show(detail(c, "last_error")) : "")}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </section>

      <section aria-labelledby="h-other" class="card card-wide">
        <h2 id="h-other">Other components</h2>
        {g.other.length === 0 ? (
          <p class="muted">None.</p>
        ) : (
          <ComponentTable label="Other components" rows={g.other} />
        )}
      </section>
    </div>
  );
}

function Spool({ c }: { c: ComponentStatus }) {
  const used = num(detail(c, "used_bytes"));
  const max = num(detail(c, "max_bytes"));
  return (
    <div class="spool">
      <p>
        <strong>Spool</strong> <StateBadge state={c.state} />
        {c.message ? <span> {c.message}</span> : null}
      </p>
      {used !== null && max !== null && max > 0 ? (
        <p class="meter-row">
          <label for="spool-meter">Used</label>{" "}
          <meter id="spool-meter" min={0} max={max} low={max * 0.6} high={max * 0.8} optimum={0} value={used}>
            {Math.round((used / max) * 100)} %
          </meter>{" "}
          <span>
            {formatBytes(used)} of {formatBytes(max)} ({Math.round((used / max) * 100)} %)
          </span>
        </p>
      ) : null}
      <Fields
        entries={[
          [
            "Directory",
            <span key="d" class="break">
              {show(detail(c, "dir")) || "—"}
            </span>,
          ],
          ["Segments", show(detail(c, "segments")) || "—"],
          ["Last record", show(detail(c, "last_seq")) || "—"],
        ]}
      />
    </div>
  );
}

function DetailsOf({ c }: { c: ComponentStatus }) {
  const entries = Object.entries(c.details ?? {}).filter(
    ([, v]) => v !== null && v !== undefined && v !== "",
  );
  if (entries.length === 0) return null;
  return (
    <details class="component-details">
      <summary>Details</summary>
      <dl class="kv">
        {entries.map(([k, v]) => (
          <div key={k}>
            <dt>{k}</dt>
            <dd>{typeof v === "object" ? <code>{show(v)}</code> : show(v)}</dd>
          </div>
        ))}
      </dl>
    </details>
  );
}

function ComponentTable({
  label,
  rows,
  strip,
}: {
  label: string;
  rows: Array<[string, ComponentStatus]>;
  strip?: string;
}) {
  return (
    <div class="table-wrap">
      <table aria-label={label} class="components">
        <thead>
          <tr>
            <th scope="col">Component</th>
            <th scope="col">State</th>
            <th scope="col">Message</th>
          </tr>
        </thead>
        <tbody>
          {rows.map(([name, c]) => (
            <tr key={name}>
              <th scope="row">{strip && name.startsWith(strip) ? name.slice(strip.length) : name}</th>
              <td>
                <StateBadge state={c.state} />
              </td>
              <td>
                {c.message ?? <span class="muted">—</span>}
                <DetailsOf c={c} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
