// One session: who, where, when and how long; each terminal in an asciinema player beside its command index;
// the transcript as a readable log; the session's decisions. Downloads: each terminal's .cast and the transcript.
import { useEffect, useRef, useState } from "preact/hooks";
import {
  api,
  CONSOLE_HEADER,
  type DecisionRow,
  type MarkerTuple,
  type SessionDetail,
  sessionUrls,
  type Terminal,
} from "./api.js";
import { DecisionsTable } from "./audit.js";
import { chainOf, clock, formatDuration, shortId, show } from "./format.js";
import type { Player } from "./player.js";
import { href } from "./router.js";
import { TranscriptLog } from "./transcript.js";
import {
  ActionBadge,
  Chain,
  ErrorBox,
  Fields,
  Loading,
  PageHeading,
  Time,
  useAsync,
  useTitle,
  Warning,
} from "./ui.js";

interface Summary {
  chain: string[] | null;
  resource: string | null;
  protocol: string | null;
  startedAt: string | null;
  duration: number | null;
  clientAddr: string | null;
  endReason: string | null;
}

function summarize(s: SessionDetail): Summary {
  const entries = s.transcript?.entries ?? [];
  const header = s.transcript?.header ?? {};
  const start = entries.find((e) => e.event === "start");
  const end = entries.find((e) => e.event === "end");
  const identity = start?.identity as { sub: string; actors?: Array<{ sub: string }> } | undefined;
  const oldest = [...(s.decisions ?? [])].sort((a, b) => (a.timestamp < b.timestamp ? -1 : 1))[0];
  let startedAt = typeof header.started_at === "string" ? header.started_at : null;
  if (!startedAt && s.terminals[0]?.header.timestamp)
    startedAt = new Date(s.terminals[0].header.timestamp * 1000).toISOString();
  if (!startedAt && oldest) startedAt = oldest.timestamp;
  const lastT = entries.reduce((m, e) => (typeof e.t === "number" && e.t > m ? e.t : m), 0);
  const termMax = s.terminals.reduce((m, t) => Math.max(m, t.duration ?? 0), 0);
  const duration = typeof end?.t === "number" ? end.t : Math.max(lastT, termMax) || null;
  return {
    chain: identity
      ? chainOf({ sub: identity.sub, actors: identity.actors ?? [] })
      : oldest
        ? oldest.identity.chain.length
          ? oldest.identity.chain
          : [oldest.identity.sub]
        : null,
    resource: typeof start?.resource === "string" ? start.resource : (oldest?.resource ?? null),
    protocol: typeof header.protocol === "string" ? header.protocol : (oldest?.protocol ?? null),
    startedAt,
    duration,
    clientAddr: typeof start?.client_addr === "string" ? start.client_addr : null,
    endReason: end ? show(end.reason) || "ended" : null,
  };
}

function missingText(what: string, parts: number[]): string {
  return `${parts.length === 1 ? "Part" : "Parts"} ${parts.join(", ")} of ${what} ${parts.length === 1 ? "is" : "are"} missing (deleted from the spool, or not shipped yet): what is shown has gaps.`;
}

export function SessionPage({ id }: { id: string }) {
  const { data, error, loading, reload } = useAsync(() => api.session(id), id);
  useTitle(`Session ${shortId(id)}`);
  if (loading && !data) return <Loading what="Loading the session" />;
  if (error || !data)
    return (
      <>
        <PageHeading>Session {shortId(id)}</PageHeading>
        <ErrorBox error={error ?? "no answer"} retry={() => reload()} />
      </>
    );
  const s = summarize(data);
  const decisions = data.decisions ?? [];
  const startedMs = s.startedAt ? new Date(s.startedAt).getTime() : null;
  return (
    <>
      <PageHeading>
        Session <code class="break">{data.session_id}</code>
      </PageHeading>
      <Fields
        entries={[
          ["Who", s.chain ? <Chain key="w" chain={s.chain} /> : "—"],
          ["Resource", s.resource ?? "—"],
          ["Protocol", s.protocol ?? "—"],
          ["Started", <Time key="s" iso={s.startedAt} />],
          ["Duration", formatDuration(s.duration)],
          ...(s.clientAddr ? ([["Client address", s.clientAddr]] as Array<[string, string]>) : []),
          ...(s.endReason ? ([["Ended", s.endReason]] as Array<[string, string]>) : []),
        ]}
      />
      <p class="actions">
        <a href={href(["audit"], { session: data.session_id })}>Search this session's decisions</a>
        {data.transcript ? (
          <a href={sessionUrls.transcript(data.session_id)} download={`${data.session_id}.jsonl`}>
            Export transcript (.jsonl)
          </a>
        ) : null}
      </p>

      {data.terminals.map((t, i) => (
        <TerminalView
          key={t.id}
          sessionId={data.session_id}
          terminal={t}
          n={terminalNumber(t, i)}
          single={data.terminals.length === 1}
          decisions={decisions}
        />
      ))}

      <section aria-label="Transcript" class="transcript">
        <h2>Transcript</h2>
        {data.transcript === null ? (
          <p class="empty">This session has no transcript.</p>
        ) : (
          <>
            {data.transcript.missing_parts.length > 0 ? (
              <Warning>{missingText("the transcript", data.transcript.missing_parts)}</Warning>
            ) : null}
            {!data.transcript.complete ? (
              <Warning>
                The transcript is incomplete: the session may still be running, or its last part was not
                recorded.
              </Warning>
            ) : null}
            <TranscriptLog transcript={data.transcript} decisions={decisions} startedAt={startedMs} />
          </>
        )}
      </section>

      <section aria-labelledby="h-decisions">
        <h2 id="h-decisions">Decisions in this session</h2>
        {decisions.length === 0 ? (
          <p class="empty">No decisions recorded for this session.</p>
        ) : (
          <DecisionsTable rows={decisions} label="Session decisions" showSession={false} />
        )}
      </section>
    </>
  );
}

