// Small shared pieces: badges (always with text, never color alone), times, errors, the page title, and a hook
// for loading data.
import type { ComponentChildren } from "preact";
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { messageOf, type Reason } from "./api.js";
import { chainText, formatTime, relative } from "./format.js";

const ACTION_CLASS: Record<string, string> = {
  allow: "ok",
  mask: "info",
  approve: "warn",
  block: "bad",
};

/** The enforced action as a colored badge with its name; the policy's verdict beside it when it differs. */
export function ActionBadge({ action, verdict }: { action: string; verdict?: string | undefined }) {
  return (
    <span class="badge-group">
      <span class={`badge badge-${ACTION_CLASS[action] ?? "neutral"}`}>{action}</span>
      {verdict && verdict !== action ? <span class="muted small"> (policy: {verdict})</span> : null}
    </span>
  );
}

const STATUS_CLASS: Record<string, string> = {
  pending: "warn",
  approved: "ok",
  denied: "bad",
  expired: "neutral",
};

export function StatusBadge({ status }: { status: string }) {
  return <span class={`badge badge-${STATUS_CLASS[status] ?? "neutral"}`}>{status}</span>;
}

const STATE_CLASS: Record<string, string> = { ok: "ok", warn: "warn", not_ready: "neutral", error: "bad" };
const STATE_TEXT: Record<string, string> = {
  ok: "ok",
  warn: "warning",
  not_ready: "not ready",
  error: "error",
};

export function StateBadge({ state }: { state: string }) {
  return <span class={`badge badge-${STATE_CLASS[state] ?? "neutral"}`}>{STATE_TEXT[state] ?? state}</span>;
}

export function ReasonCodes({ reasons }: { reasons: Reason[] }) {
  if (reasons.length === 0) return <span class="muted">—</span>;
  return (
    <span class="codes">
      {reasons.map((r) => (
        <code key={r.code} title={r.message}>
          {r.code}
        </code>
      ))}
    </span>
  );
}

export function Chain({ chain }: { chain: readonly string[] }) {
  return <span class="chain">{chainText(chain)}</span>;
}

/** A time as local date and time; the exact value in a tooltip and in `datetime`. */
export function Time({ iso, seconds = true }: { iso: string | null | undefined; seconds?: boolean }) {
  if (!iso) return <span class="muted">—</span>;
  return (
    <time dateTime={iso} title={iso}>
      {formatTime(iso, seconds)}
    </time>
  );
}

/** `3 min ago`, with the exact time in a tooltip. */
export function Age({ iso, now }: { iso: string | null | undefined; now: number }) {
  if (!iso) return <span class="muted">—</span>;
  return (
    <time dateTime={iso} title={formatTime(iso)}>
      {relative(iso, now)}
    </time>
  );
}

export function ErrorBox({ error, retry }: { error: unknown; retry?: (() => void) | undefined }) {
  return (
    <div class="notice notice-bad" role="alert">
      <p>{messageOf(error)}</p>
      {retry ? (
        <button type="button" class="button-small" onClick={retry}>
          Try again
        </button>
      ) : null}
    </div>
  );
}

export function Warning({ children }: { children: ComponentChildren }) {
  return <div class="notice notice-warn">{children}</div>;
}

export function Loading({ what = "Loading" }: { what?: string }) {
  return <p class="muted loading">{what}…</p>;
}

/** Sets the document's title for as long as the view is shown. */
export function useTitle(title: string): void {
  useEffect(() => {
    document.title = `${title} — pamgate`;
  }, [title]);
}

/** The page's main heading: the target of the focus move after a navigation. */
export function PageHeading({ children }: { children: ComponentChildren }) {
  return (
    <h1 id="page-heading" tabIndex={-1}>
      {children}
    </h1>
  );
}

export interface Async<T> {
  data: T | undefined;
  error: unknown;
  loading: boolean;
  /** Loads again; `quiet` keeps the current data on screen meanwhile. */
  reload: (quiet?: boolean) => void;
}

/** Runs `load` when `key` changes; a stale answer (an older key's) is dropped. */
export function useAsync<T>(load: () => Promise<T>, key: string): Async<T> {
  const [state, setState] = useState<{ data: T | undefined; error: unknown; loading: boolean }>({
    data: undefined,
    error: undefined,
    loading: true,
  });
  const loadRef = useRef(load);
  loadRef.current = load;
  const generation = useRef(0);
  const run = useCallback((quiet: boolean) => {
    const mine = ++generation.current;
    if (!quiet) setState((s) => ({ data: s.data, error: undefined, loading: true }));
    loadRef.current().then(
      (data) => {
        if (mine === generation.current) setState({ data, error: undefined, loading: false });
      },
      (error: unknown) => {
        if (mine === generation.current)
          setState((s) => ({ data: quiet ? s.data : undefined, error, loading: false }));
      },
    );
  }, []);
  useEffect(() => {
    setState({ data: undefined, error: undefined, loading: true });
    run(false);
  }, [key]);
  return { ...state, reload: (quiet = false) => run(quiet) };
}

/** A definition list of key → value pairs, values of unknown shape shown as text. */
export function Fields({ entries }: { entries: Array<[string, ComponentChildren]> }) {
  return (
    <dl class="fields">
      {entries.map(([k, v]) => (
        <div key={k}>
          <dt>{k}</dt>
          <dd>{v}</dd>
        </div>
      ))}
    </dl>
  );
}
