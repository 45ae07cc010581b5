// One SSH session channel: its requests in the order the client sent them, each decided (and recorded) before
// anything reaches the target — env, pty-req, x11-req, auth-agent-req, then the one that starts it: exec (the
// command line parsed by a real shell parser, command-line.ts), shell, or a subsystem (SFTP per operation,
// sftp-relay.ts). An allowed start gets its own upstream connection with a certificate for that decision
// (target.ts). A refused exec or shell is told why on stderr and ends with exit status 126; the connection stays
// usable for the next channel. Refused env/x11/agent requests are answered "failure" (the protocol has no message
// for them), and the reason is printed on stderr once the channel starts.
import type { ClientChannel, PseudoTtyInfo, ServerChannel, Session } from "ssh2";
import type { TerminalRecording } from "../../audit/index.js";
import type { MaskRule, Reason, Verdict } from "../../decision/contract.js";
import type { OpenSession } from "../../gateway/sessions.js";
import type { CommandPipeline, CommandRequest, Outcome } from "../../pipeline/pipeline.js";
import { errorText } from "../../util/errors.js";
import type { Logger } from "../../util/log.js";
import { CommandLineError, type CommandLineParser, type ParsedLine } from "./command-line.js";
import { type SshReasonCode, sshReason } from "./reasons.js";
import { relaySession } from "./relay.js";
import { sshRequest } from "./requests.js";
import { SftpRelay } from "./sftp-relay.js";
import type { SshTarget, UpstreamPurpose } from "./target.js";

/** Exit status of an exec or shell pamgate refused (126: "found but cannot be run", as a shell says). */
export const REFUSED_EXIT_STATUS = 126;
/** Exit status when the target cannot be reached after the decision allowed it (as ssh itself uses). */
const UPSTREAM_EXIT_STATUS = 255;

export interface SessionChannelDeps {
  open: OpenSession;
  pipeline: CommandPipeline;
  target: SshTarget;
  parser: CommandLineParser;
  maxCommandBytes: number;
  /** Aborted when the client connection closes: pending approvals stop waiting. */
  signal: AbortSignal;
  /** Ends the whole connection (the token expired). */
  endConnection(reason: string): void;
  log: Logger;
}

type Accept = (() => void) | undefined;
type Reject = (() => void) | undefined;

const PARSE_CODES: Record<CommandLineError["code"], SshReasonCode> = {
  unparsable: "ssh.command_unparsable",
  dynamic_program: "ssh.command_dynamic",
  too_deep: "ssh.command_too_deep",
  too_large: "ssh.command_too_large",
};

export class SessionChannel {
  /** Requests are handled one after another, in the order they arrived. */
  private chain: Promise<void> = Promise.resolve();
  private readonly env: Record<string, string> = {};
  private pty: PseudoTtyInfo | null = null;
  private readonly notices: string[] = [];
  private upstream: ClientChannel | null = null;
  private recording: TerminalRecording | null = null;
  private started = false;

