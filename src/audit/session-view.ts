// What the web console shows of one session: its transcript (statements, requests, SSH channel events) and a
// summary of each of its terminal recordings (`<session>/<n>`: SSH exec and shell, Kubernetes exec and attach),
// with a command index for seeking, all collected in one pass over the records; and a terminal as a .cast file.
//
// Where the command index comes from (src/gateway/sessions.ts, src/proxy/ssh/session-channel.ts,
// src/proxy/kubernetes/tunnel.ts): a shell's typed lines are asciicast "m" markers in the recording; an exec's
// command line is in the transcript entry of its decision (`{"event":"exec","line",…,"decision_id"}`), and the
// terminal's header names that decision in its title (`… exec (decision <id>)`) and the command (`command`: the
// SSH line, or the Kubernetes exec argv joined). The transcript's `{"event":"recording","recording_id"}` entry
// says when a terminal started, not which decision it belongs to.
import pg from "pg";
import type { SpoolRecord } from "./record.js";
import { parseRecordLine } from "./record.js";
import {
  castFile,
  loadRecording,
  loadRecordings,
  type SessionRecording,
  sessionRecordings,
} from "./replay.js";
import { quoteTable } from "./sinks/postgres.js";

export interface SessionView {
  session_id: string;
  transcript: {
    format: string;
    header: Record<string, unknown>;
    entries: Record<string, unknown>[];
    complete: boolean;
    missing_parts: number[];
  } | null;
  /** The session's terminal recordings, by number. */
  terminals: TerminalSummary[];
}

export interface TerminalSummary {
  /** `<session id>/<n>` */
  id: string;
  /** The asciicast v2 header (width, height, timestamp, command, title, env …). */
  header: Record<string, unknown>;
  duration: number | null;
  complete: boolean;
  missing_parts: number[];
  events: number;
  /** [seconds, label]: an exec's command line at 0, then the recording's markers (a shell's typed lines). */
  markers: [number, string][];
}

type Entry = Record<string, unknown>;

const DECISION_IN_TITLE = /\(decision ([^()\s]+)\)$/;

/**
 * The session's transcript and terminals, from one pass over `records()` (a spool, several, or the PostgreSQL
 * table: postgresSessionRecords). Null when the records hold no recording of the session.
 */
export async function loadSessionView(
  records: () => AsyncIterable<SpoolRecord>,
  sessionId: string,
): Promise<SessionView | null> {
  const found = await loadRecordings(records(), sessionRecordings(sessionId));
  if (found.size === 0) return null;
  const own = found.get(sessionId);
  const transcript = own && own.format !== "asciicast-v2" ? own : null;
  const entries = (transcript?.events ?? []).filter(
    (e): e is Entry => e !== null && typeof e === "object" && !Array.isArray(e),
  );
  const terminals: SessionRecording[] = [];
  // A session recorded as a terminal under its own id (not a gateway session) is shown as one.
  if (own && !transcript) terminals.push(own);
  const numbered = [...found.values()]
    .filter((r) => r.session_id !== sessionId)
    .sort((a, b) => terminalNumber(a.session_id) - terminalNumber(b.session_id));
  terminals.push(...numbered);
  return {
    session_id: sessionId,
    transcript: transcript
      ? {
          format: transcript.format,
          header: transcript.header,
          entries,
          complete: transcript.complete,
          missing_parts: transcript.missing_parts,
        }
      : null,
    terminals: terminals.map((rec) => summary(rec, entries)),
  };
}

function terminalNumber(id: string): number {
  return Number(id.slice(id.lastIndexOf("/") + 1));
}

function summary(rec: SessionRecording, entries: Entry[]): TerminalSummary {
  const markers: [number, string][] = [];
  const command = execCommand(rec.header, entries);
  if (command) markers.push([0, command]);
  for (const e of rec.events) {
    if (!Array.isArray(e) || e[1] !== "m") continue;
    const [t, , label] = e as [unknown, string, unknown];
    if (typeof t === "number" && typeof label === "string") markers.push([t, label]);
  }
  return {
    id: rec.session_id,
    header: rec.header,
    duration: rec.duration,
    complete: rec.complete,
    missing_parts: rec.missing_parts,
    events: rec.events.length,
    markers,
  };
}

/** What an exec terminal ran: its decision's exec entry in the transcript, else the header's command. */
function execCommand(header: Record<string, unknown>, entries: Entry[]): string | null {
  const title = typeof header.title === "string" ? header.title : "";
  const decision = DECISION_IN_TITLE.exec(title)?.[1];
  if (decision) {
    const exec = entries.find((e) => e.event === "exec" && e.decision_id === decision);
    if (typeof exec?.line === "string" && exec.line !== "") return exec.line;
  }
  return typeof header.command === "string" && header.command !== "" ? header.command : null;
}

/**
 * A terminal recording as the asciicast v2 file `pamgate replay <id> --cast` prints (header line, then one event
 * per line); null when there is no such recording or it is a transcript.
 */
export async function loadCast(
  records: () => AsyncIterable<SpoolRecord>,
  terminalId: string,
): Promise<string | null> {
  const rec = await loadRecording(records(), terminalId);
  return rec ? castFile(rec) : null;
}

/** Terminal numbers are tried this far past the highest one known before the search stops. */
const PROBE = 16;

/**
 * The recording chunks of a session and of its terminals from the PostgreSQL sink's table, for loadSessionView.
 * Every query is by exact session_id, so the table's (session_id, spool_id, seq) index serves it: the terminals
 * are the ones the transcript names (`recording` entries), and numbers past the highest known are tried in
 * batches until PROBE in a row have no recording (a transcript whose chunks are missing names fewer).
 */
export async function* postgresSessionRecords(
  source: pg.Pool | string,
  table: string,
  sessionId: string,
): AsyncGenerator<SpoolRecord> {
  const t = quoteTable(table);
  const client =
    typeof source === "string"
      ? new pg.Client({ connectionString: source, application_name: "pamgate-replay" })
      : null;
  const db: { query: pg.Pool["query"] } = client ?? (source as pg.Pool);
  if (client) await client.connect();
  try {
    const sql = `SELECT record FROM ${t} WHERE session_id = ANY($1::text[]) AND kind = 'recording' ORDER BY spool_id, seq`;
    const terminal = `${sessionId}/`;
    const named = new RegExp(
      `"recording_id":${escapeRegExp(JSON.stringify(terminal).slice(0, -1))}([0-9]+)"`,
      "g",
    );
    let highest = 0;
    const { rows } = await db.query<{ record: string }>(sql, [[sessionId]]);
    for (const row of rows) {
      const r = parseRecordLine(row.record, false);
      if (typeof r === "string") continue;
      for (const m of r.body.matchAll(named)) highest = Math.max(highest, Number(m[1]));
      yield r;
    }
    let next = 1;
    for (;;) {
      const upto = Math.max(highest, next - 1) + PROBE;
      const ids: string[] = [];
      for (let n = next; n <= upto; n++) ids.push(`${terminal}${n}`);
      const batch = await db.query<{ record: string }>(sql, [ids]);
      for (const row of batch.rows) {
        const r = parseRecordLine(row.record, false);
        if (typeof r === "string") continue;
        const id = /^\{"session_id":("(?:[^"\\]|\\.)*")/.exec(r.body)?.[1];
        if (id) highest = Math.max(highest, terminalNumber(JSON.parse(id) as string));
        yield r;
      }
      next = upto + 1;
      if (highest < next - PROBE) return;
    }
  } finally {
    await client?.end().catch(() => {});
  }
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
