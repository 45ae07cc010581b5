// `pamgate audit tail`: the newest records as readable one-liners, and following new ones as they are written
// (by another process: only complete lines are shown; a segment rotation or release is followed).
import { setTimeout as delay } from "node:timers/promises";
import { fileLines } from "./reader.js";
import { parseRecordLine, type SpoolRecord } from "./record.js";
import { listSegmentFiles, type SegmentFile } from "./spool-layout.js";

type Obj = Record<string, unknown>;

function obj(v: unknown): Obj | undefined {
  return v !== null && typeof v === "object" && !Array.isArray(v) ? (v as Obj) : undefined;
}

function s(v: unknown): string {
  return typeof v === "string" ? v : "";
}

/** Who, as the actor chain: the original requester first ("alice → ci-bot"). */
export function whoOf(identity: Obj | undefined): string {
  if (!identity) return "?";
  const actors = Array.isArray(identity.actors) ? identity.actors.map((a) => s(obj(a)?.sub)) : [];
  const chain = actors.filter(Boolean);
  if (chain.length === 0) return s(identity.sub) || "?";
  return chain.join(" → ");
}

/** A short description of the command from the (masked) policy input. */
export function commandSummary(input: Obj | undefined): string {
  if (!input) return "(input erased)";
  const c = obj(input.command);
  if (!c) return "(no command)";
  switch (input.protocol) {
    case "postgres": {
      const tables = obj(c.tables);
      const names = [
        ...(Array.isArray(tables?.write) ? tables.write : []),
        ...(Array.isArray(tables?.read) ? tables.read : []),
      ].map(String);
      return [s(c.statement).toUpperCase() || "?", [...new Set(names)].join(",")].filter(Boolean).join(" ");
    }
    case "ssh": {
      const req = s(c.request);
      if (req === "exec") return `exec: ${s(c.line) || "(line erased)"}`;
      if (req === "subsystem") return `subsystem ${s(c.subsystem)}`;
      return req || "?";
    }
    case "kubernetes": {
      const res = [s(c.resource), s(c.subresource)].filter(Boolean).join("/");
      const where = [s(c.namespace), s(c.name)].filter(Boolean).join("/");
      return [s(c.verb), res, where].filter(Boolean).join(" ");
    }
    default:
      return JSON.stringify(c).slice(0, 80);
  }
}

function clip(text: string, n: number): string {
  const one = text.replace(/\s+/g, " ");
  return one.length > n ? `${one.slice(0, n - 1)}…` : one;
}

/** One record as one line: time, action, protocol, resource, who, command, reason codes. */
export function formatRecord(r: SpoolRecord): string {
  let body: Obj;
  try {
    body = JSON.parse(r.body) as Obj;
  } catch {
    return `#${r.seq} ${r.kind} (unreadable body)`;
  }
  if (r.kind === "decision") {
    const resource = obj(body.resource);
    const reasons = Array.isArray(body.reason_codes) ? body.reason_codes.join(",") : "";
    const approval = body.approval_id ? ` approval=${s(body.approval_id)}` : "";
    return [
      s(body.timestamp),
      s(body.action).toUpperCase().padEnd(7),
      s(body.protocol).padEnd(10),
      s(resource?.name) || "?",
      whoOf(obj(body.identity)),
      clip(commandSummary(obj(body.input)), 100),
      `[${reasons}]${approval}`,
      `#${r.seq}`,
    ].join("  ");
  }
  if (r.kind === "recording") {
    const events = Array.isArray(body.events) ? body.events.length : 0;
    return [
      s(body.timestamp),
      "REC    ",
      s(body.format).padEnd(10),
      `session ${s(body.session_id)} part ${body.part}: ${events} events${body.final ? ", final" : ""}`,
      `#${r.seq}`,
    ].join("  ");
  }
  if (r.kind === "seal") {
    return [
      s(body.sealed_at),
      "SEAL   ",
      `${s(body.segment)} sealed: seq ${body.first_seq}–${body.last_seq}`,
      `#${r.seq}`,
    ].join("  ");
  }
  return `#${r.seq} ${r.kind} ${clip(r.body, 120)}`;
}

/** The last `n` complete records of a spool directory, oldest first. */
export async function lastRecords(dir: string, n: number): Promise<SpoolRecord[]> {
  const files = await listSegmentFiles(dir);
  let out: SpoolRecord[] = [];
  for (let i = files.length - 1; i >= 0 && out.length < n; i--) {
    const f = files[i] as (typeof files)[number];
    const mine: SpoolRecord[] = [];
    try {
      for await (const l of fileLines(f.path, f.name)) {
        if (!l.complete) break;
        const r = parseRecordLine(l.text, false);
        if (typeof r !== "string") mine.push(r);
      }
    } catch (err) {
      if ((err as { code?: string }).code !== "ENOENT") throw err;
    }
    out = mine.concat(out);
  }
  return out.slice(Math.max(0, out.length - n));
}

/** Yields records with seq > `afterSeq` as they appear, until the signal aborts. */
export async function* followSpool(
  dir: string,
  afterSeq: number,
  options: { pollMs?: number; signal?: AbortSignal } = {},
): AsyncGenerator<SpoolRecord> {
  const pollMs = options.pollMs ?? 200;
  let last = afterSeq;
  let segment: string | null = null;
  let offset = 0;
  while (!options.signal?.aborted) {
    const files = await listSegmentFiles(dir);
    let current: SegmentFile | undefined = segment ? files.find((f) => f.name === segment) : undefined;
    if (!current) {
      // Start, or the segment was released: the one holding last + 1.
      current = files.filter((f) => f.firstSeq <= last + 1).pop() ?? files[0];
      offset = 0;
      segment = current?.name ?? null;
    }
    let progressed = false;
    if (current) {
      try {
        for await (const l of fileLines(current.path, current.name, offset)) {
          if (!l.complete) break;
          offset = l.next;
          progressed = true;
          const r = parseRecordLine(l.text, false);
          if (typeof r === "string" || r.seq <= last) continue;
          last = r.seq;
          yield r;
        }
      } catch (err) {
        if ((err as { code?: string }).code !== "ENOENT") throw err;
        segment = null;
        continue;
      }
      const next: SegmentFile | undefined = files[files.indexOf(current) + 1];
      if (!progressed && next) {
        segment = next.name;
        offset = 0;
        continue;
      }
    }
    if (!progressed) {
      try {
        await delay(pollMs, undefined, { signal: options.signal });
      } catch {
        return;
      }
    }
  }
}