  constructor(
    session: Session,
    private readonly deps: SessionChannelDeps,
  ) {
    const queue = (fn: () => Promise<void>) => {
      this.chain = this.chain.then(fn).catch((err: unknown) => {
        deps.log.error({ session: deps.open.ctx.id }, `ssh channel request failed: ${errorText(err)}`);
      });
    };
    // ssh2 expects every request answered synchronously: a client that sends EOF right after its exec (stdin
    // from /dev/null) makes any later answer a no-op, and data sent before the channel starts is dropped. So the
    // client is answered at once — env and pty-req "yes", x11 and agent forwarding "no" (pamgate relays neither),
    // exec/shell/subsystem by starting the channel, whose input then waits in the stream — and the decisions are
    // made in order behind that. What reaches the target is only what was decided: an env variable or terminal
    // policy refused is not passed upstream, and the channel's stderr says so.
    session.on("env", (accept: Accept, _reject: Reject, info: { key: string; val: string }) => {
      accept?.();
      queue(() => this.onEnv(info.key, info.val));
    });
    session.on("pty", (accept: Accept, _reject: Reject, info: PseudoTtyInfo) => {
      accept?.();
      queue(() => this.onPty(info));
    });
    session.on("window-change", (accept: Accept, _reject: Reject, info: PseudoTtyInfo) => {
      accept?.();
      if (this.pty) Object.assign(this.pty, { cols: info.cols, rows: info.rows });
      this.upstream?.setWindow(info.rows, info.cols, info.height, info.width);
      this.recording?.resize(info.cols, info.rows);
    });
    session.on("signal", (accept: Accept, _reject: Reject, info: { name: string }) => {
      accept?.();
      this.upstream?.signal(info.name);
    });
    session.on("x11", (_accept: Accept, reject: Reject, info: { single: boolean }) => {
      reject?.();
      queue(() => this.onRefusable(sshRequest.x11(Boolean(info.single)), "X11 forwarding"));
    });
    session.on("auth-agent", (_accept: Accept, reject: Reject) => {
      reject?.();
      queue(() => this.onRefusable(sshRequest.agentForward(), "agent forwarding"));
    });
    const start = (
      accept: () => ServerChannel,
      reject: Reject,
      run: (ch: ServerChannel) => Promise<void>,
    ) => {
      if (this.started) return reject?.(); // a channel starts once (as with sshd)
      this.started = true;
      const channel = accept();
      if (!channel) return;
      channel.pause();
      queue(() => run(channel));
    };
    session.on("exec", (accept: () => ServerChannel, reject: Reject, info: { command: string }) =>
      start(accept, reject, (ch) => this.onExec(ch, info.command)),
    );
    session.on("shell", (accept: () => ServerChannel, reject: Reject) =>
      start(accept, reject, (ch) => this.onShell(ch)),
    );
    session.on("subsystem", (accept: () => ServerChannel, reject: Reject, info: { name: string }) =>
      start(accept, reject, (ch) => this.onSubsystem(ch, info.name)),
    );
  }

  private get ctx() {
    return this.deps.open.ctx;
  }

  private decide(req: CommandRequest): Promise<Outcome> {
    return this.deps.pipeline.decide(this.ctx, req, { signal: this.deps.signal });
  }

  private transcribe(event: string, outcome: Outcome, extra: Record<string, unknown> = {}): void {
    this.deps.open.transcript({
      event,
      ...extra,
      action: outcome.action,
      decision_id: outcome.decision.decision_id,
      ...(outcome.action === "block" ? { reasons: outcome.reasons } : {}),
    });
    if (outcome.fatal) this.deps.endConnection(outcome.reasons[0]?.message ?? "session ended by policy");
  }

  private async onEnv(name: string, value: string): Promise<void> {
    const outcome = await this.decide(sshRequest.env(name));
    this.transcribe("env", outcome, { name });
    if (outcome.action === "block")
      this.notices.push(`environment variable ${name} not passed: ${describe(outcome.reasons)}`);
    else this.env[name] = value;
  }

  private async onPty(info: PseudoTtyInfo): Promise<void> {
    const term = (info as { term?: string }).term ?? "xterm";
    const outcome = await this.decide(sshRequest.pty(term, info.cols, info.rows));
    this.transcribe("pty", outcome, { term, cols: info.cols, rows: info.rows });
    if (outcome.action === "block") this.notices.push(`no terminal: ${describe(outcome.reasons)}`);
    else this.pty = { ...info };
  }

  /**
   * x11 and agent forwarding: decided and recorded. pamgate relays neither (the target would reach back into the
   * client's display or keys through the gateway), so the record says block whatever the policy says.
   */
  private async onRefusable(req: CommandRequest, what: string): Promise<void> {
    req.refusal = sshReason("ssh.not_relayed", `pamgate does not relay ${what}`);
    const outcome = await this.decide(req);
    this.transcribe(String(req.command.request), outcome);
    this.notices.push(`${what} refused: ${describe(outcome.reasons)}`);
  }

  private refuse(channel: ServerChannel, reasons: Reason[]): void {
    this.tell(channel, `pamgate: blocked: ${describe(reasons)}`);
    channel.exit(REFUSED_EXIT_STATUS);
    channel.end();
  }

  private tell(channel: ServerChannel, line: string): void {
    channel.stderr.write(`${line}${this.pty ? "\r\n" : "\n"}`);
  }

