// The SSH listener: an ssh2 Server with the gateway's host key. The client names the resource in the SSH user name
// (`login@resource`, `resource`, or a name in listeners.ssh.users) and presents its OIDC access token as the
// password or at the keyboard-interactive prompt; the gateway's session opener verifies it (the SSH transport is
// encrypted, so the token never travels in the clear). A refusal is sent as a USERAUTH banner, which OpenSSH
// prints, before authentication fails. Each authenticated connection is an SshConnection.
import { readFileSync } from "node:fs";
import { createServer, type Server as NetServer, type Socket } from "node:net";
import ssh2, { type AuthContext, type Connection } from "ssh2";
import { type Authenticated, type OpenSession, SessionRefusedError } from "../../gateway/sessions.js";
import type { ComponentStatus } from "../../status/status.js";
import { errorText } from "../../util/errors.js";
import { silentLogger } from "../../util/log.js";
import type { AdapterContext, AdapterListener } from "../adapter.js";
import { type PendingConnection, PendingConnections } from "../limits.js";
import { CertificateAuthority } from "./certificate.js";
import { type CommandLineParser, loadCommandLineParser } from "./command-line.js";
import type { SshListenerConfig, SshUpstreamConfig } from "./config.js";
import { SshConnection } from "./connection.js";
import { KeyBindings } from "./key-bindings.js";
import { sendAuthBanner } from "./ssh2-internals.js";
import { SshTarget } from "./target.js";

const { Server } = ssh2;

/** Token attempts per connection before it is closed. */
const MAX_AUTH_ATTEMPTS = 3;
const TOKEN_METHODS = ["keyboard-interactive", "password"] as const;

export type SshListenerOptions = AdapterContext<SshListenerConfig, SshUpstreamConfig>;

/** How long a socket told why it is closed may stay open for the client to read it. */
const CLOSE_LINGER_MS = 2_000;

/** A TCP connection that has not authenticated yet (listeners.ssh.auth_timeout_s, max_unauthenticated_connections). */
interface PendingSocket {
  socket: Socket;
  ticket: PendingConnection;
  /** The SSH connection, once the client sent its version line. */
  client: Connection | null;
  /** The client has asked to authenticate: a USERAUTH banner can tell it why it is closed. */
  authStarted: boolean;
}

export class SshListener implements AdapterListener {
  /** The listening socket: pamgate accepts TCP connections itself and hands each admitted one to `ssh`. */
  private server: NetServer | null = null;
  private readonly log;
  /** Connections not yet authenticated, by the client's address and port (as ssh2 reports them). */
  private readonly pending: PendingConnections;
  private readonly pendingSockets = new Map<string, PendingSocket>();
  private targets = new Map<string, SshTarget>();
  private readonly users: Record<string, string>;
  /** The CA that signs upstream certificates (listeners.ssh.ca_key_file), for targets made by a reload too. */
  private readonly ca: CertificateAuthority | null = null;
  private readonly connections = new Set<Connection>();
  private readonly live = new Set<SshConnection>();
  private parser: CommandLineParser | null = null;
  private hostKey: Buffer | null = null;
  private state: ComponentStatus = { state: "not_ready", message: "not listening yet" };
  /** Public keys bound to identities by their tokens (listeners.ssh.bind_keys), or null when not enabled. */
  private readonly bindings: KeyBindings | null;
  /** The methods a client may try next: the token's, and public keys when they can be bound. */
  private readonly methods: readonly ssh2.AuthenticationType[];

  constructor(private readonly options: SshListenerOptions) {
    this.log = options.log ?? silentLogger;
    const { config } = options;
    this.pending = new PendingConnections("ssh", config);
    this.bindings = config.bind_keys ? new KeyBindings() : null;
    this.methods = this.bindings ? ["publickey", ...TOKEN_METHODS] : TOKEN_METHODS;
    let ca: CertificateAuthority | null = null;
    if (config.ca_key_file) {
      try {
        ca = CertificateAuthority.fromPrivateKey(readFileSync(config.ca_key_file));
      } catch (err) {
        throw new Error(`listeners.ssh.ca_key_file ${config.ca_key_file}: ${errorText(err)}`);
      }
    }
    this.ca = ca;
    this.users = config.users ?? {};
    this.targets = this.targetsOf(options.resources);
  }

