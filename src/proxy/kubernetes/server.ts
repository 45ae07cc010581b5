// The Kubernetes listener: HTTPS in front of one or more clusters. kubectl and client libraries talk to it as if it
// were the API server (`pamgate kubeconfig` writes their kubeconfig): the server URL names the cluster
// (https://gw:port/clusters/<resource>; with a single kubernetes resource the prefix may be left out) and the
// bearer token is the OIDC access token. Every request is one decision:
//
//   route → request attributes (request-info.ts, as Kubernetes computes them) → Impersonate-* from the client
//   refused → session (one per connection and token) → body read and checked for writes → pipeline.decide →
//   block: a Status object; allow / mask: forwarded with the gateway's credentials, impersonating the requester
//   (forward.ts); exec / attach / port-forward upgrades are tunnels (tunnel.ts). A port-forward's streams may name
//   ports ?ports= did not: each such port is one more decision, made when the first stream names it (decidePort).
import { createHash, randomBytes } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer, type Server } from "node:https";
import type { Socket } from "node:net";
import type { MaskRule, Reason } from "../../decision/contract.js";
import { type OpenSession, SessionRefusedError } from "../../gateway/sessions.js";
import type { CommandRequest, Outcome } from "../../pipeline/pipeline.js";
import type { ComponentStatus } from "../../status/status.js";
import { errorText } from "../../util/errors.js";
import { silentLogger } from "../../util/log.js";
import { ValueMasker } from "../../util/mask-strategies.js";
import type { AdapterContext, AdapterListener, AdapterResource } from "../adapter.js";
import { type PendingConnection, PendingConnections } from "../limits.js";
import { CommandLineError, type CommandLineParser, loadCommandLineParser } from "../ssh/command-line.js";
import type { KubernetesListenerConfig, KubernetesUpstreamConfig } from "./config.js";
import { forward } from "./forward.js";
import { type KubernetesReasonCode, kubeReason } from "./reasons.js";
import { isRequestInfoError, parseRequestInfo, type RequestInfo } from "./request-info.js";
import { sendStatus, statusResponseText } from "./status.js";
import { openTunnel } from "./tunnel.js";
import { KubeUpstream } from "./upstream.js";

export type KubernetesListenerOptions = AdapterContext<KubernetesListenerConfig, KubernetesUpstreamConfig>;

const DEFAULT_MAX_BODY = 3 * 1024 * 1024;
/** Verbs whose body pamgate reads before deciding (the decision and an approval are tied to the exact content). */
const BODY_VERBS = new Set(["create", "update", "patch"]);
/** Request bodies pamgate can read: JSON, and the patch types Kubernetes accepts (apply patches are YAML ⊇ JSON). */
const JSON_BODY_TYPES = new Set([
  "application/json",
  "application/merge-patch+json",
  "application/strategic-merge-patch+json",
  "application/json-patch+json",
  "application/apply-patch+yaml",
]);

/** HTTP status of each body refusal (the rest are 400 Bad Request). */
const BODY_REFUSAL_STATUS: Partial<Record<KubernetesReasonCode, number>> = {
  "k8s.body_too_large": 413,
  "k8s.unsupported_content_type": 415,
  "k8s.protobuf_body": 415,
};

/**
 * HTTP status of the session opener's refusals (the rest are 401 Unauthorized). The session limit is a 403, not a
 * 429: kubectl prints a 403 Status's message ("Error from server (Forbidden): …"), but only a generic text for 429.
 */
const SESSION_REFUSAL_STATUS: Record<string, number> = {
  "session.identity_limit": 403,
  "audit.unavailable": 503,
};

/** How long a socket told why it is closed may stay open for the client to read it. */
const CLOSE_LINGER_MS = 2_000;

/** A TCP connection that has not made an authenticated request yet. */
interface PendingSocket {
  raw: Socket;
  ticket: PendingConnection;
  /** The TLS socket, once the handshake is done. */
  tls: Socket | null;
  /** Requests being answered on it: a timeout then closes it without an answer of its own. */
  inFlight: number;
}

/** One cluster: its resource (policy input, credentials) and the upstream API server. */
interface Cluster {
  entry: AdapterResource<KubernetesUpstreamConfig>;
  upstream: KubeUpstream;
}

