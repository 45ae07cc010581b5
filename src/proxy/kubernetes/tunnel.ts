// exec, attach and port-forward: HTTP upgrades to a stream protocol, decided like any request (server.ts) before the
// cluster sees them, then relayed byte for byte between the client and the API server (which proxies to the
// kubelet). The bytes are not changed; a copy of each direction is read to record the session:
//
// - WebSocket (`v5.channel.k8s.io`, `v4.channel.k8s.io` and their base64 variants; kubectl ≥ 1.30 and
//   client-node): each message's first byte is the stream — 0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize, 255
//   close (v5) — so an exec or attach is recorded as asciicast like an SSH session (stdout/stderr as output,
//   stdin as input, resize events). Frames are parsed by ws's own Receiver, fed the copies. Compression
//   (permessage-deflate) is not offered upstream, so the frames are readable.
// - SPDY/3.1 (kubectl before 1.30, and its fallback with KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false): the client opens
//   one stream per channel, named by its `streamtype` header (stdin, stdout, stderr, error, resize), and the
//   exec or attach is recorded the same way. spdy.ts reads the frames and the zlib-compressed header blocks; the
//   header blocks are inflated asynchronously, so the recording may trail the bytes by a moment (it is not on the
//   relay's path).
// - Either way, a stream that cannot be parsed closes the tunnel (fail closed: a session that cannot be recorded
//   does not go on) and the transcript says why (`tunnel.unparsable`).
// - Port-forward streams are counted per direction, not recorded (they are TCP payloads, not a terminal). Over
//   SPDY — the SPDY/3.1 upgrade, or SPDY tunnelled in WebSocket messages (`SPDY/3.1+portforward.k8s.io`, kubectl's
//   default) — each stream names the port the kubelet forwards it to, whatever ?ports= said: the client's bytes
//   then go through portforward.ts, which writes each frame to the cluster only once its stream's port is allowed.
//   The ports of ?ports= were decided with the request; any other is decided when a stream first names it — the
//   request's command with `ports: [port]`, through the pipeline like every decision (server.ts decidePort;
//   `tunnel.port` in the transcript), the stream and everything after it waiting meanwhile (an approval too). A
//   port the policy blocks, or a stream naming none, closes the tunnel before the cluster sees the stream
//   (`tunnel.refused_port`). Other WebSocket port-forwards forward the ports of the URL, which was decided.
import type { IncomingMessage, OutgoingHttpHeaders } from "node:http";
import { request } from "node:https";
import { createRequire } from "node:module";
import type { Socket } from "node:net";
import type { Writable } from "node:stream";
import type { TerminalRecording } from "../../audit/index.js";
import { errorText } from "../../util/errors.js";
import type { Logger } from "../../util/log.js";
import { upstreamHeaders } from "./forward.js";
import { PortForwardGate } from "./portforward.js";
import { kubeReason } from "./reasons.js";
import type { Decided } from "./server.js";
import {
  type AllowPort,
  type PortForwardRefusal,
  type RemoteCommandStream,
  SpdyRemoteCommand,
} from "./spdy.js";
import { statusResponseText } from "./status.js";

/** ws's frame parser (a Writable that emits "message"); not in @types/ws, so typed here by what is used. */
type Receiver = Writable & {
  on(event: "message", listener: (data: Buffer | string, isBinary: boolean) => void): Receiver;
  on(event: "error", listener: (err: Error) => void): Receiver;
};
const { Receiver } = createRequire(import.meta.url)("ws") as {
  Receiver: new (options: {
    isServer: boolean;
    skipUTF8Validation?: boolean;
    maxPayload?: number;
  }) => Receiver;
};

const STDIN = 0;
const STDOUT = 1;
const STDERR = 2;
const ERROR = 3;
const RESIZE = 4;
/** SPDY names its streams; the WebSocket protocol numbers them. */
const CHANNEL: Record<RemoteCommandStream, number> = {
  stdin: STDIN,
  stdout: STDOUT,
  stderr: STDERR,
  error: ERROR,
  resize: RESIZE,
};

