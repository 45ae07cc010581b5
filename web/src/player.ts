// asciinema-player for a session's terminal, with the command index's markers.
//
// Why a parser of our own: the player's `markers` option is merged into the event stream *after* idle time is
// cut (idleTimeLimit), so markers given in the recording's own seconds land too late once a long pause has been
// shortened. The gateway's markers are in recording time, so they are put into the stream as "m" events before
// the player shortens pauses, which moves them with everything else; `seek({marker: i})` then lands exactly
// where the i-th marker is on the player's (shortened) timeline.
//
// The session page loads this module on demand (a chunk of its own): the player is most of the console's code,
// and the approvals, audit and status pages do not need it. So it imports nothing of the app but types.
import { create, type Player, type Recording, type RecordingEvent } from "asciinema-player";
import type { MarkerTuple } from "./api.js";

export type { Player };

/** Parses an asciicast v2 file (the player's own parser does the same: times in milliseconds). */
function castParser(markers: readonly MarkerTuple[]) {
  return async (data: unknown): Promise<Recording> => {
    const text = data instanceof Response ? await data.text() : String(data);
    const lines = text.split("\n");
    const header = JSON.parse(lines[0] ?? "{}") as {
      version?: number;
      width?: number;
      height?: number;
      idle_time_limit?: number;
      env?: { TERM?: string };
    };
    if (header.version !== 2) throw new Error(`not an asciicast v2 recording (version ${header.version})`);
    // Without a pty (an exec without -t, a Kubernetes exec without a TTY) the output is a pipe's: lines end in a
    // bare "\n", which a terminal's line discipline would have turned into "\r\n" (onlcr). Recorded as sent,
    // shown as a terminal would have shown it — else every line starts where the last one ended.
    const pipe = header.env?.TERM === undefined;
    let events: RecordingEvent[] = [];
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i] as string;
      if (line[0] !== "[") continue;
      const [t, code, payload] = JSON.parse(line) as [number, RecordingEvent[1], unknown];
      const shown =
        pipe && code === "o" && typeof payload === "string" ? payload.replace(/\r?\n/g, "\r\n") : payload;
      events.push([t * 1000, code, shown]);
    }
    if (markers.length > 0) {
      // The gateway's markers replace the recording's own (they are the same moments, with better labels).
      events = events.filter((e) => e[1] !== "m");
      const merged: RecordingEvent[] = [];
      let j = 0;
      for (const e of events) {
        while (j < markers.length && (markers[j] as MarkerTuple)[0] * 1000 <= e[0]) {
          const [t, label] = markers[j++] as MarkerTuple;
          merged.push([t * 1000, "m", label]);
        }
        merged.push(e);
      }
      for (; j < markers.length; j++) {
        const [t, label] = markers[j] as MarkerTuple;
        merged.push([t * 1000, "m", label]);
      }
      events = merged;
    }
    const recording: Recording = {
      cols: header.width || 80,
      rows: header.height || 24,
      events,
    };
    if (typeof header.idle_time_limit === "number") recording.idleTimeLimit = header.idle_time_limit;
    return recording;
  };
}

/**
 * Mounts a player for the cast at `url`, fetched with `fetchOpts` (same-origin: the session cookie goes along).
 * `markers` are sorted by time: their indexes are the player's marker indexes.
 */
export function mountPlayer(
  el: HTMLElement,
  url: string,
  markers: readonly MarkerTuple[],
  fetchOpts: RequestInit,
): Player {
  return create(
    {
      url,
      fetchOpts,
      parser: castParser(markers),
    },
    el,
    {
      idleTimeLimit: 2,
      fit: "width",
      preload: true,
      terminalFontFamily:
        'ui-monospace, "SF Mono", Menlo, Consolas, "DejaVu Sans Mono", "Liberation Mono", monospace',
    },
  );
}