/** The markers sorted by time (stable): their indexes are the player's marker indexes. */
function sortMarkers(markers: readonly MarkerTuple[]): MarkerTuple[] {
  return markers
    .map((m, i) => ({ m, i }))
    .sort((a, b) => a.m[0] - b.m[0] || a.i - b.i)
    .map(({ m }) => m);
}

/** `<session>/<n>` → n */
function terminalNumber(t: Terminal, index: number): number {
  const n = Number(t.id.slice(t.id.lastIndexOf("/") + 1));
  return Number.isInteger(n) && n > 0 ? n : index + 1;
}

function TerminalView({
  sessionId,
  terminal,
  n,
  single,
  decisions,
}: {
  sessionId: string;
  terminal: Terminal;
  n: number;
  single: boolean;
  decisions: DecisionRow[];
}) {
  const box = useRef<HTMLDivElement>(null);
  const player = useRef<Player | null>(null);
  const [current, setCurrent] = useState<number | null>(null);
  const [failed, setFailed] = useState<string | null>(null);
  const markers = sortMarkers(terminal.markers ?? []);
  const byDecision = new Map(decisions.map((d) => [d.decision_id, d]));
  const url = sessionUrls.cast(sessionId, n);

  useEffect(() => {
    let p: Player | null = null;
    let gone = false;
    import("./player.js")
      .then(({ mountPlayer }) => {
        if (gone || !box.current) return;
        p = mountPlayer(box.current, url, markers, {
          credentials: "same-origin",
          headers: { [CONSOLE_HEADER]: "1" },
        });
        p.addEventListener("marker", ({ index }) => setCurrent(index));
        player.current = p;
      })
      .catch((err: unknown) => setFailed((err as Error).message));
    return () => {
      gone = true;
      p?.dispose();
      player.current = null;
    };
  }, [url, terminal.id]);

  // Jump to the command and play from there (the screen shows what it printed); pause with the player's button.
  const seek = (i: number) => {
    setCurrent(i);
    const p = player.current;
    if (!p) return;
    p.seek({ marker: i })
      .then(() => p.play())
      .catch((err: unknown) => setFailed((err as Error).message));
  };

  const h = terminal.header ?? {};
  const headingId = `h-terminal-${n}`;
  const indexId = `h-index-${n}`;
  return (
    <section aria-labelledby={headingId} class="terminal">
      <div class="title-row">
        <h2 id={headingId}>Terminal {n}</h2>
        <p class="muted small">
          {h.width && h.height ? `${h.width}×${h.height}` : null}
          {h.command ? (
            <>
              {" · "}
              <code>{show(h.command)}</code>
            </>
          ) : null}
          {` · ${formatDuration(terminal.duration)} · ${terminal.events} events`}
          {h.title ? <span class="break"> · {show(h.title)}</span> : null}
        </p>
      </div>
      {terminal.missing_parts?.length ? (
        <Warning>{missingText("this recording", terminal.missing_parts)}</Warning>
      ) : null}
      {!terminal.complete ? (
        <Warning>
          This recording is incomplete: the terminal may still be open, or its last part was lost.
        </Warning>
      ) : null}
      {failed ? <ErrorBox error={`The player failed: ${failed}`} /> : null}
      <div class="player-layout">
        <div class="player" ref={box} />
        <nav class="command-index card" aria-labelledby={indexId}>
          <h3 id={indexId}>Command index</h3>
          {markers.length === 0 ? (
            <p class="muted small">No commands were marked in this recording.</p>
          ) : (
            <ol aria-label={single ? "Command index" : `Command index, terminal ${n}`}>
              {markers.map(([t, label], i) => {
                const d = byDecision.get(label);
                return (
                  <li key={i}>
                    <button
                      type="button"
                      class={current === i ? "marker current" : "marker"}
                      aria-current={current === i ? "step" : undefined}
                      onClick={() => seek(i)}
                    >
                      <span class="t">{clock(t)}</span>
                      <span class="marker-text">
                        {d?.command ? (
                          <>
                            <code class="cmd">{d.command}</code>
                            <ActionBadge action={d.action} />
                            <span class="muted small break">{label}</span>
                          </>
                        ) : (
                          <span class="break">{label}</span>
                        )}
                      </span>
                    </button>
                  </li>
                );
              })}
            </ol>
          )}
        </nav>
      </div>
      <p class="actions">
        <a href={sessionUrls.cast(sessionId, n, true)} download={`${sessionId}-${n}.cast`}>
          Export .cast
        </a>
      </p>
    </section>
  );
}
