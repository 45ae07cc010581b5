// The PostgreSQL listener: TLS negotiation, startup, token authentication (the OIDC access token is the
// password), the upstream connection with pamgate's own credentials, cancel-request mapping, then a
// ProxySession per client. Errors before the session starts are sent as the FATAL ErrorResponse a PostgreSQL
// client expects, and cost nothing to other sessions.
import { randomInt, randomUUID } from "node:crypto";
import { createServer, type Server, type Socket } from "node:net";
import { createSecureContext, type SecureContextOptions, TLSSocket } from "node:tls";
import type { Identity, Resource } from "../../decision/contract.js";
import { SessionInput } from "../../decision/engine.js";
import { errorText } from "../../decision/wasm-policy.js";
import type { CommandPipeline, SessionContext } from "../../pipeline/pipeline.js";
import { type Logger, silentLogger } from "../../util/log.js";
import { initAnalyzer } from "./analysis.js";
import { Catalog } from "./catalog.js";
import { Masker } from "./masking.js";
import { ProxySession } from "./session.js";
import { cancelUpstream, connectUpstream, type UpstreamTarget } from "./upstream.js";
import {
  decodePassword,
  decodeStartup,
  type Frame,
  FrameReader,
  FrontendType,
  ProtocolError,
  toClient,
} from "./wire.js";

export interface PostgresResource {
  /** The name clients put as the database name, and the policy's input.resource.name. */
  name: string;
  labels: Record<string, string>;
  upstream: UpstreamTarget;
}

/** Turns a presented token into an identity; throws with a message naming the failed check. */
export interface TokenAuthenticator {
  verify(token: string): Promise<{ identity: Identity; expiresAt: Date }>;
}

export interface PostgresListenerOptions {
  host: string;
  port: number;
  resources: PostgresResource[];
  pipeline: CommandPipeline;
  auth: TokenAuthenticator;
  tls?: SecureContextOptions;
  /** Allow the token over a connection without TLS from non-loopback clients (never do this in production). */
  allowCleartextToken?: boolean;
  /** Largest client message accepted (bytes). */
  maxMessageBytes?: number;
  /** Key for the `hash` masking strategy. */
  maskKey?: Buffer;
  log?: Logger;
  /** Session transcripts (JSON lines), e.g. the audit trail's recording API. */
  transcripts?: (sessionId: string) => (entry: Record<string, unknown>) => void;
}

const STARTUP_TIMEOUT_MS = 30_000;

function isLoopback(addr: string | undefined): boolean {
  return (
    !!addr &&
    (addr.startsWith("127.") ||
      addr === "::1" ||
      addr === "::ffff:127.0.0.1" ||
      addr.startsWith("::ffff:127."))
  );
}

export class PostgresListener {
  private server: Server | null = null;
  private readonly log: Logger;
  private readonly resources: Map<string, PostgresResource>;
  private readonly catalogs = new Map<string, Catalog>();
  private readonly masker: Masker;
  private readonly sessions = new Set<ProxySession>();
  /** Our BackendKeyData → the upstream's, so a client's CancelRequest reaches the right backend. */
  private readonly cancelKeys = new Map<
    number,
    { secret: number; target: UpstreamTarget; key: { pid: number; secret: number } }
  >();
  private nextPid = 1;
  private readonly secureContext;

  constructor(private readonly options: PostgresListenerOptions) {
    this.log = options.log ?? silentLogger;
    this.resources = new Map(options.resources.map((r) => [r.name, r]));
    this.masker = new Masker(options.maskKey ?? Buffer.from(randomUUID()));
    this.secureContext = options.tls ? createSecureContext(options.tls) : null;
  }