/** A request pamgate has decided: what it was, the session it belongs to and the outcome. */
export interface Decided {
  cluster: Cluster;
  info: RequestInfo;
  /** The path (and query) as the cluster should see it, the /clusters/<name> prefix removed. */
  url: string;
  session: OpenSession;
  outcome: Outcome;
  body: Buffer | null;
  /** Impersonate-* headers for the cluster: the requester, their groups, the delegation chain, the decision. */
  impersonation: Record<string, string | string[]>;
  /**
   * pods/portforward: decides one more port of the tunnel — a port a stream names that ?ports= did not — as this
   * request with `ports: [port]`, through the same pipeline and session (recorded, held while an approval is
   * pending; `signal` gives up the wait).
   */
  decidePort?: (port: number, signal: AbortSignal) => Promise<Outcome>;
}

export class KubernetesListener implements AdapterListener {
  private server: Server | null = null;
  private readonly log;
  private clusters = new Map<string, Cluster>();
  /** Upstreams a reload replaced: requests and tunnels still open may use them until the listener closes. */
  private readonly retired: KubeUpstream[] = [];
  private parser: CommandLineParser | null = null;
  /** Sessions by connection and token: kubectl sends one command's burst over one keep-alive connection. */
  private readonly sessions = new Map<Socket, Map<string, Promise<OpenSession>>>();
  private readonly sockets = new Set<Socket>();
  /**
   * Connections not yet authenticated (listeners.kubernetes.auth_timeout_s, max_unauthenticated_connections), by
   * the client's address and port: the same for the TCP socket and the TLS socket over it.
   */
  private readonly pending: PendingConnections;
  private readonly pendingSockets = new Map<string, PendingSocket>();
  private state: ComponentStatus = { state: "not_ready", message: "not listening yet" };
  private readonly maxBody: number;
  /** Masking strategies; the hash key lives as long as the listener (hashes join within its lifetime). */
  private readonly masker = new ValueMasker(randomBytes(32));

  constructor(private readonly options: KubernetesListenerOptions) {
    this.log = options.log ?? silentLogger;
    this.maxBody = options.config.max_body_bytes ?? DEFAULT_MAX_BODY;
    this.pending = new PendingConnections("kubernetes", options.config);
    for (const entry of options.resources)
      this.clusters.set(entry.resource.name, {
        entry,
        upstream: new KubeUpstream(entry.resource.name, entry.upstream),
      });
  }

  get sessionCount(): number {
    let n = 0;
    for (const m of this.sessions.values()) n += m.size;
    return n;
  }

  status(): ComponentStatus {
    return { ...this.state, details: { sessions: this.sessionCount, ...this.pending.stats() } };
  }