  private onHold(channel: ServerChannel) {
    return (id: string, verdict: Verdict) => {
      const who = verdict.approval
        ? ` by ${verdict.approval.min_approvals} of [${verdict.approval.groups.join(", ")}]`
        : "";
      this.tell(
        channel,
        `pamgate: waiting for approval ${id}${who}: ${verdict.reasons.map((r) => r.message).join("; ")}`,
      );
      this.tell(channel, `pamgate: an approver runs: pamgate approvals approve ${id}`);
    };
  }

  private flushNotices(channel: ServerChannel): void {
    for (const n of this.notices.splice(0)) this.tell(channel, `pamgate: ${n}`);
  }

  private async onExec(channel: ServerChannel, line: string): Promise<void> {
    this.flushNotices(channel);
    const pty = this.pty !== null;
    const { req, parsed } = this.execRequest(line, pty);
    req.checkMask = recordingMaskOnly;
    const outcome = await this.deps.pipeline.decide(this.ctx, req, {
      signal: this.deps.signal,
      onHold: this.onHold(channel),
    });
    this.transcribe("exec", outcome, {
      line,
      programs: parsed?.commands.map((c) => c.program) ?? [],
      ...(outcome.approvalId ? { approval_id: outcome.approvalId } : {}),
    });
    if (outcome.action === "block") return this.refuse(channel, outcome.reasons);
    const upstream = await this.connect(channel, outcome, {
      forceCommand: line,
      extensions: pty ? ["permit-pty"] : [],
    });
    if (!upstream) return;
    const up = await this.startUpstream(channel, (cb) =>
      upstream.exec(line, { env: this.env, ...(this.pty ? { pty: this.pty } : {}) }, cb),
    );
    if (!up) {
      upstream.end();
      return;
    }
    if (parsed?.transfer)
      await this.relayTransfer(channel, up, parsed.transfer, outcome.decision.decision_id);
    else
      await this.relay(channel, up, outcome.mask, { command: line, decision: outcome.decision.decision_id });
    upstream.end();
  }

  /**
   * Relays an scp server (`scp -t` / `scp -f`) like an SFTP transfer: the file contents are not a terminal and are
   * not recorded, the transcript gets the direction, the paths and the byte counts. (Recording 100 MB of binary as
   * asciicast text cost a core and made scp -O ten times slower than direct.)
   */
  private async relayTransfer(
    channel: ServerChannel,
    up: ClientChannel,
    transfer: NonNullable<ParsedLine["transfer"]>,
    decision: string,
  ): Promise<void> {
    this.upstream = up;
    let sent = 0;
    let received = 0;
    let errors = "";
    const end = await relaySession(channel, up, {
      input: (d) => {
        sent += d.length;
      },
      output: (d) => {
        received += d.length;
      },
      // scp's own complaints (no such file, permission denied) are text and small: keep the first 4 KiB.
      stderr: (d) => {
        if (errors.length < 4096) errors += d.toString("utf8", 0, Math.min(d.length, 4096 - errors.length));
      },
    });
    this.upstream = null;
    this.deps.open.transcript({
      event: "transfer",
      decision_id: decision,
      protocol: "scp",
      direction: transfer.direction,
      paths: transfer.paths,
      // Bytes of the scp stream each way, its control lines included.
      bytes_to_target: sent,
      bytes_from_target: received,
      code: end.code,
      signal: end.signal,
      ...(errors ? { stderr: errors } : {}),
    });
  }