  async listen(): Promise<{ host: string; port: number }> {
    await initAnalyzer();
    const server = createServer((socket) => this.accept(socket));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.options.port, this.options.host, () => resolve());
    });
    const addr = server.address() as { address: string; port: number };
    this.log.info({ host: addr.address, port: addr.port }, "postgres listener ready");
    return { host: addr.address, port: addr.port };
  }

  get sessionCount(): number {
    return this.sessions.size;
  }

  async close(): Promise<void> {
    for (const s of this.sessions) s.close("gateway shutting down");
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    await Promise.all([...this.catalogs.values()].map((c) => c.close()));
  }

  private catalogFor(resource: PostgresResource): Catalog {
    let c = this.catalogs.get(resource.name);
    if (!c) {
      c = new Catalog(resource.upstream);
      this.catalogs.set(resource.name, c);
    }
    return c;
  }

  private accept(raw: Socket): void {
    raw.setNoDelay(true);
    raw.on("error", () => {}); // reported through the handshake below
    this.handshake(raw).catch((err: unknown) => {
      const e = err instanceof ProtocolError ? err : new ProtocolError(errorText(err), "08006");
      this.log.warn({ client: raw.remoteAddress }, `connection refused: ${e.message}`);
      if (!raw.destroyed)
        raw.end(toClient.errorResponse({ severity: "FATAL", code: e.sqlstate, message: e.message }));
    });
  }

  /** Reads the next startup-phase frame from `socket`, with a deadline. */
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
        reject(new ProtocolError("client disconnected during start-up"));
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new ProtocolError(`start-up not completed within ${STARTUP_TIMEOUT_MS / 1000} s`));
      }, STARTUP_TIMEOUT_MS);
      const cleanup = () => {
        clearTimeout(timer);
        socket.removeListener("data", onData);
        socket.removeListener("close", onEnd);
      };
      socket.on("data", onData);
      socket.once("close", onEnd);
      tryNext();
    });
  }

  private async handshake(raw: Socket): Promise<void> {
    let socket: Socket = raw;
    let tls = false;
    let reader = new FrameReader(64 * 1024);
    let startup: ReturnType<typeof decodeStartup>;
    for (;;) {
      startup = decodeStartup(await this.readFrame(socket, reader));
      if (startup.kind === "ssl") {
        socket.write(toClient.sslAnswer(this.secureContext !== null));
        if (this.secureContext) {
          const secure = new TLSSocket(socket, { isServer: true, secureContext: this.secureContext });
          await new Promise<void>((resolve, reject) => {
            secure.once("secure", resolve);
            secure.once("error", reject);
          });
          secure.on("error", () => {});
          socket = secure;
          tls = true;
          reader = new FrameReader(64 * 1024);
        }
        continue;
      }
      if (startup.kind === "gssenc") {
        socket.write(toClient.sslAnswer(false));
        continue;
      }
      break;
    }
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
    if (!tls && !this.options.allowCleartextToken && !isLoopback(raw.remoteAddress)) {
      throw new ProtocolError(
        "pamgate requires TLS for token authentication from non-loopback clients: connect with sslmode=require",
        "28000",
      );
    }

    // The token is the password. Ask for it in cleartext — inside TLS, or on loopback.
    socket.write(toClient.authCleartext());
    reader.startup = false;
    const pw = await this.readFrame(socket, reader);
    if (pw.type !== FrontendType.password)
      throw new ProtocolError("expected a password message carrying the access token");
    const token = decodePassword(pw);
    if (!token)
      throw new ProtocolError("no access token: pass your OIDC access token as the password", "28P01");
    let verified: { identity: Identity; expiresAt: Date };
    try {
      verified = await this.options.auth.verify(token);
    } catch (err) {
      throw new ProtocolError(`access token rejected: ${errorText(err)}`, "28P01");
    }

    const upstream = await connectUpstream(resource.upstream, params).catch((err: unknown) => {
      throw new ProtocolError(`pamgate cannot reach resource "${resource.name}": ${errorText(err)}`, "08006");
    });

    const id = randomUUID();
    const pid = this.nextPid++;
    const secret = randomInt(1, 2 ** 31 - 1);
    if (upstream.backendKey)
      this.cancelKeys.set(pid, { secret, target: resource.upstream, key: upstream.backendKey });

    const res: Resource = { name: resource.name, kind: "postgres", labels: resource.labels };
    const ctx: SessionContext = {
      id,
      protocol: "postgres",
      resource: res,
      identity: verified.identity,
      expiresAt: verified.expiresAt,
      clientAddr: raw.remoteAddress ?? "",
      input: new SessionInput({
        protocol: "postgres",
        resource: res,
        identity: verified.identity,
        session: {
          id,
          client_addr: raw.remoteAddress ?? "",
          started_at: new Date().toISOString(),
          approval_id: null,
        },
      }),
    };

    const hello = [toClient.authOk()];
    for (const [k, v] of upstream.parameters) hello.push(toClient.parameterStatus(k, v));
    hello.push(toClient.backendKeyData(pid, secret), toClient.readyForQuery("I"));
    socket.write(Buffer.concat(hello));

    const transcript = this.options.transcripts?.(id);
    transcript?.({
      event: "start",
      resource: resource.name,
      identity: verified.identity,
      client_addr: raw.remoteAddress,
    });
    const session = new ProxySession(socket, upstream.socket as Socket, ctx, {
      pipeline: this.options.pipeline,
      catalog: this.catalogFor(resource),
      masker: this.masker,
      log: this.log,
      maxFrame: this.options.maxMessageBytes ?? 64 * 1024 * 1024,
      transcript,
    });
    this.sessions.add(session);
    socket.once("close", () => {
      this.sessions.delete(session);
      this.cancelKeys.delete(pid);
    });
    this.log.info(
      {
        session: id,
        resource: resource.name,
        sub: verified.identity.sub,
        actors: verified.identity.actors.map((a) => a.sub),
      },
      "session started",
    );
    session.start(reader.drain());
  }

  private async cancel(pid: number, secret: number): Promise<void> {
    const entry = this.cancelKeys.get(pid);
    // A wrong secret is ignored silently, as PostgreSQL does, so keys cannot be probed.
    if (!entry || entry.secret !== secret) return;
    await cancelUpstream(entry.target, entry.key);
  }
}
