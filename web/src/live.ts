// Shared live state: the pending approvals (kept current by GET /v1/approvals/events, Server-Sent Events), the
// history once loaded, the connection's state, and the announcements read out by the page's status region.
import { ApiError, type Approval, api, messageOf, signIn } from "./api.js";
import { chainOf, chainText, requesterName } from "./format.js";
import { createStore } from "./store.js";

export type Connection = "connecting" | "live" | "reconnecting";

export interface ApprovalsState {
  /** Pending requests, newest first. */
  pending: Approval[];
  pendingLoaded: boolean;
  pendingError: string | null;
  /** Decided requests, newest first; null until the History tab is first opened. */
  history: Approval[] | null;
  historyNextOffset: number | null;
  historyError: string | null;
  connection: Connection;
}

export const approvals = createStore<ApprovalsState>({
  pending: [],
  pendingLoaded: false,
  pendingError: null,
  history: null,
  historyNextOffset: null,
  historyError: null,
  connection: "connecting",
});

/** Requests changed by an event (their id → a counter): the detail view reloads its votes when its id moves. */
export const changes = createStore<Record<string, number>>({});

/** What the status region says. */
export const announcement = createStore<{ text: string; n: number }>({ text: "", n: 0 });

export function announce(text: string): void {
  announcement.update((a) => ({ text, n: a.n + 1 }));
}

const newestFirst = (a: Approval, b: Approval) =>
  b.created_at < a.created_at ? -1 : b.created_at > a.created_at ? 1 : 0;

function upsertInto(list: Approval[], item: Approval): Approval[] {
  const i = list.findIndex((x) => x.id === item.id);
  const next = i >= 0 ? list.map((x) => (x.id === item.id ? item : x)) : [...list, item];
  return next.sort(newestFirst);
}

/** The last state seen of every request, listed or not: an event that changes nothing is not announced. */
const known = new Map<string, { status: string; approvals: number }>();

/** Files a request (from an event, a vote or a reload) under pending or history. */
export function upsert(item: Approval): void {
  known.set(item.id, { status: item.status, approvals: item.approvals });
  approvals.update((s) => {
    const pending =
      item.status === "pending" ? upsertInto(s.pending, item) : s.pending.filter((x) => x.id !== item.id);
    const history =
      s.history === null
        ? null
        : item.status === "pending"
          ? s.history.filter((x) => x.id !== item.id)
          : upsertInto(s.history, item);
    return { ...s, pending, history };
  });
  changes.update((c) => ({ ...c, [item.id]: (c[item.id] ?? 0) + 1 }));
}

export async function loadPending(): Promise<void> {
  try {
    const page = await api.approvals({ status: "pending", limit: 100 });
    for (const a of page.approvals) known.set(a.id, { status: a.status, approvals: a.approvals });
    approvals.update((s) => ({
      ...s,
      pending: [...page.approvals].sort(newestFirst),
      pendingLoaded: true,
      pendingError: null,
    }));
  } catch (err) {
    approvals.update((s) => ({ ...s, pendingLoaded: true, pendingError: messageOf(err) }));
  }
}

/** The first page of the history, or the next one (`more`). */
export async function loadHistory(more = false): Promise<void> {
  const s = approvals.get();
  const offset = more ? (s.historyNextOffset ?? 0) : 0;
  try {
    const page = await api.approvals({ limit: 100, offset });
    const decided = page.approvals.filter((a) => a.status !== "pending");
    for (const a of decided) known.set(a.id, { status: a.status, approvals: a.approvals });
    approvals.update((st) => ({
      ...st,
      history: [...(more && st.history ? st.history : []), ...decided]
        .filter((a, i, all) => all.findIndex((b) => b.id === a.id) === i)
        .sort(newestFirst),
      historyNextOffset: page.next_offset,
      historyError: null,
    }));
  } catch (err) {
    approvals.update((st) => ({ ...st, history: st.history ?? [], historyError: messageOf(err) }));
  }
}

function describe(previous: { status: string } | undefined, next: Approval): string {
  const who = requesterName(next.requester);
  const chain = chainOf(next.requester);
  const via = chain.length > 1 ? ` (${chainText(chain)})` : "";
  if (!previous && next.status === "pending")
    return `New approval request from ${who}${via} on ${next.resource}`;
  switch (next.status) {
    case "approved":
      return `Request from ${who} on ${next.resource} was approved`;
    case "denied":
      return `Request from ${who} on ${next.resource} was denied`;
    case "expired":
      return `Request from ${who} on ${next.resource} expired`;
    default:
      return `Request from ${who} on ${next.resource}: ${next.approvals} of ${next.rule.min_approvals} approvals`;
  }
}

let source: EventSource | null = null;
let retryTimer: ReturnType<typeof setTimeout> | undefined;
let retryMs = 1000;
let wasLive = false;

function onApproval(event: MessageEvent<string>): void {
  let item: Approval;
  try {
    item = JSON.parse(event.data) as Approval;
  } catch {
    return;
  }
  if (!item || typeof item.id !== "string") return;
  const previous = known.get(item.id);
  const unchanged =
    previous !== undefined && previous.status === item.status && previous.approvals === item.approvals;
  upsert(item);
  if (!unchanged) announce(describe(previous, item));
}

/** Opens the event stream; reconnects by itself, and reloads the pending list after a gap. */
export function connect(): void {
  if (source) return;
  clearTimeout(retryTimer);
  const es = new EventSource("/v1/approvals/events"); // same-origin: the session cookie goes along
  source = es;
  es.addEventListener("open", () => {
    retryMs = 1000;
    approvals.update((s) => ({ ...s, connection: "live" }));
    // Anything that changed while we were away: the list again.
    if (wasLive) void loadPending();
    wasLive = true;
  });
  es.addEventListener("approval", onApproval as EventListener);
  es.addEventListener("ping", () => {});
  es.addEventListener("expired", () => {
    es.close();
    source = null;
    signIn();
  });
  es.addEventListener("error", () => {
    approvals.update((s) => ({ ...s, connection: "reconnecting" }));
    if (es.readyState !== EventSource.CLOSED) return; // the browser retries by itself
    // Closed for good (an HTTP error such as 401): find out why, then try again with a backoff.
    es.close();
    source = null;
    api
      .me()
      .then(() => schedule())
      .catch((err) => {
        if (!(err instanceof ApiError) || err.status !== 401) schedule();
      });
  });
}

function schedule(): void {
  clearTimeout(retryTimer);
  retryTimer = setTimeout(connect, retryMs);
  retryMs = Math.min(retryMs * 2, 30_000);
}

export function disconnect(): void {
  clearTimeout(retryTimer);
  source?.close();
  source = null;
}