export async function openTunnel(
  req: IncomingMessage,
  client: Socket,
  head: Buffer,
  d: Decided,
  log: Logger,
): Promise<void> {
  const opts = await d.cluster.upstream.requestOptions(true);
  const headers: OutgoingHttpHeaders = {
    ...upstreamHeaders(req, d, opts.headers as OutgoingHttpHeaders, false),
    connection: "Upgrade",
    upgrade: req.headers.upgrade ?? "",
  };
  // Uncompressed frames only, so that the recording can read them.
  delete headers["sec-websocket-extensions"];
  const name = d.cluster.entry.resource.name;
  const decision = d.outcome.decision.decision_id;
  await new Promise<void>((resolve) => {
    const up = request({ ...opts, method: req.method, path: d.cluster.upstream.path(d.url), headers });
    const fail = (message: string) => {
      log.warn({ session: d.session.ctx.id }, message);
      d.session.transcript({ event: "tunnel.error", decision_id: decision, message });
      if (client.writable) client.end(statusResponseText(502, [kubeReason("k8s.upstream_error", message)]));
      resolve();
    };
    up.on("error", (err) =>
      fail(`pamgate cannot open the ${d.info.subresource} stream on cluster ${name}: ${errorText(err)}`),
    );
    // Not upgraded (the cluster refused: RBAC, no such pod, a bad container): its answer goes back as it is.
    up.on("response", (res) => {
      const lines = [`HTTP/1.1 ${res.statusCode} ${res.statusMessage ?? ""}`];
      for (let i = 0; i < res.rawHeaders.length; i += 2) {
        const k = res.rawHeaders[i] as string;
        if (/^(connection|transfer-encoding|keep-alive)$/i.test(k)) continue;
        lines.push(`${k}: ${res.rawHeaders[i + 1]}`);
      }
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const body = Buffer.concat(chunks);
        lines.push(`Content-Length: ${body.length}`, "Connection: close", "", "");
        client.end(Buffer.concat([Buffer.from(lines.join("\r\n")), body]));
        d.session.transcript({ event: "tunnel.refused", decision_id: decision, code: res.statusCode });
        resolve();
      });
    });
    up.on("upgrade", (res, upstream: Socket, upHead: Buffer) => {
      const lines = [`HTTP/1.1 101 ${res.statusMessage || "Switching Protocols"}`];
      for (let i = 0; i < res.rawHeaders.length; i += 2)
        lines.push(`${res.rawHeaders[i]}: ${res.rawHeaders[i + 1]}`);
      client.write(`${lines.join("\r\n")}\r\n\r\n`);
      const protocol = String(
        res.headers["sec-websocket-protocol"] ?? res.headers["x-stream-protocol-version"] ?? "",
      );
      // A port being decided when the tunnel ends is given up (an approval wait too).
      const ended = new AbortController();
      const close = () => {
        client.destroy();
        upstream.destroy();
      };
      // A stream that cannot be parsed cannot be recorded: the tunnel is closed (fail closed).
      const rec = new TunnelRecording(d, String(res.headers.upgrade ?? ""), protocol, close);
      const framing = spdyPortForward(req, res, d);
      const gate =
        framing &&
        new PortForwardGate({
          allowPort: portPolicy(d, ended.signal),
          websocket: framing === "websocket",
          from: client,
          to: upstream,
          refused: (r) => {
            refusedPort(d, r, log);
            close();
          },
          unparsable: (err) => {
            d.session.transcript({
              event: "tunnel.unparsable",
              decision_id: decision,
              why: `the port-forward stream could not be parsed: ${errorText(err)}`,
            });
            close();
          },
        });
      upstream.on("error", () => client.destroy());
      client.on("error", () => upstream.destroy());
      if (upHead.length > 0) {
        rec.fromCluster(upHead);
        client.write(upHead);
      }
      if (head.length > 0) {
        rec.fromClient(head);
        if (gate) gate.write(head);
        else upstream.write(head);
      }
      if (gate) {
        // The gate writes to the cluster what it has checked, and pauses the client while a check is pending.
        client.on("data", (b: Buffer) => {
          rec.fromClient(b);
          gate.write(b);
        });
        client.on("end", () => gate.end());
      } else relay(client, upstream, (b) => rec.fromClient(b));
      relay(upstream, client, (b) => rec.fromCluster(b));
      // The tunnel is over when either side closes (no byte crosses it after that): its record is closed then, in
      // that close handler — the session ends in a microtask right after, and what came later would be lost.
      let closed = 0;
      const done = () => {
        ended.abort();
        if (++closed === 1) {
          if (gate) gate.close();
          rec.close();
        }
        if (closed === 2) resolve();
      };
      // The client gone, nothing more can reach it: the cluster's side goes at once. The cluster's side closed: the
      // client's is ended once what was already written to it is delivered (destroying it at once would drop the
      // tail — a command's last output, its exit status — still queued in the socket).
      client.on("close", () => {
        upstream.destroy();
        done();
      });
      upstream.on("close", () => {
        closeWhenFlushed(client);
        done();
      });
    });
    if (d.body) up.end(d.body);
    else up.end();
  });
}