  async listen(): Promise<{ host: string; port: number }> {
    const { config, tls } = this.options;
    if (!tls)
      throw new Error("listeners.kubernetes.tls: a certificate and key are required (kubectl speaks HTTPS)");
    this.parser = await loadCommandLineParser({ maxBytes: 16 * 1024 });
    const server = createServer({
      cert: tls.cert,
      key: tls.key,
      ALPNProtocols: ["http/1.1"],
      // The auth timeout (admit below) closes a connection still in its handshake first; this is a backstop.
      handshakeTimeout: this.pending.timeoutMs + 5_000,
    });
    server.on("request", (req: IncomingMessage, res: ServerResponse) => {
      const p = this.pendingSockets.get(socketKey(req.socket));
      if (p) {
        p.inFlight++;
        res.once("close", () => p.inFlight--);
      }
      this.onRequest(req, res).catch((err: unknown) => this.internalError(res, err));
    });
    server.on("upgrade", (req: IncomingMessage, socket: Socket, head: Buffer) => {
      this.onUpgrade(req, socket, head).catch((err: unknown) => {
        this.log.error({ err: errorText(err) }, "kubernetes upgrade failed");
        socket.destroy();
      });
    });
    server.on("connection", (socket: Socket) => this.admit(socket));
    // Sessions belong to the TLS socket (what requests arrive on): they end when it closes.
    server.on("secureConnection", (socket: Socket) => {
      const p = this.pendingSockets.get(socketKey(socket));
      if (p) p.tls = socket;
      socket.on("close", () => this.endSessions(socket, "client closed the connection"));
    });
    // A TLS handshake that fails (a client that does not trust the gateway's CA) is the client's business.
    server.on("tlsClientError", () => {});
    server.headersTimeout = 30_000;
    server.requestTimeout = 0; // watches and held approvals are long
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(config.port, config.host ?? "127.0.0.1", () => {
        server.off("error", reject);
        resolve();
      });
    });
    this.server = server;
    this.state = { state: "ok", message: `${this.clusters.size} cluster(s)` };
    const addr = server.address() as { address: string; port: number };
    return { host: addr.address, port: addr.port };
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = null;
    this.state = { state: "error", message: "closed" };
    for (const socket of [...this.sessions.keys()]) this.endSessions(socket, "the gateway is shutting down");
    for (const socket of this.sockets) socket.destroy();
    for (const c of this.clusters.values()) c.upstream.close();
    for (const u of this.retired.splice(0)) u.close();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  async stopAccepting(): Promise<void> {
    this.state = { state: "not_ready", message: "draining: new connections are refused" };
    // Closes idle keep-alive connections too; not awaited: the callback waits for every connection to end.
    this.server?.close();
  }

  prepareResources(entries: AdapterResource<KubernetesUpstreamConfig>[]): () => void {
    const next = new Map<string, Cluster>();
    const kept = new Set<KubeUpstream>();
    for (const entry of entries) {
      const old = this.clusters.get(entry.resource.name);
      const same = old && JSON.stringify(old.entry.upstream) === JSON.stringify(entry.upstream);
      const upstream = same ? old.upstream : new KubeUpstream(entry.resource.name, entry.upstream);
      if (same) kept.add(upstream);
      next.set(entry.resource.name, { entry, upstream });
    }
    return () => {
      for (const c of this.clusters.values()) if (!kept.has(c.upstream)) this.retired.push(c.upstream);
      this.clusters = next;
    };
  }

  /**
   * A TCP connection: admitted while fewer than max_unauthenticated_connections are pending, else closed at once
   * (before TLS: nothing can be said in HTTP yet; the refusal is logged and counted in the listener's status). The
   * auth timeout runs from here to the connection's first authenticated request.
   */
  private admit(socket: Socket): void {
    socket.on("error", () => {});
    const key = socketKey(socket);
    const ticket = this.pending.admit(() => this.timedOut(key));
    if (!ticket) {
      this.log.warn(
        { client: socket.remoteAddress },
        `kubernetes connection refused: ${this.pending.busyMessage}`,
      );
      socket.destroy();
      return;
    }
    this.sockets.add(socket);
    this.pendingSockets.set(key, { raw: socket, ticket, tls: null, inFlight: 0 });
    socket.on("close", () => {
      this.sockets.delete(socket);
      ticket.release();
      if (this.pendingSockets.get(key)?.raw === socket) this.pendingSockets.delete(key);
    });
  }

  /**
   * auth_timeout_s passed before the connection's first authenticated request: a connection past its TLS handshake
   * and not in the middle of a request is answered 408 with a Status naming the setting; any other is closed.
   */
  private timedOut(key: string): void {
    const p = this.pendingSockets.get(key);
    if (!p) return;
    this.pendingSockets.delete(key);
    this.log.warn({ client: p.raw.remoteAddress }, this.pending.timeoutMessage);
    if (p.tls && p.inFlight === 0 && !p.tls.destroyed) {
      const tls = p.tls;
      tls.end(statusResponseText(408, [kubeReason("k8s.auth_timeout", this.pending.timeoutMessage)]));
      setTimeout(() => {
        tls.destroy();
        p.raw.destroy();
      }, CLOSE_LINGER_MS).unref();
    } else p.raw.destroy();
  }

  /** The connection made its first authenticated request: the auth timeout and pending limit no longer apply. */
  private authenticated(socket: Socket): void {
    const key = socketKey(socket);
    const p = this.pendingSockets.get(key);
    if (!p) return;
    this.pendingSockets.delete(key);
    p.ticket.authenticated();
  }

  private endSessions(socket: Socket, reason: string): void {
    const m = this.sessions.get(socket);
    if (!m) return;
    this.sessions.delete(socket);
    for (const s of m.values()) s.then((open) => open.end(reason)).catch(() => {});
  }

  private internalError(res: ServerResponse, err: unknown): void {
    this.log.error({ err: errorText(err) }, "kubernetes request failed");
    if (!res.headersSent)
      sendStatus(res, 502, [
        kubeReason("k8s.upstream_error", `pamgate failed this request: ${errorText(err)}`),
      ]);
    else res.destroy();
  }

  private async onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const r = await this.decide(req, (id, reasons) => {
      this.log.info({ approval: id }, `kubernetes request held for approval: ${reasons}`);
    });
    if ("refused" in r) return sendStatus(res, r.refused.code, r.refused.reasons);
    await forward(req, res, r, this.masker, this.log);
  }

  private async onUpgrade(req: IncomingMessage, socket: Socket, head: Buffer): Promise<void> {
    socket.on("error", () => {});
    const r = await this.decide(req, () => {});
    if ("refused" in r) {
      socket.end(statusResponseText(r.refused.code, r.refused.reasons));
      return;
    }
    await openTunnel(req, socket, head, r, this.log);
  }

  /**
   * Everything before forwarding: route, attributes, refusals the adapter makes itself, the session, the body of a
   * write, and the pipeline's decision (held while an approval is pending). A refusal comes back as an HTTP code
   * and reasons, for a Status object.
   */
  private async decide(
    req: IncomingMessage,
    onHold: (approvalId: string, reasons: string) => void,
  ): Promise<Decided | { refused: { code: number; reasons: Reason[] } }> {
    const refuse = (code: number, reasons: Reason[]) => ({ refused: { code, reasons } });
    const routed = this.route(req.url ?? "/");
    if ("code" in routed) return refuse(404, [routed]);
    const { cluster, url } = routed;
    const info = parseRequestInfo(req.method ?? "GET", url);
    if (isRequestInfoError(info)) return refuse(400, [kubeReason(info.code, info.message)]);
    for (const h of Object.keys(req.headers))
      if (h.startsWith("impersonate-"))
        return refuse(403, [
          kubeReason(
            "k8s.impersonation_refused",
            `the request carries ${h}; pamgate impersonates the verified requester itself, so clients may not`,
          ),
        ]);
    let session: OpenSession;
    try {
      session = await this.session(req, cluster);
    } catch (err) {
      if (err instanceof SessionRefusedError)
        return refuse(SESSION_REFUSAL_STATUS[err.code] ?? 401, [{ code: err.code, message: err.message }]);
      throw err;
    }
    let body: Buffer | null = null;
    if (BODY_VERBS.has(info.verb)) {
      const read = await readBody(req, this.maxBody);
      if ("code" in read) return refuse(BODY_REFUSAL_STATUS[read.code] ?? 400, [read]);
      body = read.body;
    }
    const request = this.commandRequest(req, info, url, body);
    const abort = new AbortController();
    const onClose = () => abort.abort();
    req.socket.once("close", onClose);
    let outcome: Outcome;
    try {
      outcome = await this.options.pipeline.decide(session.ctx, request, {
        signal: abort.signal,
        onHold: (id, verdict) => onHold(id, verdict.reasons.map((r) => r.message).join("; ")),
      });
    } finally {
      req.socket.off("close", onClose);
    }
    session.transcript({
      event: "request",
      method: req.method,
      verb: info.verb,
      path: info.path,
      action: outcome.action,
      decision_id: outcome.decision.decision_id,
      ...(outcome.approvalId ? { approval_id: outcome.approvalId } : {}),
      ...(outcome.action === "block" ? { reasons: outcome.reasons } : {}),
      ...(body ? { body_sha256: sha256(body), body_bytes: body.length } : {}),
    });
    if (outcome.fatal) {
      this.endSessions(req.socket, outcome.reasons[0]?.message ?? "session ended by policy");
      return refuse(401, outcome.reasons);
    }
    if (outcome.action === "block") return refuse(403, outcome.reasons);
    return {
      cluster,
      info,
      url,
      session,
      outcome,
      body,
      impersonation: this.impersonation(session, outcome),
      ...(info.subresource === "portforward" ? { decidePort: this.portDecider(session, request) } : {}),
    };
  }

  /**
   * A port-forward's decisions of the ports its streams name: the request's command with `ports: [port]`, its
   * text naming the port, its fingerprint the request's and the port (an approval covers that port, as widely as
   * the request's own would: the kubectl invocation, or the exact request).
   */
  private portDecider(
    session: OpenSession,
    request: CommandRequest,
  ): (port: number, signal: AbortSignal) => Promise<Outcome> {
    // Not the request's memo key (if it ever has one): the command differs.
    const { memoKey: _memoKey, ...base } = request;
    return (port, signal) =>
      this.options.pipeline.decide(
        session.ctx,
        {
          ...base,
          command: { ...request.command, ports: [port] },
          text: `${request.text}\n(a stream of this port-forward, to port ${port})`,
          fingerprint: sha256(`${request.fingerprint}\0port\0${port}`),
        },
        {
          signal,
          onHold: (id, verdict) =>
            this.log.info(
              { approval: id, port },
              `kubernetes port-forward stream held for approval: ${verdict.reasons.map((r) => r.message).join("; ")}`,
            ),
        },
      );
  }

  /** The cluster a path names, and the path the cluster should see. */
  private route(rawUrl: string): { cluster: Cluster; url: string } | Reason {
    if (rawUrl.startsWith("/clusters/")) {
      const end = rawUrl.indexOf("/", "/clusters/".length);
      const name = decodeURIComponentSafe(rawUrl.slice("/clusters/".length, end < 0 ? undefined : end));
      const cluster = name === null ? undefined : this.clusters.get(name);
      if (!cluster)
        return kubeReason(
          "k8s.unknown_cluster",
          `${JSON.stringify(name ?? rawUrl)} is not a pamgate kubernetes resource (known: ${[...this.clusters.keys()].join(", ")})`,
        );
      return { cluster, url: end < 0 ? "/" : rawUrl.slice(end) };
    }
    if (this.clusters.size === 1)
      return { cluster: this.clusters.values().next().value as Cluster, url: rawUrl };
    return kubeReason(
      "k8s.unknown_cluster",
      `name the cluster in the server URL: https://<gateway>/clusters/<name> (known: ${[...this.clusters.keys()].join(", ")})`,
    );
  }

  /** The connection's session for this token, opened (and recorded) on first use. */
  private session(req: IncomingMessage, cluster: Cluster): Promise<OpenSession> {
    const auth = req.headers.authorization ?? "";
    const token = /^Bearer\s+(\S+)$/i.exec(auth)?.[1];
    const socket = req.socket;
    let m = this.sessions.get(socket);
    if (!m) {
      m = new Map();
      this.sessions.set(socket, m);
    }
    const key = `${cluster.entry.resource.name}\0${token ?? ""}`;
    let s = m.get(key);
    if (!s) {
      s = (async () => {
        const authenticated = await this.options.sessions.authenticate({
          protocol: "kubernetes",
          resource: cluster.entry.resource,
          transport: { remoteAddress: socket.remoteAddress ?? "", tls: true },
          getToken: async () => token,
        });
        const open = await this.options.sessions.open(authenticated);
        // The connection closed while the session was being opened: nothing will end it later.
        if (socket.destroyed) open.end("client closed the connection");
        else this.authenticated(socket);
        return open;
      })();
      m.set(key, s);
      // A refused token is not remembered: the next request may bring a good one.
      s.catch(() => m?.delete(key));
    }
    return s;
  }

  /** The policy's command, the text approvers see, and the fingerprint grants are keyed by. */
  private commandRequest(
    req: IncomingMessage,
    info: RequestInfo,
    url: string,
    body: Buffer | null,
  ): CommandRequest {
    const { parts: _parts, ...attributes } = info;
    const command: Record<string, unknown> = attributes;
    let refusal: Reason | undefined;
    if (info.command) {
      // exec's argv goes through the same shell analysis as an SSH exec: `sh -c "…"` is looked into.
      try {
        const parsed = (this.parser as CommandLineParser).parse(info.command.map(shellQuote).join(" "));
        command.commands = parsed.commands;
        command.sudo = parsed.sudo;
      } catch (err) {
        if (!(err instanceof CommandLineError)) throw err;
        command.commands = [];
        refusal = kubeReason("k8s.bad_query", `the exec command cannot be checked: ${err.message}`);
      }
    }
    const text = `${req.method} ${url}${body ? `\n${body.toString("utf8", 0, Math.min(body.length, 8192))}` : ""}`;
    // One approval covers the burst one kubectl command sends (kubectl delete -f: a DELETE per object): kubectl
    // names its invocation in Kubectl-Session, so requests of the same verb within it share a fingerprint. Without
    // the header (client libraries) the fingerprint is the exact request: method, path, query and body.
    const kubectlSession = headerValue(req, "kubectl-session");
    const fingerprint = kubectlSession
      ? sha256(
          `kubectl-session\0${kubectlSession}\0${headerValue(req, "kubectl-command") ?? ""}\0${info.verb}`,
        )
      : sha256(`${req.method}\0${url}\0${body ? sha256(body) : ""}`);
    return {
      command,
      text: kubectlSession
        ? `${text}\n(kubectl ${headerValue(req, "kubectl-command") ?? "command"}, session ${kubectlSession}: approving lets the rest of this command's ${info.verb} requests through)`
        : text,
      fingerprint,
      checkMask: (mask) => maskCheck(info, mask),
      ...(refusal ? { refusal } : {}),
    };
  }

  private impersonation(session: OpenSession, outcome: Outcome): Record<string, string | string[]> {
    const identity = session.ctx.identity;
    const requester = identity.actors[0]?.sub ?? identity.sub;
    const h: Record<string, string | string[]> = {
      "impersonate-user": `${this.options.config.user_prefix ?? ""}${requester}`,
      "impersonate-extra-pamgate.dev%2fdecision-id": outcome.decision.decision_id,
      "impersonate-extra-pamgate.dev%2fsession-id": session.ctx.id,
    };
    if (identity.groups.length > 0) h["impersonate-group"] = identity.groups;
    if (identity.actors.length > 1)
      h["impersonate-extra-pamgate.dev%2fchain"] = identity.actors.map((a) => a.sub);
    return h;
  }
}

