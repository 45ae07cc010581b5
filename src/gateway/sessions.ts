// Opening a client session, the same way for every protocol: the TLS-for-token rule, token verification, the
// session's context and fixed policy input, its transcript, its durable start and end records, and the registry
// of live sessions. An adapter calls `authenticate` before it connects upstream (so no upstream work is done for
// a bad token) and `open` once the upstream is ready; everything it learns here is protocol-neutral.
import { randomUUID } from "node:crypto";
import type { AuditTrail, TerminalRecording, TerminalRecordingOptions } from "../audit/index.js";
import type { Identity, Protocol, Resource, SessionInfo } from "../decision/contract.js";
import { SessionInput } from "../decision/engine.js";
import type { GatewayReasonCode } from "../decision/reasons.js";
import type { SessionContext } from "../pipeline/pipeline.js";
import { errorText } from "../util/errors.js";
import { type Logger, silentLogger } from "../util/log.js";
import { isLoopback } from "../util/net.js";

/** Turns a presented token into an identity; throws with a message naming the failed check. */
export interface TokenAuthenticator {
  verify(token: string): Promise<{ identity: Identity; expiresAt: Date }>;
}

/** What the opener needs of the audit trail: durable records, transcripts and terminal recordings. */
export type SessionAudit = Pick<AuditTrail, "record" | "openTranscript" | "openTerminalRecording">;

/** Why a session was refused; `code` is a reason code, `message` what the client is told. */
export class SessionRefusedError extends Error {
  override name = "SessionRefusedError";
  constructor(
    readonly code: GatewayReasonCode,
    message: string,
  ) {
    super(message);
  }
}

/** How the client reached the listener. */
export interface Transport {
  remoteAddress: string;
  tls: boolean;
  /** listeners.<protocol>.allow_cleartext_token */
  allowCleartextToken?: boolean;
}

/** A verified client, before its session is opened. */
export interface Authenticated {
  protocol: Protocol;
  resource: Resource;
  identity: Identity;
  expiresAt: Date;
  transport: Transport;
}

/** A live session. */
export interface OpenSession {
  readonly ctx: SessionContext;
  /** Appends an entry to the session transcript (a no-op without an audit trail). */
  transcript(entry: Record<string, unknown>): void;
  /**
   * Starts an asciicast v2 recording of a terminal (a shell, an exec) in this session, with the recording id
   * `<session id>/<n>` (its `sessionId`); null without an audit trail. Close it when the terminal ends; whatever is still open is closed when the session ends.
   */
  terminal(options: TerminalRecordingOptions): TerminalRecording | null;
  /** Ends the session: the transcript is closed, the end record written, the session unregistered. Idempotent. */
  end(reason: string): void;
}

export interface SessionOpenerOptions {
  auth: TokenAuthenticator;
  audit?: SessionAudit | null;
  log?: Logger;
  /**
   * Sessions one requester may have open at once, across protocols and resources (limits.sessions_per_identity;
   * default DEFAULT_SESSIONS_PER_IDENTITY). The requester is the token's subject at its issuer — the original
   * requester, whoever presents the token for them (docs/identity.md).
   */
  maxSessionsPerIdentity?: number;
}

export const DEFAULT_SESSIONS_PER_IDENTITY = 64;

/** Whom sessions are counted for: the requester, the token's subject at its issuer. */
function requesterKey(identity: Identity): string {
  return `${identity.iss}\0${identity.sub}`;
}

export class SessionOpener {
  private readonly log: Logger;
  private readonly live = new Map<string, OpenSession>();
  /** The last records of sessions that ended (transcript, terminals, end record) still on their way. */
  private readonly ending = new Set<Promise<unknown>>();
  /** Sessions open (or being opened) per requester (requesterKey), for maxSessionsPerIdentity. */
  private readonly perIdentity = new Map<string, number>();
  private readonly maxPerIdentity: number;