/**
 * Whether a port-forward's client speaks SPDY, whose streams name their own ports (so they must be checked), and
 * how it is framed: the SPDY/3.1 upgrade itself (anything upgraded that is not a WebSocket: the apiserver offers
 * nothing else), or WebSocket messages when the client offered a `SPDY/3.1+….k8s.io` protocol — the apiserver
 * tunnels then whatever it answers (IsWebSocketRequestWithTunnelingProtocol reads the request; it is forwarded as
 * one header line, which is what is read here). null: not a port-forward, or a WebSocket one (v4, …) whose ports
 * are the URL's.
 */
function spdyPortForward(
  req: IncomingMessage,
  res: IncomingMessage,
  d: Decided,
): "spdy" | "websocket" | null {
  if (d.info.subresource !== "portforward") return null;
  if (String(res.headers.upgrade ?? "").toLowerCase() !== "websocket") return "spdy";
  const offered = `${req.headers["sec-websocket-protocol"] ?? ""},${res.headers["sec-websocket-protocol"] ?? ""}`;
  return offered.split(",").some((p) => p.trim().toLowerCase().startsWith("spdy/3.1+")) ? "websocket" : null;
}

/**
 * Whether a port-forward stream may go to a port: the ports of ?ports= were decided with the request; any other
 * is decided now (server.ts decidePort), recorded by the pipeline and noted in the transcript. The gate asks once
 * per port per tunnel, and holds the stream (and everything after it) until this settles.
 */
function portPolicy(d: Decided, signal: AbortSignal): AllowPort {
  const requested = new Set(d.info.ports);
  return async (port) => {
    if (requested.has(port)) return true;
    if (!d.decidePort) return { message: `a stream names port ${port}, which pamgate cannot decide here` };
    const outcome = await d.decidePort(port, signal);
    const decision_id = outcome.decision.decision_id;
    const blocked = outcome.action === "block";
    d.session.transcript({
      event: "tunnel.port",
      decision_id,
      tunnel_decision_id: d.outcome.decision.decision_id,
      port,
      action: outcome.action,
      ...(outcome.approvalId ? { approval_id: outcome.approvalId } : {}),
      ...(blocked ? { reasons: outcome.reasons } : {}),
    });
    if (!blocked) return true;
    return {
      message: `a stream to port ${port} was refused: ${outcome.reasons.map((r) => r.message).join("; ")}`,
      detail: { decision_id, reasons: outcome.reasons },
    };
  };
}

/**
 * A port-forward stream was refused — its port's decision a block (that decision and its reasons in `detail`), or
 * it named no port, or not a port: the transcript says which (the tunnel is closed).
 */
function refusedPort(d: Decided, r: PortForwardRefusal, log: Logger): void {
  const message = `pamgate closed the port-forward: ${r.message}`;
  log.warn({ session: d.session.ctx.id, port: r.port }, message);
  d.session.transcript({
    event: "tunnel.refused_port",
    decision_id: d.outcome.decision.decision_id,
    tunnel_decision_id: d.outcome.decision.decision_id,
    code: "k8s.portforward_port",
    stream_id: r.streamId,
    port: r.port,
    message,
    ...r.detail,
  });
}

/** Ends `s` after what is queued in it is written; destroys it if that does not happen within 10 s. */
function closeWhenFlushed(s: Socket): void {
  if (s.destroyed) return;
  s.end();
  const timer = setTimeout(() => s.destroy(), 10_000);
  timer.unref();
  s.once("close", () => clearTimeout(timer));
}

/** Copies `from` to `to` with backpressure; `observe` sees each chunk first. */
function relay(from: Socket, to: Socket, observe: (b: Buffer) => void): void {
  from.on("data", (b: Buffer) => {
    observe(b);
    if (!to.write(b)) {
      from.pause();
      to.once("drain", () => from.resume());
    }
  });
  from.on("end", () => to.end());
}

/** The record of one tunnel: asciicast of an exec/attach (WebSocket or SPDY), byte counts for everything. */
class TunnelRecording {
  private toCluster = 0;
  private fromClusterBytes = 0;
  private readonly rec: TerminalRecording | null = null;
  private readonly up: Receiver | null = null;
  private readonly down: Receiver | null = null;
  private readonly spdy: SpdyRemoteCommand | null = null;
  private unreadable: string | null = null;

