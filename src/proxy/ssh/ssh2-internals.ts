// The few places pamgate reaches into ssh2 (1.17) beyond its public API, in one file so an upgrade is checked
// in one place (test/integration/ssh-gateway.test.ts exercises each):
//   - sendPacket (lib/protocol/utils.js) and Protocol#_packetRW, to write messages ssh2 has no method for;
//   - a server connection's Protocol#_handlers.CHANNEL_OPEN, so that every channel type — forwarding and
//     unknown ones too — is decided (and recorded) by pamgate, and a refusal tells the client why: ssh2 itself
//     refuses unknown types silently and gives no way to put a message into CHANNEL_OPEN_FAILURE.
// Each accessor checks the shape it relies on and throws a clear error rather than misbehave.
import { createRequire } from "node:module";
import type { Connection } from "ssh2";

const require = createRequire(import.meta.url);

export interface PacketWriter {
  allocStart: number;
  alloc(len: number): Buffer;
  finalize(packet: Buffer): Buffer;
}

export interface ProtocolInternals {
  _packetRW: { write: PacketWriter };
  _handlers: Record<string, ((proto: unknown, ...args: unknown[]) => void) | undefined>;
  channelOpenFail(remote: number, reason: number, desc: string): void;
}

export type SendPacket = (protocol: unknown, packet: Buffer) => unknown;

export function loadSendPacket(): SendPacket {
  let mod: { sendPacket?: unknown };
  try {
    mod = require("ssh2/lib/protocol/utils.js") as { sendPacket?: unknown };
  } catch {
    throw new Error("ssh2 internals changed: ssh2/lib/protocol/utils.js is gone");
  }
  if (typeof mod.sendPacket !== "function")
    throw new Error("ssh2 internals changed: utils.sendPacket is gone");
  return mod.sendPacket as SendPacket;
}

/** The Protocol behind a connection (server side) or a client. */
export function protocolOf(conn: object): ProtocolInternals {
  const proto = (conn as { _protocol?: Partial<ProtocolInternals> })._protocol;
  const w = proto?._packetRW?.write;
  if (
    typeof proto !== "object" ||
    typeof w?.alloc !== "function" ||
    typeof w.finalize !== "function" ||
    typeof proto._handlers !== "object" ||
    typeof proto.channelOpenFail !== "function"
  )
    throw new Error("ssh2 internals changed: the connection's Protocol is not the expected shape");
  return proto as ProtocolInternals;
}

const SSH_MSG_USERAUTH_BANNER = 53;
const SSH_OPEN_ADMINISTRATIVELY_PROHIBITED = 1;

/**
 * Sends SSH_MSG_USERAUTH_BANNER (RFC 4252 §5.4: allowed any time before authentication succeeds): OpenSSH prints
 * it on stderr, the only way to tell a client why its token was refused.
 */
export function sendAuthBanner(conn: Connection, text: string): void {
  const proto = protocolOf(conn);
  const sendPacket = loadSendPacket();
  const msg = Buffer.from(text.endsWith("\n") ? text : `${text}\n`, "utf8");
  const w = proto._packetRW.write;
  const packet = w.alloc(1 + 4 + msg.length + 4);
  let p = w.allocStart;
  packet[p++] = SSH_MSG_USERAUTH_BANNER;
  packet.writeUInt32BE(msg.length, p);
  msg.copy(packet, p + 4);
  packet.writeUInt32BE(0, p + 4 + msg.length); // language tag ""
  sendPacket(proto, w.finalize(packet));
}

/** A channel the client asked to open, other than `session` (which ssh2's own 'session' event serves). */
export interface ChannelOpenRequest {
  type: string;
  /** ssh2's parsed type-specific data: destIP/destPort/srcIP/srcPort for direct-tcpip, socketPath for streamlocal. */
  data: Record<string, unknown>;
  /** Let ssh2 handle it as usual (it then emits 'tcpip' / 'openssh.streamlocal'). */
  proceed(): void;
  /** Refuse it with a message the client prints ("open failed: administratively prohibited: <why>"). */
  refuse(why: string): void;
}

/**
 * Routes every non-session CHANNEL_OPEN of an authenticated connection to `onOpen` first. Before authentication
 * ssh2's own handler runs (and refuses).
 */
export function interceptChannelOpen(
  conn: Connection & { authenticated?: boolean },
  onOpen: (req: ChannelOpenRequest) => void,
): void {
  const proto = protocolOf(conn);
  const original = proto._handlers.CHANNEL_OPEN;
  if (typeof original !== "function")
    throw new Error("ssh2 internals changed: Protocol#_handlers.CHANNEL_OPEN is missing");
  proto._handlers.CHANNEL_OPEN = (p: unknown, ...args: unknown[]) => {
    const info = args[0] as { type?: unknown; sender?: unknown; data?: unknown } | undefined;
    if (!info || info.type === "session" || conn.authenticated !== true || typeof info.sender !== "number") {
      original(p, ...args);
      return;
    }
    const sender = info.sender;
    let answered = false;
    onOpen({
      type: String(info.type),
      data: (info.data as Record<string, unknown> | undefined) ?? {},
      proceed: () => {
        if (answered) return;
        answered = true;
        original(p, ...args);
      },
      refuse: (why) => {
        if (answered) return;
        answered = true;
        proto.channelOpenFail(sender, SSH_OPEN_ADMINISTRATIVELY_PROHIBITED, why);
      },
    });
  };
}
