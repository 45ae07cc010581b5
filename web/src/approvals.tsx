// Approvals: the pending list (live), the history of decided requests, and one request in detail — exactly what
// will run, who asks through which delegation chain, why the policy wants approval, the votes so far — with the
// Approve and Deny buttons. The buttons are disabled where the gateway would refuse anyway, but the gateway
// decides: whatever it answers is shown next to them.
import type { ComponentChildren } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { ApiError, type Approval, type ApprovalWithVotes, api, type Me, messageOf } from "./api.js";
import { chainOf, chainText, firstLine, formatSpan, formatTime, relative, truncate } from "./format.js";
import { announce, approvals, changes, loadHistory, upsert } from "./live.js";
import { href, navigate, type Route } from "./router.js";
import { useNow, useStore } from "./store.js";
import {
  Age,
  Chain,
  ErrorBox,
  Fields,
  Loading,
  PageHeading,
  ReasonCodes,
  StatusBadge,
  Time,
  useAsync,
  useTitle,
} from "./ui.js";

type Tab = "pending" | "history";

export function ApprovalsPage({ route }: { route: Route }) {
  const tab: Tab = route.params.get("tab") === "history" ? "history" : "pending";
  const state = useStore(approvals);
  useTitle(tab === "history" ? "Approval history" : "Approvals");
  const tabs = useRef<Record<Tab, HTMLButtonElement | null>>({ pending: null, history: null });

  const select = (t: Tab, focus = false) => {
    navigate(t === "history" ? href(["approvals"], { tab: "history" }) : href(["approvals"]), {
      replace: true,
    });
    if (focus) tabs.current[t]?.focus();
  };
  const onKey = (e: KeyboardEvent) => {
    if (e.key === "ArrowRight" || e.key === "ArrowLeft" || e.key === "Home" || e.key === "End") {
      e.preventDefault();
      const next: Tab =
        e.key === "Home"
          ? "pending"
          : e.key === "End"
            ? "history"
            : tab === "pending"
              ? "history"
              : "pending";
      select(next, true);
    }
  };

  return (
    <>
      <PageHeading>Approvals</PageHeading>
      <div class="tabs" role="tablist" aria-label="Approval requests">
        <button
          type="button"
          role="tab"
          id="tab-pending"
          aria-controls="panel-pending"
          aria-selected={tab === "pending"}
          tabIndex={tab === "pending" ? 0 : -1}
          ref={(el) => {
            tabs.current.pending = el;
          }}
          onClick={() => select("pending")}
          onKeyDown={onKey}
        >
          Pending {state.pendingLoaded ? <span class="count">{state.pending.length}</span> : null}
        </button>
        <button
          type="button"
          role="tab"
          id="tab-history"
          aria-controls="panel-history"
          aria-selected={tab === "history"}
          tabIndex={tab === "history" ? 0 : -1}
          ref={(el) => {
            tabs.current.history = el;
          }}
          onClick={() => select("history")}
          onKeyDown={onKey}
        >
          History
        </button>
      </div>
      {tab === "pending" ? (
        <div role="tabpanel" id="panel-pending" aria-labelledby="tab-pending">
          <PendingList />
        </div>
      ) : (
        <div role="tabpanel" id="panel-history" aria-labelledby="tab-history">
          <History />
        </div>
      )}
    </>
  );
}

function PendingList() {
  const state = useStore(approvals);
  const now = useNow();
  if (!state.pendingLoaded) return <Loading what="Loading pending requests" />;
  return (
    <>
      {state.pendingError ? <ErrorBox error={state.pendingError} /> : null}
      {state.pending.length === 0 && !state.pendingError ? (
        <p class="empty">Nothing is waiting for approval. New requests appear here as they arrive.</p>
      ) : null}
      <ul class="cards" aria-label="Pending approvals">
        {state.pending.map((a) => (
          <PendingItem key={a.id} a={a} now={now} />
        ))}
      </ul>
    </>
  );
}