  constructor(private readonly options: SessionOpenerOptions) {
    this.log = options.log ?? silentLogger;
    this.maxPerIdentity = options.maxSessionsPerIdentity ?? DEFAULT_SESSIONS_PER_IDENTITY;
  }

  /**
   * Checks that the token may be sent over this transport — call it before asking the client for the token, so a
   * token is never invited over cleartext — then obtains it with `getToken` and verifies it.
   */
  async authenticate(req: {
    protocol: Protocol;
    resource: Resource;
    transport: Transport;
    getToken: () => Promise<string | undefined>;
  }): Promise<Authenticated> {
    const { transport } = req;
    if (!transport.tls && !transport.allowCleartextToken && !isLoopback(transport.remoteAddress)) {
      throw new SessionRefusedError(
        "identity.tls_required",
        "pamgate requires TLS for token authentication from non-loopback clients",
      );
    }
    const token = await req.getToken();
    if (!token) {
      throw new SessionRefusedError(
        "identity.no_token",
        "no access token: present your OIDC access token as the password",
      );
    }
    let verified: Awaited<ReturnType<TokenAuthenticator["verify"]>>;
    try {
      verified = await this.options.auth.verify(token);
    } catch (err) {
      throw new SessionRefusedError("identity.token_rejected", `access token rejected: ${errorText(err)}`);
    }
    const auth: Authenticated = { protocol: req.protocol, resource: req.resource, ...verified, transport };
    // Checked here already, so that no upstream work is done for a requester at the limit; `open` counts.
    if ((this.perIdentity.get(requesterKey(auth.identity)) ?? 0) >= this.maxPerIdentity)
      await this.refuseOverLimit(auth);
    return auth;
  }

  /**
   * Refuses a session of a requester who has maxSessionsPerIdentity open: the refusal is recorded (a `session`
   * record with event `refused`, its code and reason) and thrown as a SessionRefusedError.
   */
  private async refuseOverLimit(auth: Authenticated): Promise<never> {
    const who = auth.identity.sub;
    const message = `${who} already has ${this.maxPerIdentity} sessions open through pamgate, the limit (limits.sessions_per_identity); end one and try again`;
    this.log.warn(
      {
        protocol: auth.protocol,
        resource: auth.resource.name,
        sub: who,
        client: auth.transport.remoteAddress,
      },
      `session refused: ${message}`,
    );
    await this.options.audit
      ?.record("session", {
        event: "refused",
        code: "session.identity_limit",
        reason: message,
        protocol: auth.protocol,
        resource: auth.resource.name,
        sub: who,
        actors: auth.identity.actors.map((a) => a.sub),
        client_addr: auth.transport.remoteAddress,
        tls: auth.transport.tls,
        at: new Date().toISOString(),
      })
      .catch((err: unknown) =>
        this.log.error({ sub: who }, `session refusal not recorded: ${errorText(err)}`),
      );
    throw new SessionRefusedError("session.identity_limit", message);
  }