  /** The exec's policy request: parsed, or refused by the adapter with the parser's reason. */
  private execRequest(line: string, pty: boolean): { req: CommandRequest; parsed: ParsedLine | null } {
    let refusal: Reason | null = null;
    let parsed: ParsedLine | null = null;
    if (line.includes("\uFFFD")) {
      // ssh2 decodes the request as UTF-8 with replacement characters: a U+FFFD means the bytes were not UTF-8.
      refusal = sshReason(
        "ssh.command_not_utf8",
        "the command line is not valid UTF-8; send it as UTF-8 text",
      );
    } else if (Buffer.byteLength(line) > this.deps.maxCommandBytes) {
      refusal = sshReason(
        "ssh.command_too_large",
        `the command line is ${Buffer.byteLength(line)} bytes, more than the ${this.deps.maxCommandBytes} allowed; copy a script to the target and run it instead`,
      );
    } else {
      try {
        parsed = this.deps.parser.parse(line);
      } catch (err) {
        if (!(err instanceof CommandLineError)) throw err;
        refusal = sshReason(PARSE_CODES[err.code], err.message);
      }
    }
    if (parsed) return { req: sshRequest.exec(line, parsed, pty), parsed };
    const req = sshRequest.unparsedExec(line.length > 4096 ? `${line.slice(0, 4096)}…` : line, pty);
    if (refusal) req.refusal = refusal;
    return { req, parsed: null };
  }

  private async onShell(channel: ServerChannel): Promise<void> {
    this.flushNotices(channel);
    const term = (this.pty as { term?: string } | null)?.term ?? null;
    const req = sshRequest.shell(this.pty !== null, term);
    req.checkMask = recordingMaskOnly;
    const outcome = await this.deps.pipeline.decide(this.ctx, req, {
      signal: this.deps.signal,
      onHold: this.onHold(channel),
    });
    this.transcribe("shell", outcome, { pty: this.pty !== null });
    if (outcome.action === "block") return this.refuse(channel, outcome.reasons);
    const upstream = await this.connect(channel, outcome, { extensions: this.pty ? ["permit-pty"] : [] });
    if (!upstream) return;
    const up = await this.startUpstream(channel, (cb) =>
      upstream.shell(this.pty ?? false, { env: this.env }, cb),
    );
    if (!up) {
      upstream.end();
      return;
    }
    await this.relay(channel, up, outcome.mask, { decision: outcome.decision.decision_id, shell: true });
    upstream.end();
  }

  private async onSubsystem(channel: ServerChannel, name: string): Promise<void> {
    this.flushNotices(channel);
    const outcome = await this.decide(sshRequest.subsystem(name));
    this.transcribe("subsystem", outcome, { name });
    if (outcome.action === "block") return this.refuse(channel, outcome.reasons);
    // sftp runs as sshd's internal-sftp whatever the client asks; other subsystems by name.
    const upstream = await this.connect(
      channel,
      outcome,
      name === "sftp" ? { forceCommand: "internal-sftp" } : {},
    );
    if (!upstream) return;
    const up = await this.startUpstream(channel, (cb) => upstream.subsys(name, cb));
    if (!up) {
      upstream.end();
      return;
    }
    if (name !== "sftp") {
      await relaySession(channel, up);
      upstream.end();
      return;
    }
    const relay = new SftpRelay(channel, up, {
      session: this.deps.open,
      pipeline: this.deps.pipeline,
      signal: this.deps.signal,
      onError: (message) => {
        this.deps.log.warn({ session: this.ctx.id }, `sftp channel closed: ${message}`);
        channel.close();
        up.close();
      },
    });
    const end = await relay.run();
    this.deps.open.transcript({ event: "exit", decision_id: outcome.decision.decision_id, code: end.code });
    upstream.end();
  }

  /** The upstream connection for an allowed channel start; on failure the client is told and the channel ends. */
  private async connect(
    channel: ServerChannel,
    outcome: Outcome,
    purpose: Pick<UpstreamPurpose, "forceCommand" | "extensions">,
  ) {
    try {
      const upstream = await this.deps.target.connect(
        {
          decisionId: outcome.decision.decision_id,
          sessionId: this.ctx.id,
          identity: this.ctx.identity,
          ...purpose,
        },
        this.deps.signal,
      );
      upstream.on("error", (err) =>
        this.deps.log.warn({ session: this.ctx.id }, `upstream connection error: ${errorText(err)}`),
      );
      return upstream;
    } catch (err) {
      const message = `pamgate cannot reach "${this.deps.target.name}": ${errorText(err)}`;
      this.deps.log.warn({ session: this.ctx.id }, message);
      this.deps.open.transcript({
        event: "upstream.error",
        decision_id: outcome.decision.decision_id,
        message,
      });
      this.tell(channel, `pamgate: ${message}`);
      channel.exit(UPSTREAM_EXIT_STATUS);
      channel.end();
      return null;
    }
  }

