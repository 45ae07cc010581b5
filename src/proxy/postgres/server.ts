// The PostgreSQL listener: TLS negotiation, startup, token authentication (the OIDC access token is the
// password) through the gateway's session opener, the upstream connection with pamgate's own credentials,
// cancel-request mapping, then a ProxySession per client. Errors before the session starts are sent as the
// FATAL ErrorResponse a PostgreSQL client expects, and cost nothing to other sessions.
import { randomInt, randomUUID } from "node:crypto";
import { createServer, type Server, type Socket } from "node:net";
import { createSecureContext, TLSSocket } from "node:tls";
import { SessionRefusedError } from "../../gateway/sessions.js";
import type { ComponentStatus } from "../../status/status.js";
import { errorText } from "../../util/errors.js";
import { silentLogger } from "../../util/log.js";
import type { AdapterContext, AdapterListener, AdapterResource } from "../adapter.js";
import { type PendingConnection, PendingConnections } from "../limits.js";
import { analyzerFailure, initAnalyzer } from "./analysis/index.js";
import { AnalyzerStatus } from "./analyzer-status.js";
import { Catalog } from "./catalog.js";
import type { PostgresListenerConfig, PostgresUpstreamConfig } from "./config.js";
import { Masker } from "./masking.js";
import { Resolver } from "./resolve.js";
import { ProxySession } from "./session.js";
import { cancelUpstream, connectUpstream, pinnedSchema, type UpstreamTarget } from "./upstream.js";
import {
  decodePassword,
  decodeStartup,
  type Frame,
  FrameReader,
  FrontendType,
  ProtocolError,
  toClient,
} from "./wire.js";

export interface PostgresListenerOptions
  extends AdapterContext<PostgresListenerConfig, PostgresUpstreamConfig> {
  /** Key for the `hash` masking strategy (default: random per process). */
  maskKey?: Buffer;
}

/** A configured resource as the listener keeps it: the policy's resource and the upstream to reach. */
interface PostgresResource {
  entry: AdapterResource<PostgresUpstreamConfig>;
  target: UpstreamTarget;
  /** The schema its sessions' search_path is pinned to, where the analysis resolves unqualified names. */
  schema: string;
}

/** SQLSTATEs for the session opener's refusals. */
const REFUSAL_SQLSTATE: Record<string, string> = {
  "identity.tls_required": "28000",
  "identity.no_token": "28P01",
  "identity.token_rejected": "28P01",
  "audit.unavailable": "53000",
  "session.identity_limit": "53300",
};

/**
 * A connection refused for the pending-authentication limit still has its start-up packet read — as PostgreSQL
 * reads it before "sorry, too many clients already" — so that the error is the answer a client waits for; for at
 * most this long.
 */
const REFUSAL_WINDOW_MS = 5_000;
/** How long a socket told a FATAL error may stay open for the client to read it. */
const FATAL_LINGER_MS = 2_000;

/** The client's side of a connection in start-up: the socket spoken to (the TLS socket once TLS is up). */
interface Conn {
  raw: Socket;
  socket: Socket;
  /** TLS is being negotiated: nothing can be said to the client in the protocol, only the connection closed. */
  tlsHandshaking: boolean;
  tls: boolean;
}

/** Thrown inside a handshake whose connection is already gone (timed out, closed): nothing more to say. */
class ConnectionGone extends Error {}

/** A BackendKeyData process id: the worker's index above bit 24, a counter below (64 workers stay positive). */
const WORKER_PID_SHIFT = 24;
const WORKER_PID_MASK = (1 << WORKER_PID_SHIFT) - 1;

export class PostgresListener implements AdapterListener {
  private server: Server | null = null;
  private readonly log;
  private resources: Map<string, PostgresResource>;
  /** Catalog caches of resources a reload removed or re-targeted: their open sessions may still use them. */
  private readonly retiredCatalogs: Catalog[] = [];
  private readonly catalogs = new Map<string, { catalog: Catalog; resolver: Resolver }>();
  private readonly masker: Masker;
  private readonly sessions = new Set<ProxySession>();
  /** Our BackendKeyData → the upstream's, so a client's CancelRequest reaches the right backend. */
  private readonly cancelKeys = new Map<
    number,
    { secret: number; target: UpstreamTarget; key: { pid: number; secret: number } }
  >();
  private nextPid = 1;
  private readonly secureContext;
  private state: ComponentStatus = { state: "not_ready", message: "not listening yet" };
  private readonly unregister: Array<() => void> = [];
  /** Connections not yet authenticated (listeners.postgres.auth_timeout_s, max_unauthenticated_connections). */
  private readonly pending: PendingConnections;
  /** Connections being refused for the pending limit (their start-up packet read, then the error). */
  private refusing = 0;