  /**
   * Opens the session: its context and policy input (with `session` fields the adapter adds), its transcript,
   * and a durable start record. A trail that cannot take the start record refuses the session (fail closed:
   * none of its commands could be recorded either).
   */
  async open(auth: Authenticated, extra: Partial<SessionInfo> = {}): Promise<OpenSession> {
    // Counted from here, before anything is awaited, so concurrent opens cannot all slip under the limit.
    const key = requesterKey(auth.identity);
    const held = this.perIdentity.get(key) ?? 0;
    if (held >= this.maxPerIdentity) await this.refuseOverLimit(auth);
    this.perIdentity.set(key, held + 1);
    let counted = true;
    const uncount = () => {
      if (!counted) return;
      counted = false;
      const n = (this.perIdentity.get(key) ?? 1) - 1;
      if (n > 0) this.perIdentity.set(key, n);
      else this.perIdentity.delete(key);
    };
    const id = randomUUID();
    const startedAt = new Date().toISOString();
    const clientAddr = auth.transport.remoteAddress;
    const session: SessionInfo = {
      id,
      client_addr: clientAddr,
      started_at: startedAt,
      approval_id: null,
      ...extra,
    };
    const ctx: SessionContext = {
      id,
      protocol: auth.protocol,
      resource: auth.resource,
      identity: auth.identity,
      expiresAt: auth.expiresAt,
      clientAddr,
      input: new SessionInput({
        protocol: auth.protocol,
        resource: auth.resource,
        identity: auth.identity,
        session,
      }),
    };
    const audit = this.options.audit;
    const summary = {
      session_id: id,
      protocol: auth.protocol,
      resource: auth.resource.name,
      sub: auth.identity.sub,
      actors: auth.identity.actors.map((a) => a.sub),
      client_addr: clientAddr,
      tls: auth.transport.tls,
    };
    if (audit) {
      try {
        await audit.record("session", { event: "start", ...summary, started_at: startedAt });
      } catch (err) {
        uncount();
        throw new SessionRefusedError(
          "audit.unavailable",
          `the audit trail cannot record this session, so it is refused: ${errorText(err)}`,
        );
      }
    }
    const transcript = audit?.openTranscript(id, { meta: { protocol: auth.protocol } }) ?? null;
    transcript?.entry({
      event: "start",
      resource: auth.resource.name,
      identity: auth.identity,
      client_addr: clientAddr,
    });
    let ended = false;
    const terminals = new Set<TerminalRecording>();
    let terminalCount = 0;
    const open: OpenSession = {
      ctx,
      transcript: (entry) => {
        if (!ended) transcript?.entry(entry);
      },
      terminal: (options) => {
        if (!audit || ended) return null;
        // Each terminal is its own recording, `<session id>/<n>`, beside the session's transcript (which has the
        // session id): `pamgate replay <session id>/<n>` plays it.
        const recordingId = `${id}/${++terminalCount}`;
        const rec = audit.openTerminalRecording(recordingId, options);
        terminals.add(rec);
        transcript?.entry({ event: "recording", recording_id: recordingId, format: "asciicast-v2" });
        return rec;
      },
      end: (reason) => {
        if (ended) return;
        ended = true;
        this.live.delete(id);
        uncount();
        const writes: Array<Promise<unknown> | undefined> = [];
        for (const rec of terminals) if (!rec.isClosed) writes.push(rec.close().catch(() => {})); // failures: in rec.error
        transcript?.entry({ event: "end", reason });
        // A spool that refuses the last chunk (full, failing disk) must not take the gateway down with it.
        writes.push(
          transcript
            ?.close()
            .catch((err: unknown) =>
              this.log.error(
                { session: id },
                `session transcript's last chunk not recorded: ${errorText(err)}`,
              ),
            ),
        );
        writes.push(
          audit
            ?.record("session", { event: "end", ...summary, ended_at: new Date().toISOString(), reason })
            .catch((err: unknown) =>
              this.log.error({ session: id }, `session end record failed: ${errorText(err)}`),
            ),
        );
        const done = Promise.all(writes).finally(() => this.ending.delete(done));
        this.ending.add(done);
        this.log.info({ session: id }, `session ended: ${reason}`);
      },
    };
    this.live.set(id, open);
    this.log.info(summary, "session started");
    return open;
  }

  /** Resolves once the last records of every session that has ended are written (before the spool closes). */
  async settled(): Promise<void> {
    while (this.ending.size > 0) await Promise.all([...this.ending]);
  }

  /** Sessions open (or being opened) for the requester of `identity`, across protocols. */
  countFor(identity: Identity): number {
    return this.perIdentity.get(requesterKey(identity)) ?? 0;
  }

  /** Live sessions, optionally of one protocol. */
  count(protocol?: Protocol): number {
    if (!protocol) return this.live.size;
    let n = 0;
    for (const s of this.live.values()) if (s.ctx.protocol === protocol) n++;
    return n;
  }
}