  private startUpstream(
    channel: ServerChannel,
    start: (cb: (err: Error | undefined, ch: ClientChannel) => void) => void,
  ): Promise<ClientChannel | null> {
    return new Promise((resolve) => {
      start((err, up) => {
        if (!err) return resolve(up);
        this.tell(channel, `pamgate: the target refused the channel: ${err.message}`);
        channel.exit(UPSTREAM_EXIT_STATUS);
        channel.end();
        resolve(null);
      });
    });
  }

  /** Relays an exec or shell and records it as asciicast (output masked in the recording where policy says). */
  private async relay(
    channel: ServerChannel,
    up: ClientChannel,
    mask: MaskRule[],
    meta: { command?: string; decision: string; shell?: boolean },
  ): Promise<void> {
    this.upstream = up;
    const maskOutput = mask.some((m) => m.field === "recording.output");
    const rec = this.deps.open.terminal({
      width: this.pty?.cols || 80,
      height: this.pty?.rows || 24,
      ...(meta.command !== undefined ? { command: meta.command } : {}),
      title: `${this.deps.target.name} ${meta.shell ? "shell" : "exec"} (decision ${meta.decision})`,
      ...(this.pty ? { env: { TERM: (this.pty as { term?: string }).term ?? "xterm" } } : {}),
      // A terminal: keyframes (the screen every ≤ 256 KiB or 10 s) let a player seek without replaying it all.
      keyframes: this.pty !== null,
    });
    this.recording = rec;
    let masked = 0;
    const output = (d: Buffer) => {
      if (!rec) return;
      if (!maskOutput) rec.output(d);
      else masked += d.length;
    };
    const typed = meta.shell
      ? new TypedLines((line) => {
          this.deps.open.transcript({ event: "typed", line });
          rec?.marker(line);
        })
      : null;
    const end = await relaySession(channel, up, {
      input: (d) => {
        rec?.input(d);
        typed?.push(d);
      },
      output,
      stderr: output,
    });
    if (maskOutput && rec) rec.output(`[pamgate: ${masked} bytes of output masked by policy]\r\n`);
    this.upstream = null;
    this.recording = null;
    await rec?.close().catch(() => {});
    this.deps.open.transcript({
      event: "exit",
      decision_id: meta.decision,
      code: end.code,
      signal: end.signal,
    });
  }
}

/** Mask rules SSH can enforce: only the recording of the output (what the client sees is not rewritten). */
function recordingMaskOnly(mask: readonly MaskRule[]): Reason | null {
  const other = mask.filter((m) => m.field !== "recording.output").map((m) => m.field);
  return other.length === 0
    ? null
    : sshReason(
        "ssh.mask_unsupported",
        `pamgate cannot mask ${other.join(", ")} in an SSH session; only recording.output can be masked`,
      );
}

function describe(reasons: Reason[]): string {
  return reasons.map((r) => `${r.message} [${r.code}]`).join(" ");
}

/**
 * Lines typed into an interactive shell, for the audit only: what was typed up to Enter, with backspace applied.
 * It cannot know what the shell made of it (completion, history, an editor, a password prompt), which is why
 * shells are decided once, at their start, and the recording — not this — is the evidence.
 */
export class TypedLines {
  private buf = "";
  constructor(private readonly emit: (line: string) => void) {}

  push(data: Buffer): void {
    // Cursor keys and other escape sequences are editing, not text.
    // biome-ignore lint/suspicious/noControlCharactersInRegex: matching terminal escape sequences
    const text = data.toString("utf8").replace(/\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[^[]/g, "");
    for (const ch of text) {
      if (ch === "\r" || ch === "\n") {
        if (this.buf.trim()) this.emit(this.buf);
        this.buf = "";
      } else if (ch === "\x7f" || ch === "\b") this.buf = this.buf.slice(0, -1);
      else if (ch === "\x03" || ch === "\x15") this.buf = "";
      else if (ch >= " " && this.buf.length < 4096) this.buf += ch;
    }
  }
}