  constructor(private readonly options: PostgresListenerOptions) {
    this.log = options.log ?? silentLogger;
    this.pending = new PendingConnections("postgres", options.config);
    this.resources = new Map(options.resources.map((entry) => [entry.resource.name, resourceOf(entry)]));
    // Workers of one gateway share the key, so a value hashes alike whichever worker serves the session.
    this.masker = new Masker(options.maskKey ?? options.peers?.secret ?? Buffer.from(randomUUID()));
    // A CancelRequest names a session by the key it was given; in a worker, the key's top bits name the worker
    // (cancelKey), and a request for a session of another worker is sent there.
    options.peers?.on("pg.cancel", (m) => void this.cancel(Number(m.pid), Number(m.secret)).catch(() => {}));
    this.secureContext = options.tls ? createSecureContext(options.tls) : null;
  }

  async listen(): Promise<{ host: string; port: number }> {
    const analyzer = new AnalyzerStatus(analyzerFailure);
    const unregister = this.options.status?.register("postgres.analyzer", () => analyzer.status());
    if (unregister) this.unregister.push(unregister);
    try {
      await analyzer.track(initAnalyzer({ maxDepth: this.options.config.max_statement_depth }));
    } catch (err) {
      this.state = { state: "error", message: `the SQL parser cannot be loaded: ${errorText(err)}` };
      throw err;
    }
    const server = createServer((socket) => this.accept(socket));
    this.server = server;
    const { host = "127.0.0.1", port } = this.options.config;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => resolve());
    });
    server.on("error", (err) => {
      this.state = { state: "error", message: `listener failed: ${err.message}` };
    });
    const addr = server.address() as { address: string; port: number };
    this.state = { state: "ok", message: `listening on ${addr.address}:${addr.port}` };
    this.log.info({ host: addr.address, port: addr.port }, "postgres listener ready");
    return { host: addr.address, port: addr.port };
  }

  status(): ComponentStatus {
    return { ...this.state, details: { sessions: this.sessions.size, ...this.pending.stats() } };
  }

  get sessionCount(): number {
    return this.sessions.size;
  }

  async close(): Promise<void> {
    this.state = { state: "not_ready", message: "shutting down" };
    for (const off of this.unregister.splice(0)) off();
    for (const s of this.sessions) s.shutdown();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    await Promise.all([...this.catalogs.values()].map((c) => c.catalog.close()));
    await Promise.all(this.retiredCatalogs.splice(0).map((c) => c.close()));
  }

  async stopAccepting(): Promise<void> {
    this.state = { state: "not_ready", message: "draining: new connections are refused" };
    // Not awaited: close()'s callback waits for every open connection to end.
    if (this.server?.listening) this.server.close();
  }

  prepareResources(entries: AdapterResource<PostgresUpstreamConfig>[]): () => void {
    const next = new Map(entries.map((entry) => [entry.resource.name, resourceOf(entry)]));
    return () => {
      for (const [name, c] of [...this.catalogs]) {
        const after = next.get(name);
        if (after && JSON.stringify(after.target) === JSON.stringify(this.resources.get(name)?.target))
          continue;
        this.catalogs.delete(name);
        this.retiredCatalogs.push(c.catalog);
      }
      this.resources = next;
    };
  }

  /** One catalog cache (and its resolver) per resource, shared by the resource's sessions. */
  private catalogFor(resource: PostgresResource): { catalog: Catalog; resolver: Resolver } {
    const name = resource.entry.resource.name;
    let c = this.catalogs.get(name);
    if (!c) {
      const catalog = new Catalog(resource.target);
      c = { catalog, resolver: new Resolver(catalog, resource.schema) };
      this.catalogs.set(name, c);
    }
    return c;
  }

  private accept(raw: Socket): void {
    raw.setNoDelay(true);
    raw.on("error", () => {}); // reported through the handshake below
    const conn: Conn = { raw, socket: raw, tlsHandshaking: false, tls: false };
    const ticket = this.pending.admit(() => {
      this.log.warn({ client: raw.remoteAddress }, this.pending.timeoutMessage);
      this.tellAndClose(conn, "08P01", this.pending.timeoutMessage);
    });
    if (!ticket) {
      this.refuseBusy(conn);
      return;
    }
    raw.once("close", () => ticket.release());
    this.handshake(conn, ticket).catch((err: unknown) => {
      ticket.release();
      if (err instanceof ConnectionGone || ticket.expired) return;
      const e =
        err instanceof ProtocolError
          ? err
          : err instanceof SessionRefusedError
            ? new ProtocolError(err.message, REFUSAL_SQLSTATE[err.code] ?? "28000")
            : new ProtocolError(errorText(err), "08006");
      this.log.warn({ client: raw.remoteAddress }, `connection refused: ${e.message}`);
      this.tellAndClose(conn, e.sqlstate, e.message);
    });
  }

  /**
   * Sends a FATAL ErrorResponse on the connection (inside TLS when TLS is up) and closes it; while TLS is being
   * negotiated nothing can be said, and the connection is only closed.
   */
  private tellAndClose(conn: Conn, sqlstate: string, message: string): void {
    const { socket } = conn;
    if (socket.destroyed) return;
    if (conn.tlsHandshaking) {
      socket.destroy();
      conn.raw.destroy();
      return;
    }
    socket.end(toClient.errorResponse({ severity: "FATAL", code: sqlstate, message }));
    // A client that never reads (or never closes) does not keep the socket.
    setTimeout(() => {
      socket.destroy();
      conn.raw.destroy();
    }, FATAL_LINGER_MS).unref();
  }

  /**
   * A connection beyond listeners.postgres.max_unauthenticated_connections: its start-up packet is read (TLS
   * negotiated when asked, as for any client) and answered with SQLSTATE 53300, as PostgreSQL answers "too many
   * clients"; nothing is authenticated and no upstream work is done. A CancelRequest is still carried out: it is how
   * a client stops a runaway statement. At most `max` such connections at once, each for REFUSAL_WINDOW_MS at most;
   * beyond that a connection is closed at once.
   */
  private refuseBusy(conn: Conn): void {
    const { raw } = conn;
    const message = this.pending.busyMessage;
    this.log.warn({ client: raw.remoteAddress }, `connection refused: ${message}`);
    if (this.refusing >= this.pending.max) {
      raw.destroy();
      return;
    }
    this.refusing++;
    raw.once("close", () => this.refusing--);
    const window = Math.min(REFUSAL_WINDOW_MS, this.pending.timeoutMs);
    const timer = setTimeout(() => this.tellAndClose(conn, "53300", message), window);
    timer.unref();
    this.negotiate(conn, new FrameReader(16 * 1024))
      .then(async ({ startup }) => {
        if (startup.kind === "cancel") {
          await this.cancel(startup.pid, startup.secret);
          conn.socket.end();
          return;
        }
        this.tellAndClose(conn, "53300", message);
      })
      .catch(() => this.tellAndClose(conn, "53300", message))
      .finally(() => clearTimeout(timer));
  }

  /** Reads the next startup-phase frame from `socket`; rejects when the client goes away first. */
  private readFrame(socket: Socket, reader: FrameReader): Promise<Frame> {
    return new Promise((resolve, reject) => {
      const tryNext = () => {
        try {
          const f = reader.next();
          if (f) {
            cleanup();
            resolve(f);
          }
        } catch (err) {
          cleanup();
          reject(err);
        }
      };
      const onData = (c: Buffer) => {
        reader.push(c);
        tryNext();
      };
      const onEnd = () => {
        cleanup();
        reject(new ConnectionGone("client disconnected during start-up"));
      };
      const cleanup = () => {
        socket.removeListener("data", onData);
        socket.removeListener("close", onEnd);
      };
      if (socket.destroyed) return onEnd();
      socket.on("data", onData);
      socket.once("close", onEnd);
      tryNext();
    });
  }

  /**
   * The start-up packets before the StartupMessage: SSLRequest (TLS when configured, else 'N') and GSSENCRequest
   * ('N'), until a StartupMessage or CancelRequest. `conn.socket` is the TLS socket afterwards when TLS was set up.
   */
  private async negotiate(
    conn: Conn,
    first: FrameReader,
  ): Promise<{ startup: ReturnType<typeof decodeStartup>; reader: FrameReader }> {
    let reader = first;
    for (;;) {
      const startup = decodeStartup(await this.readFrame(conn.socket, reader));
      if (startup.kind === "ssl" && !conn.tls) {
        conn.socket.write(toClient.sslAnswer(this.secureContext !== null));
        if (this.secureContext) {
          conn.tlsHandshaking = true;
          const secure = new TLSSocket(conn.socket, { isServer: true, secureContext: this.secureContext });
          await new Promise<void>((resolve, reject) => {
            secure.once("secure", resolve);
            secure.once("error", reject);
            secure.once("close", () => reject(new ConnectionGone("client disconnected during TLS")));
          });
          secure.on("error", () => {});
          conn.socket = secure;
          conn.tls = true;
          conn.tlsHandshaking = false;
          reader = new FrameReader(64 * 1024);
        }
        continue;
      }
      if (startup.kind === "ssl" || startup.kind === "gssenc") {
        conn.socket.write(toClient.sslAnswer(false));
        continue;
      }
      return { startup, reader };
    }
  }

  private async handshake(conn: Conn, ticket: PendingConnection): Promise<void> {
    const { raw } = conn;
    const negotiated = await this.negotiate(conn, new FrameReader(64 * 1024));
    const { startup, reader } = negotiated;
    const socket = conn.socket;
    const tls = conn.tls;
    /** Throws when the connection timed out or closed while the gateway was busy with it. */
    const stillThere = () => {
      if (ticket.expired || socket.destroyed) throw new ConnectionGone("connection gone during start-up");
    };
    stillThere();
    if (startup.kind === "cancel") {
      await this.cancel(startup.pid, startup.secret);
      socket.end();
      return;
    }
    if (startup.kind !== "startup") return;
    const { params } = startup;
    if (params.replication)
      throw new ProtocolError("replication connections are not supported by pamgate", "0A000");
    const resource = this.resources.get(params.database ?? "");
    if (!resource) {
      const names = [...this.resources.keys()].join(", ");
      throw new ProtocolError(
        `database "${params.database ?? ""}" is not a pamgate resource (configured: ${names})`,
        "3D000",
      );
    }
    const auth = await this.options.sessions.authenticate({
      protocol: "postgres",
      resource: resource.entry.resource,
      transport: {
        remoteAddress: raw.remoteAddress ?? "",
        tls,
        allowCleartextToken: this.options.config.allow_cleartext_token,
      },
      // The token is the password. Asked for in cleartext — inside TLS, or on loopback (the opener checked).
      getToken: async () => {
        stillThere();
        socket.write(toClient.authCleartext());
        reader.startup = false;
        const pw = await this.readFrame(socket, reader);
        if (pw.type !== FrontendType.password)
          throw new ProtocolError("expected a password message carrying the access token");
        return decodePassword(pw);
      },
    });

    stillThere();
    const upstream = await connectUpstream(resource.target, params).catch((err: unknown) => {
      throw new ProtocolError(
        `pamgate cannot reach resource "${resource.entry.resource.name}": ${errorText(err)}`,
        "08006",
      );
    });
    let open: Awaited<ReturnType<typeof this.options.sessions.open>>;
    try {
      stillThere();
      open = await this.options.sessions.open(auth, { search_path: [resource.schema] });
    } catch (err) {
      upstream.socket.destroy();
      throw err;
    }
    if (ticket.expired || socket.destroyed) {
      open.end(ticket.expired ? this.pending.timeoutMessage : "client disconnected during start-up");
      upstream.socket.destroy();
      throw new ConnectionGone("connection gone during start-up");
    }
    ticket.authenticated();

    const pid = this.nextCancelPid();
    const secret = randomInt(1, 2 ** 31 - 1);
    if (upstream.backendKey)
      this.cancelKeys.set(pid, { secret, target: resource.target, key: upstream.backendKey });

    const hello = [toClient.authOk()];
    for (const [k, v] of upstream.parameters) hello.push(toClient.parameterStatus(k, v));
    hello.push(toClient.backendKeyData(pid, secret), toClient.readyForQuery("I"));
    socket.write(Buffer.concat(hello));

    const session = new ProxySession(socket, upstream.socket as Socket, open, {
      pipeline: this.options.pipeline,
      ...this.catalogFor(resource),
      masker: this.masker,
      log: this.log,
      maxFrame: this.options.config.max_message_bytes ?? 64 * 1024 * 1024,
      transcript: {
        statementText: this.options.config.transcript?.statement_text ?? "normalized",
        maxRows: this.options.config.transcript?.max_rows ?? 20,
        secrets: resource.target.password ? [resource.target.password] : [],
      },
      schema: resource.schema,
    });
    this.sessions.add(session);
    socket.once("close", () => {
      this.sessions.delete(session);
      this.cancelKeys.delete(pid);
    });
    session.start(reader.drain());
  }

  /** The BackendKeyData process id a client gets: positive, unique here, with this worker's index on top. */
  private nextCancelPid(): number {
    const counter = this.nextPid;
    this.nextPid = this.nextPid >= WORKER_PID_MASK ? 1 : this.nextPid + 1;
    return ((this.options.peers?.index ?? 0) << WORKER_PID_SHIFT) | counter;
  }

  private async cancel(pid: number, secret: number): Promise<void> {
    const peers = this.options.peers;
    const owner = pid >>> WORKER_PID_SHIFT;
    if (peers && owner !== peers.index) {
      if (owner < peers.count) peers.send(owner, { kind: "pg.cancel", pid, secret });
      return;
    }
    const entry = this.cancelKeys.get(pid);
    // A wrong secret is ignored silently, as PostgreSQL does, so keys cannot be probed.
    if (!entry || entry.secret !== secret) return;
    await cancelUpstream(entry.target, entry.key);
  }
}

/** A configured resource as the listener keeps it; a search_path that cannot be pinned fails here, at start. */
function resourceOf(entry: AdapterResource<PostgresUpstreamConfig>): PostgresResource {
  const target: UpstreamTarget = {
    ...entry.upstream,
    password: entry.secret,
    searchPath: entry.upstream.search_path,
  };
  return { entry, target, schema: pinnedSchema(target) };
}
