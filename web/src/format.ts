// Formatting shared by the views: times, durations, sizes, delegation chains, reasons.
import type { Actor, Identity, Reason } from "./api.js";

const pad = (n: number, w = 2) => String(n).padStart(w, "0");

/** `2026-11-26 09:00:01` in the browser's time zone; the ISO value goes in a title. */
export function formatTime(iso: string | null | undefined, withSeconds = true): string {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const date = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}${withSeconds ? `:${pad(d.getSeconds())}` : ""}`;
  return `${date} ${time}`;
}

/** A span in words: `45 s`, `3 min`, `2 h 5 min`, `3 d`. */
export function formatSpan(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 48) return m % 60 ? `${h} h ${m % 60} min` : `${h} h`;
  return `${Math.floor(h / 24)} d`;
}

/** `3 min ago` / `in 12 min`. */
export function relative(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return "—";
  const t = new Date(iso).getTime();
  if (Number.isNaN(t)) return iso;
  const diff = (t - now) / 1000;
  if (Math.abs(diff) < 5) return "just now";
  return diff < 0 ? `${formatSpan(-diff)} ago` : `in ${formatSpan(diff)}`;
}

/** A player-style clock: `1:05`, `1:02:03`. */
export function clock(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h > 0 ? `${h}:${pad(m)}:${pad(s % 60)}` : `${m}:${pad(s % 60)}`;
}

/** A duration with sub-second precision where it matters: `0.41 s`, `12.3 s`, `3 min 4 s`. */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "—";
  if (seconds < 10) return `${seconds.toFixed(2)} s`;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const s = Math.round(seconds);
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

export function formatBytes(n: unknown): string {
  if (typeof n !== "number" || !Number.isFinite(n)) return "—";
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}

/** The delegation chain's subjects, original requester first: ["alice", "ci-bot"]. */
export function chainOf(identity: Pick<Identity, "sub" | "actors">): string[] {
  const subs = (identity.actors ?? []).map((a: Actor) => a.sub);
  return subs.length > 0 ? subs : [identity.sub];
}

/** `alice → ci-bot` */
export function chainText(chain: readonly string[]): string {
  return chain.join(" → ");
}

/** Who started it: the original requester. */
export function requesterName(identity: Pick<Identity, "sub" | "actors">): string {
  return chainOf(identity)[0] ?? identity.sub;
}

export function firstLine(text: string): string {
  const line = text.split("\n").find((l) => l.trim() !== "") ?? "";
  return line.trim();
}

export function truncate(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** Reasons come as `{code, message}` objects or as bare codes (PostgreSQL transcripts). */
export function normalizeReasons(value: unknown): Reason[] {
  if (!Array.isArray(value)) return [];
  const out: Reason[] = [];
  for (const r of value) {
    if (typeof r === "string") out.push({ code: r });
    else if (r && typeof r === "object" && typeof (r as Reason).code === "string") {
      const { code, message } = r as Reason;
      out.push(typeof message === "string" ? { code, message } : { code });
    }
  }
  return out;
}

/** `3f0c1a2b…` */
export function shortId(id: string, n = 8): string {
  return id.length > n + 1 ? `${id.slice(0, n)}…` : id;
}

/** A value of unknown shape as one line of text. */
export function show(value: unknown): string {
  if (value === null) return "null";
  if (value === undefined) return "";
  if (typeof value === "string") return value;
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  return JSON.stringify(value);
}

/** `datetime-local` input value (local time, minutes) ↔ ISO 8601 (UTC). */
export function isoToLocalInput(iso: string | null | undefined): string {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function localInputToIso(value: string): string {
  if (!value) return "";
  const d = new Date(value); // a datetime-local value without a zone is local time
  return Number.isNaN(d.getTime()) ? "" : d.toISOString();
}