  constructor(
    private readonly d: Decided,
    /** The Upgrade the cluster answered with: "websocket" or "SPDY/3.1". */
    private readonly upgrade: string,
    private readonly protocol: string,
    private readonly broken: () => void,
  ) {
    const websocket = upgrade.toLowerCase() === "websocket";
    const terminal = d.info.subresource === "exec" || d.info.subresource === "attach";
    if (!terminal) this.unreadable = "port-forward streams are counted, not recorded";
    if (this.unreadable) return;
    this.rec = d.session.terminal({
      width: 80,
      height: 24,
      command: (d.info.command ?? []).join(" "),
      title: `${d.cluster.entry.resource.name} ${d.info.namespace}/${d.info.name} ${d.info.subresource} (decision ${d.outcome.decision.decision_id})`,
      keyframes: d.info.tty === true,
    });
    const stop = (err: Error) => this.stopParsing(`the stream could not be parsed: ${errorText(err)}`);
    if (!websocket) {
      // Anything upgraded that is not a WebSocket is SPDY/3.1 (the apiserver offers nothing else); bytes that are
      // not SPDY fail the parse, so the tunnel closes.
      this.spdy = new SpdyRemoteCommand({
        data: (stream, payload) =>
          this.message(stream === "stdin" || stream === "resize", CHANNEL[stream], payload),
        error: stop,
      });
      return;
    }
    const base64 = protocol.includes("base64");
    const onMessage = (fromClient: boolean) => (data: Buffer | string) => {
      const msg = typeof data === "string" ? Buffer.from(data) : data;
      if (msg.length === 0) return;
      const first = msg[0] as number;
      const channel = base64 ? first - 48 : first;
      const payload = base64 ? Buffer.from(msg.subarray(1).toString("latin1"), "base64") : msg.subarray(1);
      this.message(fromClient, channel, payload);
    };
    this.up = new Receiver({ isServer: true, skipUTF8Validation: true });
    this.up.on("message", onMessage(true));
    this.up.on("error", stop);
    this.down = new Receiver({ isServer: false, skipUTF8Validation: true });
    this.down.on("message", onMessage(false));
    this.down.on("error", stop);
  }

  fromClient(b: Buffer): void {
    this.toCluster += b.length;
    // A copy: ws's Receiver unmasks client frames in place, and these bytes still go to the cluster masked.
    this.up?.write(Buffer.from(b));
    // The SPDY reader only reads (it may keep views of the chunk until its frame is handed on).
    this.spdy?.fromClient(b);
  }

  fromCluster(b: Buffer): void {
    this.fromClusterBytes += b.length;
    this.down?.write(b);
    this.spdy?.fromCluster(b);
  }

  private message(fromClient: boolean, channel: number, payload: Buffer): void {
    const rec = this.rec;
    if (!rec) return;
    if (fromClient && channel === STDIN) rec.input(payload);
    else if (fromClient && channel === RESIZE) {
      try {
        const size = JSON.parse(payload.toString("utf8")) as { Width?: number; Height?: number };
        if (size.Width && size.Height) rec.resize(size.Width, size.Height);
      } catch {
        // a malformed resize message is the API server's to refuse; the recording skips it
      }
    } else if (!fromClient && (channel === STDOUT || channel === STDERR)) rec.output(payload);
  }

  private stopParsing(why: string): void {
    if (this.unreadable) return;
    this.d.session.transcript({
      event: "tunnel.unparsable",
      decision_id: this.d.outcome.decision.decision_id,
      why,
    });
    this.unreadable = why;
    this.up?.removeAllListeners("message");
    this.down?.removeAllListeners("message");
    this.broken();
  }

  close(): void {
    this.up?.end();
    this.down?.end();
    // The transcript entry now, in the socket's close handler: the session ends (and closes its transcript) right
    // after, in a microtask, so anything later would be lost.
    this.d.session.transcript({
      event: "tunnel",
      decision_id: this.d.outcome.decision.decision_id,
      subresource: this.d.info.subresource,
      upgrade: this.upgrade,
      protocol: this.protocol,
      bytes_to_cluster: this.toCluster,
      bytes_from_cluster: this.fromClusterBytes,
      ...(this.unreadable ? { recording: this.unreadable } : {}),
    });
    // SPDY frames still waiting behind a header block being inflated are handed on to the recording first.
    const spdy = this.spdy;
    if (spdy && !spdy.idle) void spdy.end().then(() => this.rec?.close().catch(() => {}));
    else {
      void spdy?.end();
      void this.rec?.close().catch(() => {});
    }
  }
}
