// An SFTP subsystem channel, packet by packet. Every request that names a path — open (with its direction),
// opendir, remove, rename, mkdir, rmdir, setstat, symlink, link and mutating extensions — is decided by policy
// and recorded before the target sees it; a refused one is answered by pamgate with SSH_FXP_STATUS
// PERMISSION_DENIED and the policy's message, and the channel goes on. Reads and writes on a handle are covered
// by the decision of the open that made the handle (a handle pamgate did not see opened is refused), so a
// transfer costs one decision per file, not one per 32 KiB; their bytes are counted per path and written to the
// session transcript when the file is closed and when the channel ends.
//
// Requests are forwarded in the order the client sent them: while one waits for its decision, the ones behind it
// wait too (and the client channel is paused once enough are queued).
import type { ClientChannel, ServerChannel } from "ssh2";
import type { OpenSession } from "../../gateway/sessions.js";
import type { CommandPipeline } from "../../pipeline/pipeline.js";
import { errorText } from "../../util/errors.js";
import { sshReason } from "./reasons.js";
import { type RelayEnd, sessionEnd } from "./relay.js";
import { sshRequest } from "./requests.js";
import { SftpFramer, type SftpOperation, SftpProtocolError, SftpSession } from "./sftp.js";

/** Operations a policy decides; the rest are reads of metadata or I/O on an already decided handle. */
const DECIDED = new Set([
  "open",
  "opendir",
  "remove",
  "mkdir",
  "rmdir",
  "rename",
  "setstat",
  "symlink",
  "link",
]);
/** Operations on a handle: with an unknown handle the tracker reports path "". */
const ON_HANDLE = new Set(["close", "read", "write", "readdir"]);
const MAX_QUEUED = 256;

export interface SftpRelayOptions {
  session: OpenSession;
  pipeline: CommandPipeline;
  signal: AbortSignal;
  /** Called once the relay gives up on a malformed stream (the caller closes the channel). */
  onError(message: string): void;
}

export class SftpRelay {
  private readonly tracker = new SftpSession();
  private readonly fromClient = new SftpFramer();
  private readonly fromServer = new SftpFramer();
  private readonly queue: Buffer[] = [];
  private draining = false;
  private failed = false;
  private readonly reported = new Set<string>();

  constructor(
    private readonly client: ServerChannel,
    private readonly upstream: ClientChannel,
    private readonly options: SftpRelayOptions,
  ) {}

  /** Relays until both channels are closed; resolves with the target's exit status (scp checks it). */
  run(): Promise<RelayEnd> {
    const { client, upstream } = this;
    client.on("data", (chunk: Buffer) => this.onClientData(chunk));
    upstream.on("data", (chunk: Buffer) => this.onServerData(chunk));
    upstream.stderr.on("data", (d: Buffer) => client.stderr.write(d));
    const ended = sessionEnd(client, upstream);
    client.resume(); // paused until the subsystem was decided (session-channel.ts)
    return ended.finally(() => this.flushCounts());
  }

  /** Bytes per path not yet written to the transcript (at channel end). */
  private flushCounts(): void {
    this.report([...this.tracker.bytesByPath().keys()]);
  }

  private fail(message: string): void {
    if (this.failed) return;
    this.failed = true;
    this.options.session.transcript({ event: "sftp.error", message });
    this.options.onError(message);
  }

  private onClientData(chunk: Buffer): void {
    if (this.failed) return;
    try {
      for (const p of this.fromClient.push(chunk)) this.queue.push(p);
    } catch (err) {
      this.fail(err instanceof SftpProtocolError ? err.message : errorText(err));
      return;
    }
    if (this.queue.length > MAX_QUEUED) this.client.pause();
    if (!this.draining) void this.drain();
  }

  private onServerData(chunk: Buffer): void {
    if (this.failed) return;
    try {
      for (const p of this.fromServer.push(chunk)) {
        this.tracker.serverPacket(p);
        this.write(this.client, p, this.upstream);
      }
    } catch (err) {
      this.fail(`the target sent a malformed SFTP packet: ${errorText(err)}`);
    }
  }

  /** Writes with backpressure: the side that cannot keep up pauses its source. */
  private write(
    to: ServerChannel | ClientChannel,
    packet: Buffer,
    source: ServerChannel | ClientChannel,
  ): void {
    if (!to.write(packet)) {
      source.pause();
      to.once("drain", () => source.resume());
    }
  }

  private async drain(): Promise<void> {
    this.draining = true;
    try {
      while (this.queue.length > 0 && !this.failed) {
        const packet = this.queue.shift() as Buffer;
        if (this.queue.length < MAX_QUEUED / 2) this.client.resume();
        let op: SftpOperation | null;
        try {
          op = this.tracker.clientPacket(packet);
        } catch (err) {
          this.fail(err instanceof SftpProtocolError ? err.message : errorText(err));
          return;
        }
        if (op && !(await this.allowed(op))) continue;
        this.write(this.upstream, packet, this.client);
        if (op?.op === "close") this.report([op.path]);
      }
    } finally {
      this.draining = false;
    }
  }

  /** Decides one operation; a refusal is answered here. */
  private async allowed(op: SftpOperation): Promise<boolean> {
    const { session, pipeline, signal } = this.options;
    const unknownHandle = ON_HANDLE.has(op.op) && op.path === "";
    if (!unknownHandle && !DECIDED.has(op.op) && !(op.op === "extended" && op.mutating)) return true;
    const req = sshRequest.sftp(op);
    if (unknownHandle)
      req.refusal = sshReason(
        "ssh.sftp_unknown_handle",
        `SFTP ${op.op} names a handle that was not opened through pamgate`,
      );
    const outcome = await pipeline.decide(session.ctx, req, { signal });
    session.transcript({
      event: "sftp",
      op: op.op,
      path: op.path,
      ...(op.target !== undefined ? { target: op.target } : {}),
      action: outcome.action,
      decision_id: outcome.decision.decision_id,
    });
    if (outcome.action !== "block") return true;
    this.tracker.refused(op.id);
    const why = outcome.reasons.map((r) => `${r.message} [${r.code}]`).join(" ");
    this.write(this.client, this.tracker.refusal(op.id, `pamgate: ${why}`), this.upstream);
    return false;
  }

  /** Writes byte counts of these paths to the transcript (once per path and count). */
  private report(paths: string[]): void {
    const counts = this.tracker.bytesByPath();
    for (const path of paths) {
      const c = counts.get(path);
      if (!c) continue;
      const key = `${path}\0${c.read}\0${c.written}`;
      if (this.reported.has(key)) continue;
      this.reported.add(key);
      this.options.session.transcript({ event: "sftp.bytes", path, read: c.read, written: c.written });
    }
  }
}