/** Masks pamgate can apply: top-level fields of Secret objects (data, stringData) in a JSON response. */
function maskCheck(info: RequestInfo, mask: readonly MaskRule[]): Reason | null {
  const other = mask.filter((m) => m.field !== "data" && m.field !== "stringData").map((m) => m.field);
  if (other.length > 0)
    return kubeReason(
      "k8s.mask_unsupported",
      `pamgate masks only Secret data and stringData in Kubernetes responses, not ${other.join(", ")}`,
    );
  if (info.subresource !== "")
    return kubeReason(
      "k8s.mask_unsupported",
      `pamgate cannot mask the ${info.subresource} subresource of ${info.resource}; only objects are masked`,
    );
  return null;
}

/** Reads a write's body (at most `max` bytes) and checks pamgate can inspect it. */
function readBody(
  req: IncomingMessage,
  max: number,
): Promise<{ body: Buffer } | { code: KubernetesReasonCode; message: string }> {
  const type = (req.headers["content-type"] ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
  if (type === "application/vnd.kubernetes.protobuf")
    return Promise.resolve(
      kubeReason(
        "k8s.protobuf_body",
        "pamgate inspects writes as JSON and this body is protobuf; send JSON (kubectl and client-node do by default)",
      ),
    );
  if (!JSON_BODY_TYPES.has(type))
    return Promise.resolve(
      kubeReason(
        "k8s.unsupported_content_type",
        `pamgate cannot inspect a ${type ? JSON.stringify(type) : "missing"} request body; send one of ${[...JSON_BODY_TYPES].join(", ")}`,
      ),
    );
  const declared = Number(req.headers["content-length"] ?? "0");
  if (declared > max)
    return Promise.resolve(
      kubeReason(
        "k8s.body_too_large",
        `the request body is ${declared} bytes, more than the ${max} pamgate reads`,
      ),
    );
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    req.on("data", (c: Buffer) => {
      if (done) return;
      size += c.length;
      if (size > max) {
        done = true;
        resolve(
          kubeReason("k8s.body_too_large", `the request body is more than the ${max} bytes pamgate reads`),
        );
        req.resume();
        return;
      }
      chunks.push(c);
    });
    req.on("error", reject);
    req.on("end", () => {
      if (done) return;
      done = true;
      const body = Buffer.concat(chunks);
      // YAML apply patches that are not JSON are refused too: pamgate decides on what it can read.
      try {
        JSON.parse(body.toString("utf8"));
      } catch (err) {
        return resolve(kubeReason("k8s.bad_json", `the request body is not valid JSON: ${errorText(err)}`));
      }
      resolve({ body });
    });
  });
}

function headerValue(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function sha256(data: string | Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

function shellQuote(arg: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

function decodeURIComponentSafe(s: string): string | null {
  try {
    return decodeURIComponent(s);
  } catch {
    return null;
  }
}

/** A connection's client address and port: the same for a TCP socket and the TLS socket over it. */
function socketKey(socket: Socket): string {
  return `${socket.remoteAddress}:${socket.remotePort}`;
}