  /** The targets of `resources`; throws when one cannot be used or a listeners.ssh.users entry names none. */
  private targetsOf(resources: SshListenerOptions["resources"]): Map<string, SshTarget> {
    const ttl = this.options.config.certificate_ttl_s ?? 120;
    const targets = new Map<string, SshTarget>();
    for (const entry of resources) targets.set(entry.resource.name, new SshTarget(entry, this.ca, ttl));
    for (const [user, resource] of Object.entries(this.users))
      if (!targets.has(resource))
        throw new Error(`listeners.ssh.users.${user}: "${resource}" is not an ssh resource`);
    return targets;
  }

  prepareResources(resources: SshListenerOptions["resources"]): () => void {
    const next = this.targetsOf(resources);
    return () => {
      this.targets = next;
    };
  }

  async stopAccepting(): Promise<void> {
    this.state = { state: "not_ready", message: "draining: new connections are refused" };
    // Not awaited: close()'s callback waits for every open connection to end.
    this.server?.close();
  }

  async listen(): Promise<{ host: string; port: number }> {
    const { config } = this.options;
    try {
      this.hostKey = readFileSync(config.host_key_file);
    } catch (err) {
      this.state = { state: "error", message: `cannot read the host key: ${errorText(err)}` };
      throw new Error(`listeners.ssh.host_key_file ${config.host_key_file}: ${errorText(err)}`);
    }
    try {
      this.parser = await loadCommandLineParser({
        maxBytes: config.max_command_bytes ?? 16 * 1024,
        maxNesting: config.max_command_nesting,
      });
    } catch (err) {
      this.state = { state: "error", message: `the shell parser cannot be loaded: ${errorText(err)}` };
      throw err;
    }
    const ssh = new Server(
      {
        hostKeys: [this.hostKey],
        ident: "pamgate",
        debug: process.env.PAMGATE_SSH_DEBUG ? (s: string) => console.error(s) : undefined,
      },
      (client, info) => this.accept(client, info.ip, info.port),
    );
    // TCP is accepted here, not by ssh2, so that the limits on unauthenticated connections apply from the first
    // byte (ssh2 reports a connection only once the client has sent its version line).
    const server = createServer((socket) => this.admit(socket, ssh));
    this.server = server;
    const { host = "127.0.0.1", port } = config;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => resolve());
    });
    server.on("error", (err: Error) => {
      this.state = { state: "error", message: `listener failed: ${err.message}` };
    });
    const addr = server.address() as { address: string; port: number };
    this.state = { state: "ok", message: `listening on ${addr.address}:${addr.port}` };
    this.log.info({ host: addr.address, port: addr.port }, "ssh listener ready");
    return { host: addr.address, port: addr.port };
  }

  status(): ComponentStatus {
    return {
      ...this.state,
      details: { sessions: this.live.size, connections: this.connections.size, ...this.pending.stats() },
    };
  }

  get sessionCount(): number {
    return this.live.size;
  }

  async close(): Promise<void> {
    this.state = { state: "not_ready", message: "shutting down" };
    for (const c of this.live) c.close("gateway shutting down");
    for (const c of this.connections) c.end();
    for (const p of this.pendingSockets.values()) p.socket.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  /** The resource an SSH user name selects, or why it selects none. */
  private resolve(username: string): SshTarget | string {
    const mapped = this.users[username];
    if (mapped) return this.targets.get(mapped) as SshTarget;
    const at = username.lastIndexOf("@");
    const name = at >= 0 ? username.slice(at + 1) : username;
    const target = this.targets.get(name);
    if (!target) {
      const names = [...this.targets.keys()].join(", ");
      return `"${name}" is not a pamgate ssh resource (configured: ${names}); connect as login@resource`;
    }
    const login = at >= 0 ? username.slice(0, at) : "";
    if (login && login !== target.target.user)
      return `resource "${name}" is reached as ${target.target.user}, not ${login}: connect as ${target.target.user}@${name}`;
    return target;
  }

  /**
   * A TCP connection: admitted and handed to ssh2 while fewer than max_unauthenticated_connections are pending,
   * else refused at once with a line saying why (RFC 4253 §4.2 lets a server send lines before its version line;
   * OpenSSH logs such lines only with -v; a raw or scripted client reads it). The auth timeout runs from here.
   */
  private admit(socket: Socket, ssh: InstanceType<typeof Server>): void {
    socket.on("error", () => {});
    const key = `${socket.remoteAddress}:${socket.remotePort}`;
    const ticket = this.pending.admit(() => this.timedOut(key));
    if (!ticket) {
      this.log.warn({ client: socket.remoteAddress }, `ssh connection refused: ${this.pending.busyMessage}`);
      socket.end(`${this.pending.busyMessage}\r\n`);
      setTimeout(() => socket.destroy(), CLOSE_LINGER_MS).unref();
      return;
    }
    this.pendingSockets.set(key, { socket, ticket, client: null, authStarted: false });
    socket.once("close", () => {
      ticket.release();
      if (this.pendingSockets.get(key)?.socket === socket) this.pendingSockets.delete(key);
    });
    ssh.injectSocket(socket);
  }

  /** auth_timeout_s passed before the connection authenticated: told why where SSH can say it, and closed. */
  private timedOut(key: string): void {
    const p = this.pendingSockets.get(key);
    if (!p) return;
    this.pendingSockets.delete(key);
    this.log.warn({ client: p.socket.remoteAddress }, this.pending.timeoutMessage);
    if (p.client && p.authStarted) this.banner(p.client, this.pending.timeoutMessage);
    if (p.client) p.client.end();
    else p.socket.end();
    setTimeout(() => p.socket.destroy(), CLOSE_LINGER_MS).unref();
  }

  private accept(client: Connection, remoteAddress: string, remotePort: number): void {
    this.connections.add(client);
    client.on("error", (err) => this.log.warn({ client: remoteAddress }, `ssh client error: ${err.message}`));
    const key = `${remoteAddress}:${remotePort}`;
    const pending = this.pendingSockets.get(key);
    if (!pending) {
      // Timed out meanwhile (or not accepted through admit): not served.
      client.end();
      return;
    }
    pending.client = client;
    let connection: SshConnection | null = null;
    let opened: OpenSession | null = null;
    let attempts = 0;
    let busy = false;

    /** A public key this client proved it holds, not bound yet: bound to the token's identity if one follows. */
    let provenKey: Buffer | null = null;

    const start = async (auth: Authenticated, target: SshTarget, how: "token" | "key") => {
      // Opened before authentication succeeds, so the session exists when the first channel arrives.
      opened = await this.options.sessions.open(auth, { auth_method: how });
      connection = new SshConnection(client, opened, {
        pipeline: this.options.pipeline,
        target,
        parser: this.parser as CommandLineParser,
        maxCommandBytes: this.options.config.max_command_bytes ?? 16 * 1024,
        log: this.log,
      });
      connection.start();
      this.live.add(connection);
      pending.ticket.authenticated();
      this.pendingSockets.delete(key);
    };
    const refused = (ctx: AuthContext, target: SshTarget, err: unknown) => {
      attempts++;
      const message = err instanceof SessionRefusedError ? err.message : errorText(err);
      this.log.warn({ client: remoteAddress, resource: target.name }, `ssh session refused: ${message}`);
      this.banner(client, `pamgate: ${message}`);
      if (attempts >= MAX_AUTH_ATTEMPTS) {
        ctx.reject([]);
        client.end();
      } else ctx.reject([...this.methods]);
    };

    /** One authentication attempt at a time: `work` opens the session, then the client is told yes (or why not). */
    const attempt = (ctx: AuthContext, target: SshTarget, work: () => Promise<void>) => {
      busy = true;
      work()
        .then(() => ctx.accept())
        .catch((err: unknown) => refused(ctx, target, err))
        .finally(() => {
          busy = false;
        });
    };

    // Public keys (listeners.ssh.bind_keys): a signature by a bound key is the identity it was bound to; a valid
    // signature by an unbound key is a partial success — the token must follow, and binds the key.
    const publicKey = (ctx: AuthContext, target: SshTarget) => {
      const pk = ctx as ssh2.PublicKeyAuthContext;
      const key = ssh2.utils.parseKey(pk.key.data);
      if (key instanceof Error || Array.isArray(key)) return ctx.reject([...this.methods]);
      // Without a signature the client only asks whether the key would do: yes, if it can sign.
      if (!pk.signature || !pk.blob) return ctx.accept();
      if (key.verify(pk.blob, pk.signature, pk.hashAlgo) !== true) return ctx.reject([...this.methods]);
      const bound = this.bindings?.lookup(pk.key.data);
      if (!bound) {
        provenKey = pk.key.data;
        return ctx.reject([...TOKEN_METHODS], true);
      }
      const auth: Authenticated = {
        protocol: "ssh",
        resource: target.entry.resource,
        identity: bound.identity,
        expiresAt: bound.expiresAt,
        transport: { remoteAddress, tls: true },
      };
      attempt(ctx, target, () => start(auth, target, "key"));
    };

    client.on("authentication", (ctx: AuthContext) => {
      pending.authStarted = true;
      const target = this.resolve(ctx.username);
      if (typeof target === "string") {
        this.banner(client, `pamgate: ${target}`);
        return ctx.reject([]);
      }
      if (busy) return ctx.reject([...this.methods]);
      if (ctx.method === "publickey" && this.bindings) return publicKey(ctx, target);
      if (ctx.method !== "password" && ctx.method !== "keyboard-interactive")
        return ctx.reject([...this.methods]);
      attempt(ctx, target, async () => {
        const auth = await this.authenticate(ctx, target, remoteAddress);
        await start(auth, target, "token");
        if (provenKey && this.bindings) {
          const b = this.bindings.bind(provenKey, auth.identity, auth.expiresAt);
          opened?.transcript({
            event: "key_bound",
            fingerprint: b.fingerprint,
            until: b.expiresAt.toISOString(),
          });
          this.log.info(
            {
              client: remoteAddress,
              sub: auth.identity.sub,
              key: b.fingerprint,
              until: b.expiresAt.toISOString(),
            },
            "ssh public key bound to the token's identity",
          );
        }
      });
    });
    client.on("close", () => {
      pending.ticket.release();
      this.connections.delete(client);
      if (connection) {
        this.live.delete(connection);
        connection.close("client disconnected");
      } else (opened as OpenSession | null)?.end("client disconnected");
    });
  }

  /** The token from the password or the keyboard-interactive answer, verified by the session opener. */
  private authenticate(ctx: AuthContext, target: SshTarget, remoteAddress: string): Promise<Authenticated> {
    return this.options.sessions.authenticate({
      protocol: "ssh",
      resource: target.entry.resource,
      // The SSH transport is encrypted and the server authenticated by its host key: as good as TLS for the token.
      transport: { remoteAddress, tls: true },
      getToken: () =>
        ctx.method === "password"
          ? Promise.resolve((ctx as AuthContext & { password: string }).password)
          : new Promise<string | undefined>((resolve) => {
              (ctx as ssh2.KeyboardAuthContext).prompt(
                [{ prompt: "pamgate access token: ", echo: false }],
                "pamgate",
                "Paste your OIDC access token.",
                (answers) => resolve(Array.isArray(answers) ? answers[0] : undefined),
              );
            }),
    });
  }

  private banner(client: Connection, text: string): void {
    try {
      sendAuthBanner(client, text);
    } catch (err) {
      this.log.error({}, `cannot send the SSH banner: ${errorText(err)}`);
    }
  }
}
