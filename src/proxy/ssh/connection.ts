// One authenticated client connection: every channel it opens and every global request it makes is a decision —
// session channels (session-channel.ts), local forwarding (direct-tcpip, direct-streamlocal), remote forwarding
// (tcpip-forward, streamlocal-forward) and any other channel type — recorded, and refused with a message the
// client prints unless policy allows it. Allowed forwarding is relayed through its own upstream connection, whose
// certificate permits port forwarding and nothing else.
import type {
  AcceptConnection,
  ClientChannel,
  Connection,
  RejectConnection,
  ServerChannel,
  Session,
} from "ssh2";
import type { OpenSession } from "../../gateway/sessions.js";
import type { CommandPipeline, CommandRequest, Outcome } from "../../pipeline/pipeline.js";
import { errorText } from "../../util/errors.js";
import type { Logger } from "../../util/log.js";
import type { CommandLineParser } from "./command-line.js";
import { sshReason } from "./reasons.js";
import { relayStream } from "./relay.js";
import { sshRequest } from "./requests.js";
import { SessionChannel } from "./session-channel.js";
import { type ChannelOpenRequest, interceptChannelOpen } from "./ssh2-internals.js";
import type { SshTarget } from "./target.js";

export interface SshConnectionDeps {
  pipeline: CommandPipeline;
  target: SshTarget;
  parser: CommandLineParser;
  maxCommandBytes: number;
  log: Logger;
}

/** The upstream side of a port forwarding certificate: it may forward, never run anything. */
const FORWARD_ONLY = { forceCommand: "/bin/false", extensions: ["permit-port-forwarding"] };

export class SshConnection {
  private readonly abort = new AbortController();
  /** Remote forwards in place: "addr:port" → the upstream connection listening for it. */
  private readonly remoteForwards = new Map<string, import("ssh2").Client>();
  /** The outcome that allowed the local forward ssh2 is about to hand us (set just before proceed()). */
  private allowedForward: Outcome | null = null;
  private closed = false;

  constructor(
    private readonly client: Connection,
    readonly open: OpenSession,
    private readonly deps: SshConnectionDeps,
  ) {}

  start(): void {
    const { client } = this;
    client.on(
      "session",
      (accept: AcceptConnection<Session>, reject: RejectConnection) =>
        void this.onSession(accept, reject).catch((err) => this.failed("session", err)),
    );
    interceptChannelOpen(
      client,
      (req) => void this.onChannelOpen(req).catch((err) => this.failed(req.type, err)),
    );
    client.on("tcpip", (accept: AcceptConnection<ServerChannel>, _reject: RejectConnection, info) =>
      this.onLocalForward(accept, info),
    );
    client.on(
      "openssh.streamlocal",
      (accept: AcceptConnection<ServerChannel>, _reject: RejectConnection, info) =>
        this.onLocalForward(accept, info),
    );
    client.on(
      "request",
      (accept: ((port?: number) => void) | undefined, reject: (() => void) | undefined, name: string, info) =>
        void this.onGlobalRequest(accept, reject, name, info).catch((err) => {
          this.failed(name, err);
          reject?.();
        }),
    );
  }