function PendingItem({ a, now }: { a: Approval; now: number }) {
  const line = firstLine(a.command.text);
  const multi = a.command.text.trim().includes("\n");
  const overdue = new Date(a.expires_at).getTime() <= now;
  return (
    <li class="card approval-item">
      <div class="item-head">
        <a class="stretched" href={href(["approvals", a.id])}>
          <code>
            {truncate(line, 140)}
            {multi ? " …" : ""}
          </code>
        </a>
        <span class="muted small nowrap">
          <Age iso={a.created_at} now={now} />
        </span>
      </div>
      <div class="item-meta">
        <span>
          <strong>{a.resource}</strong> <span class="muted">· {a.protocol}</span>
        </span>
        <span>
          <span class="muted">by </span>
          <Chain chain={chainOf(a.requester)} />
        </span>
        <ReasonCodes reasons={a.reasons} />
        <span class="votes">
          {a.approvals} of {a.rule.min_approvals} approvals
        </span>
        <span class={overdue ? "muted small" : "small"}>
          {overdue ? "expiring" : `expires ${relative(a.expires_at, now)}`}
        </span>
      </div>
    </li>
  );
}

function History() {
  const state = useStore(approvals);
  const [loadingMore, setLoadingMore] = useState(false);
  useEffect(() => {
    if (state.history === null) void loadHistory();
  }, [state.history]);
  if (state.history === null) return <Loading what="Loading the history" />;
  const more = async () => {
    setLoadingMore(true);
    await loadHistory(true);
    setLoadingMore(false);
  };
  return (
    <>
      {state.historyError ? <ErrorBox error={state.historyError} retry={() => void loadHistory()} /> : null}
      {state.history.length === 0 && !state.historyError ? (
        <p class="empty">No decided requests yet.</p>
      ) : (
        <div class="table-wrap">
          <table aria-label="Approval history">
            <thead>
              <tr>
                <th scope="col">Status</th>
                <th scope="col">Command</th>
                <th scope="col">Resource</th>
                <th scope="col">Requested by</th>
                <th scope="col">Requested</th>
                <th scope="col">Decided</th>
                <th scope="col">Votes</th>
              </tr>
            </thead>
            <tbody>
              {state.history.map((a) => (
                <tr key={a.id}>
                  <td>
                    <StatusBadge status={a.status} />
                  </td>
                  <td class="cmd-cell">
                    <a href={href(["approvals", a.id])}>
                      <code>{truncate(firstLine(a.command.text), 90)}</code>
                    </a>
                  </td>
                  <td>
                    {a.resource} <span class="muted small">{a.protocol}</span>
                  </td>
                  <td>
                    <Chain chain={chainOf(a.requester)} />
                  </td>
                  <td class="nowrap">
                    <Time iso={a.created_at} seconds={false} />
                  </td>
                  <td class="nowrap">
                    <Time iso={a.decided_at} seconds={false} />
                  </td>
                  <td class="nowrap">
                    {a.approvals} of {a.rule.min_approvals}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {state.historyNextOffset !== null ? (
        <p>
          <button type="button" onClick={more} disabled={loadingMore}>
            Load more
          </button>
        </p>
      ) : null}
    </>
  );
}

/** Why the current user may not vote, or null when the gateway might accept the vote. */
function cannotVote(me: Me | null, a: ApprovalWithVotes): string | null {
  if (a.status !== "pending") return `This request is ${a.status}: it takes no more votes.`;
  if (!me) return null;
  const mine = new Set([me.identity.sub, ...me.identity.actors.map((x) => x.sub)]);
  const theirs = [a.requester.sub, ...chainOf(a.requester)];
  const shared = theirs.find((s) => mine.has(s));
  if (shared !== undefined)
    return `You cannot vote on this request: ${shared} took part in it, and nobody in the requester's delegation chain may approve or deny it.`;
  return null;
}

/** A note that does not disable the buttons (the gateway has the last word). */
function voteHint(me: Me | null, a: ApprovalWithVotes): string | null {
  if (!me || a.status !== "pending") return null;
  if (a.votes.some((v) => v.approver.sub === me.identity.sub))
    return "You have already voted on this request.";
  if (!a.rule.groups.some((g) => me.identity.groups.includes(g)))
    return `You are in none of the approver groups (${a.rule.groups.join(", ")}): the gateway will likely refuse your vote.`;
  return null;
}

export function ApprovalDetail({ id, me }: { id: string; me: Me | null }) {
  const { data, error, loading, reload } = useAsync(() => api.approval(id), id);
  const [current, setCurrent] = useState<ApprovalWithVotes | null>(null);
  const changed = useStore(changes)[id] ?? 0;
  const busy = useRef(false);
  useEffect(() => setCurrent(data ?? null), [data]);
  // An event moved this request (a vote, a decision, its expiry): read it again for the votes.
  useEffect(() => {
    if (changed > 0 && !busy.current) reload(true);
  }, [changed]);
  const a = current;
  useTitle(a ? `Approval: ${truncate(firstLine(a.command.text), 40)} on ${a.resource}` : "Approval request");

  if (loading && !a) return <Loading what="Loading the request" />;
  if (error && !a)
    return (
      <>
        <p class="crumbs">
          <a href="#/approvals">← All pending requests</a>
        </p>
        <PageHeading>Approval request</PageHeading>
        <ErrorBox error={error} retry={() => reload()} />
      </>
    );
  if (!a) return null;

  return (
    <>
      <p class="crumbs">
        {a.status === "pending" ? (
          <a href="#/approvals">← All pending requests</a>
        ) : (
          <a href="#/approvals?tab=history">← Approval history</a>
        )}
      </p>
      <div class="title-row">
        <PageHeading>
          Approval request <span class="muted">on</span> {a.resource}
        </PageHeading>
        <StatusBadge status={a.status} />
      </div>
      <div class="detail-grid">
        <div class="detail-main">
          <section aria-labelledby="h-command">
            <h2 id="h-command">What will run</h2>
            {/* biome-ignore lint/a11y/useSemanticElements: the exact text stays a <pre>, named as a region */}
            <pre class="command" role="region" aria-label="Command">
              {a.command.text}
            </pre>
            <p class="small muted">
              Fingerprint <code class="break">{a.command.fingerprint}</code> — an approval grants this
              fingerprint on {a.resource} to this requester for {formatSpan(a.rule.ttl_s)}.
            </p>
            <Fields
              entries={[
                ["Resource", <strong key="r">{a.resource}</strong>],
                ["Protocol", a.protocol],
                [
                  "Requested",
                  <span key="c">
                    <Time iso={a.created_at} /> <span class="muted">({relative(a.created_at)})</span>
                  </span>,
                ],
                a.status === "pending"
                  ? [
                      "Expires",
                      <span key="e">
                        <Time iso={a.expires_at} /> <span class="muted">({relative(a.expires_at)})</span>
                      </span>,
                    ]
                  : ["Decided", <Time key="d" iso={a.decided_at} />],
                ...(a.grant_expires_at
                  ? ([["Grant valid until", <Time key="g" iso={a.grant_expires_at} />]] as Array<
                      [string, ComponentChildren]
                    >)
                  : []),
              ]}
            />
          </section>

          <section aria-labelledby="h-who">
            <h2 id="h-who">Who asks</h2>
            <ol class="chain-list">
              {(a.requester.actors.length > 0 ? a.requester.actors : [{ sub: a.requester.sub }]).map(
                (actor, i, all) => (
                  <li key={`${i}-${actor.sub}`}>
                    <strong>{actor.sub}</strong>
                    {actor.client_id ? <span class="muted"> via client {actor.client_id}</span> : null}
                    {i === 0 ? <span class="tag">original requester</span> : null}
                    {i === all.length - 1 && all.length > 1 ? (
                      <span class="tag">presented the token</span>
                    ) : null}
                  </li>
                ),
              )}
            </ol>
            <Fields
              entries={[
                ["Email", a.requester.email ?? <span class="muted">—</span>],
                ["Groups", a.requester.groups.length ? a.requester.groups.join(", ") : "—"],
                ["Token client", a.requester.client_id ?? "—"],
                [
                  "Issuer",
                  <span key="i" class="break">
                    {a.requester.iss}
                  </span>,
                ],
              ]}
            />
          </section>

          <section aria-labelledby="h-why">
            <h2 id="h-why">Why it needs approval</h2>
            <ul class="reasons">
              {a.reasons.map((r) => (
                <li key={r.code}>
                  <code>{r.code}</code> {r.message}
                </li>
              ))}
            </ul>
            <Fields
              entries={[
                ["Approver groups", a.rule.groups.join(", ")],
                ["Approvals needed", String(a.rule.min_approvals)],
                ["Grant lasts", `${formatSpan(a.rule.ttl_s)} (${a.rule.ttl_s} s)`],
                [
                  "Decision",
                  <a
                    key="d"
                    class="break"
                    href={href(["audit"], { session: a.session_id, decision: a.decision_id })}
                  >
                    {a.decision_id}
                  </a>,
                ],
                [
                  "Session",
                  <a key="s" class="break" href={href(["sessions", a.session_id])}>
                    {a.session_id}
                  </a>,
                ],
              ]}
            />
          </section>
        </div>

        <aside class="detail-side" aria-label="Decide">
          <VoteForm a={a} me={me} busy={busy} onDone={setCurrent} />
          <section aria-labelledby="h-votes">
            <h2 id="h-votes">
              Votes{" "}
              <span class="muted small">
                {a.approvals} of {a.rule.min_approvals} approvals
              </span>
            </h2>
            {a.votes.length === 0 ? (
              <p class="muted">No votes yet.</p>
            ) : (
              <ul class="votes-list">
                {a.votes.map((v) => (
                  <li key={v.approver.sub}>
                    <div>
                      <strong>
                        <Chain chain={chainOf(v.approver)} />
                      </strong>{" "}
                      <span class={`badge badge-${v.vote === "approve" ? "ok" : "bad"}`}>
                        {v.vote === "approve" ? "approved" : "denied"}
                      </span>
                    </div>
                    {v.comment ? <blockquote>{v.comment}</blockquote> : null}
                    <div class="small muted">
                      <Time iso={v.created_at} />
                    </div>
                  </li>
                ))}
              </ul>
            )}
          </section>
        </aside>
      </div>
    </>
  );
}

function VoteForm({
  a,
  me,
  busy,
  onDone,
}: {
  a: ApprovalWithVotes;
  me: Me | null;
  busy: { current: boolean };
  onDone: (a: ApprovalWithVotes) => void;
}) {
  const [comment, setComment] = useState("");
  const [sending, setSending] = useState<"approve" | "deny" | null>(null);
  const [failure, setFailure] = useState<{ code: string; message: string } | null>(null);
  const blocked = cannotVote(me, a);
  const hint = voteHint(me, a);

  const send = async (vote: "approve" | "deny") => {
    setSending(vote);
    setFailure(null);
    busy.current = true;
    try {
      const updated = await api.vote(a.id, vote, comment);
      onDone(updated);
      const { votes: _votes, ...plain } = updated;
      upsert(plain);
      setComment("");
      const what = `${vote === "approve" ? "You approved" : "You denied"} the request from ${chainText(chainOf(a.requester))} on ${a.resource}`;
      announce(
        updated.status === "pending"
          ? `${what}: ${updated.approvals} of ${updated.rule.min_approvals} approvals.`
          : `${what}: it is now ${updated.status}.`,
      );
    } catch (err) {
      setFailure(
        err instanceof ApiError
          ? { code: err.code, message: err.message }
          : { code: "", message: messageOf(err) },
      );
    } finally {
      busy.current = false;
      setSending(null);
    }
  };

  return (
    <section aria-labelledby="h-decide" class="card vote-card">
      <h2 id="h-decide">Your decision</h2>
      <form
        onSubmit={(e) => {
          e.preventDefault();
        }}
      >
        <label for="vote-comment">Comment</label>
        <textarea
          id="vote-comment"
          name="comment"
          rows={3}
          maxLength={2000}
          value={comment}
          disabled={blocked !== null}
          aria-describedby={blocked ? "vote-why" : undefined}
          onInput={(e) => setComment((e.currentTarget as HTMLTextAreaElement).value)}
          placeholder="Optional: why you approve or deny"
        />
        <div class="buttons">
          <button
            type="button"
            class="button-approve"
            disabled={blocked !== null || sending !== null}
            aria-describedby={blocked ? "vote-why" : failure ? "vote-error" : undefined}
            onClick={() => void send("approve")}
          >
            Approve
          </button>
          <button
            type="button"
            class="button-deny"
            disabled={blocked !== null || sending !== null}
            aria-describedby={blocked ? "vote-why" : failure ? "vote-error" : undefined}
            onClick={() => void send("deny")}
          >
            Deny
          </button>
          {sending ? <span class="muted small">Sending…</span> : null}
        </div>
        <div id="vote-error" role="alert" class={failure ? "vote-error" : undefined}>
          {failure ? (
            <>
              {failure.message}
              {failure.code ? <span class="muted small"> ({failure.code})</span> : null}
            </>
          ) : null}
        </div>
        {blocked ? (
          <p id="vote-why" class="muted small">
            {blocked}
          </p>
        ) : hint ? (
          <p class="muted small">{hint}</p>
        ) : null}
        {a.status === "pending" ? (
          <p class="small muted">
            {a.rule.min_approvals === 1
              ? `One approval from ${a.rule.groups.join(" or ")} approves it`
              : `${a.rule.min_approvals} approvals from ${a.rule.groups.join(" or ")} approve it`}
            ; one deny denies it. Decide before {formatTime(a.expires_at, false)}.
          </p>
        ) : null}
      </form>
    </section>
  );
}