  /** The client went away or the gateway is closing: stop waiting, close what is open upstream. */
  close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.abort.abort(new Error(reason));
    for (const up of this.remoteForwards.values()) up.end();
    this.remoteForwards.clear();
    this.open.end(reason);
  }

  private failed(what: string, err: unknown): void {
    this.deps.log.error({ session: this.open.ctx.id }, `ssh ${what} failed: ${errorText(err)}`);
  }

  private decide(req: CommandRequest): Promise<Outcome> {
    return this.deps.pipeline.decide(this.open.ctx, req, { signal: this.abort.signal });
  }

  private record(event: string, outcome: Outcome, extra: Record<string, unknown> = {}): void {
    this.open.transcript({
      event,
      ...extra,
      action: outcome.action,
      decision_id: outcome.decision.decision_id,
      ...(outcome.action === "block" ? { reasons: outcome.reasons } : {}),
    });
    if (outcome.fatal) this.endConnection(outcome.reasons[0]?.message ?? "session ended");
  }

  private endConnection(reason: string): void {
    this.deps.log.info({ session: this.open.ctx.id }, `ending ssh connection: ${reason}`);
    this.client.end();
  }

  private async onSession(accept: AcceptConnection<Session>, reject: RejectConnection): Promise<void> {
    const outcome = await this.decide(sshRequest.session());
    this.record("session", outcome);
    if (outcome.action === "block" || this.closed) return reject();
    const session = accept();
    new SessionChannel(session, {
      open: this.open,
      pipeline: this.deps.pipeline,
      target: this.deps.target,
      parser: this.deps.parser,
      maxCommandBytes: this.deps.maxCommandBytes,
      signal: this.abort.signal,
      endConnection: (reason) => this.endConnection(reason),
      log: this.deps.log,
    });
  }

  private async onChannelOpen(req: ChannelOpenRequest): Promise<void> {
    let request: CommandRequest;
    if (req.type === "direct-tcpip") {
      request = sshRequest.portForward("local", {
        host: String(req.data.destIP ?? ""),
        port: Number(req.data.destPort ?? 0),
      });
    } else if (req.type === "direct-streamlocal@openssh.com") {
      request = sshRequest.portForward("local", { socket_path: String(req.data.socketPath ?? "") });
    } else {
      request = sshRequest.channel(req.type);
      request.refusal = sshReason(
        "ssh.channel_unknown",
        `pamgate does not relay channels of type ${req.type}`,
      );
    }
    const outcome = await this.decide(request);
    this.record("channel", outcome, { type: req.type, ...request.command });
    if (outcome.action === "block" || this.closed) {
      req.refuse(`pamgate: ${outcome.reasons.map((r) => `${r.message} [${r.code}]`).join(" ")}`);
      return;
    }
    this.allowedForward = outcome;
    req.proceed(); // ssh2 emits 'tcpip' / 'openssh.streamlocal' synchronously: onLocalForward takes the outcome
    this.allowedForward = null;
  }

  private onLocalForward(
    accept: AcceptConnection<ServerChannel>,
    info: { destIP?: string; destPort?: number; srcIP?: string; srcPort?: number; socketPath?: string },
  ): void {
    const outcome = this.allowedForward;
    if (!outcome) return; // not through onChannelOpen: never happens, and never relayed
    const channel = accept();
    void (async () => {
      const upstream = await this.deps.target.connect(this.purpose(outcome), this.abort.signal);
      upstream.on("error", () => {});
      const out = await new Promise<ClientChannel>((resolve, reject) => {
        const cb = (err: Error | undefined, ch: ClientChannel) => (err ? reject(err) : resolve(ch));
        if (info.socketPath !== undefined) upstream.openssh_forwardOutStreamLocal(info.socketPath, cb);
        else
          upstream.forwardOut(
            info.srcIP ?? "127.0.0.1",
            info.srcPort ?? 0,
            info.destIP ?? "",
            info.destPort ?? 0,
            cb,
          );
      }).catch((err: unknown) => {
        upstream.end();
        throw err;
      });
      await relayStream(channel, out);
      upstream.end();
    })().catch((err: unknown) => {
      this.failed("port forward", err);
      channel.close();
    });
  }

  private purpose(outcome: Outcome) {
    return {
      decisionId: outcome.decision.decision_id,
      sessionId: this.open.ctx.id,
      identity: this.open.ctx.identity,
      ...FORWARD_ONLY,
    };
  }

  private async onGlobalRequest(
    accept: ((port?: number) => void) | undefined,
    reject: (() => void) | undefined,
    name: string,
    info: { bindAddr?: string; bindPort?: number; socketPath?: string },
  ): Promise<void> {
    if (name === "cancel-tcpip-forward") {
      const key = `${info.bindAddr}:${info.bindPort}`;
      const up = this.remoteForwards.get(key);
      this.remoteForwards.delete(key);
      up?.end();
      return up ? accept?.() : reject?.();
    }
    if (name === "cancel-streamlocal-forward@openssh.com") return reject?.();
    const remote =
      name === "tcpip-forward"
        ? { host: info.bindAddr ?? "", port: info.bindPort ?? 0 }
        : { socket_path: info.socketPath ?? "" };
    const request = sshRequest.portForward("remote", remote);
    if (name !== "tcpip-forward")
      request.refusal = sshReason(
        "ssh.not_relayed",
        "pamgate does not relay remote forwarding of Unix sockets",
      );
    const outcome = await this.decide(request);
    this.record("global_request", outcome, { name, ...remote });
    if (outcome.action === "block" || this.closed) return reject?.();
    await this.startRemoteForward(info.bindAddr ?? "", info.bindPort ?? 0, outcome).then(
      (port) => accept?.(port),
      (err: unknown) => {
        this.failed("remote forward", err);
        reject?.();
      },
    );
  }

  /** Listens on the target for a remote forward, and relays each connection back to the client. */
  private async startRemoteForward(addr: string, port: number, outcome: Outcome): Promise<number> {
    const upstream = await this.deps.target.connect(this.purpose(outcome), this.abort.signal);
    upstream.on("error", () => {});
    const bound = await new Promise<number>((resolve, reject) =>
      upstream.forwardIn(addr, port, (err, p) => (err ? reject(err) : resolve(p || port))),
    ).catch((err: unknown) => {
      upstream.end();
      throw err;
    });
    this.remoteForwards.set(`${addr}:${port}`, upstream);
    upstream.on("tcp connection", (details, acceptUp, rejectUp) => {
      this.client.forwardOut(addr, bound, details.srcIP, details.srcPort, (err, channel) => {
        if (err) return rejectUp();
        void relayStream(channel, acceptUp());
      });
    });
    return bound;
  }
}
