// The gateway's connection to the real sshd: an ssh2 Client that pins the target's host key (never trust on
// first use) and logs in with a short-lived certificate from the gateway CA, or, as a fallback for targets
// that do not trust the CA yet, with a configured private key.
import { createHash, sign as cryptoSign } from "node:crypto";
import { createRequire } from "node:module";
import ssh2, { type AuthHandlerMiddleware, type ConnectConfig, type ParsedKey } from "ssh2";
import { CERT_TYPE, type IssuedCertificate, toOpenSSHPrivateKey } from "./certificate.js";

const { Client, utils } = ssh2;
const require = createRequire(import.meta.url);

export interface UpstreamTarget {
  host: string;
  port: number;
  user: string;
  /** pinned host key: "ssh-ed25519 AAAA…" line(s) or "SHA256:…" fingerprints; required (never trust on first use) */
  hostKeys: string[];
}

export type UpstreamCredential =
  | { certificate: IssuedCertificate }
  | { privateKey: string | Buffer; passphrase?: string };

export type UpstreamErrorKind = "unreachable" | "host_key" | "auth" | "timeout" | "protocol";

export class UpstreamError extends Error {
  constructor(
    readonly kind: UpstreamErrorKind,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "UpstreamError";
  }
}

export interface ConnectUpstreamOptions {
  /** Until authentication succeeds; default 20 s. */
  readyTimeoutMs?: number;
  /** Aborting before ready closes the connection and rejects with the signal's reason. */
  signal?: AbortSignal;
  keepaliveIntervalMs?: number;
}

// --- Host key pinning -----------------------------------------------------------------------------------

interface HostKeyPins {
  fingerprints: Set<string>;
  /** Host key algorithms to offer, when every pin is a full key (so its type is known). */
  algorithms: string[] | undefined;
}

const fingerprintOf = (blob: Buffer) =>
  `SHA256:${createHash("sha256").update(blob).digest("base64").replace(/=+$/, "")}`;

/** Host key algorithms ssh2 can negotiate for a pinned key type (RSA keys sign with several). */
const ALGORITHMS_FOR_TYPE: Record<string, string[]> = {
  "ssh-ed25519": ["ssh-ed25519"],
  "ssh-rsa": ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"],
  "ecdsa-sha2-nistp256": ["ecdsa-sha2-nistp256"],
  "ecdsa-sha2-nistp384": ["ecdsa-sha2-nistp384"],
  "ecdsa-sha2-nistp521": ["ecdsa-sha2-nistp521"],
};

function parsePins(hostKeys: string[]): HostKeyPins {
  const fingerprints = new Set<string>();
  const algorithms = new Set<string>();
  let allKeys = true;
  const entries = hostKeys.flatMap((k) => k.split("\n")).map((l) => l.trim());
  for (const entry of entries) {
    if (entry === "" || entry.startsWith("#")) continue;
    if (/^SHA256:[A-Za-z0-9+/]{43}=?$/.test(entry)) {
      fingerprints.add(entry.replace(/=$/, ""));
      allKeys = false;
      continue;
    }
    // "type base64 [comment]", optionally behind a known_hosts host field.
    const tokens = entry.split(/\s+/);
    const at = tokens.findIndex((t) => ALGORITHMS_FOR_TYPE[t] !== undefined);
    const type = tokens[at];
    const b64 = tokens[at + 1];
    const blob = b64 ? Buffer.from(b64, "base64") : undefined;
    if (at === -1 || !type || !blob || blob.length < 4 || leadingType(blob) !== type)
      throw new UpstreamError("host_key", `unreadable pinned host key: ${entry.slice(0, 80)}`);
    fingerprints.add(fingerprintOf(blob));
    for (const a of ALGORITHMS_FOR_TYPE[type] ?? []) algorithms.add(a);
  }
  if (fingerprints.size === 0)
    throw new UpstreamError(
      "host_key",
      "no pinned host key for the upstream: refusing to trust on first use",
    );
  // Offering only the pinned types keeps a server with several host keys from presenting an unpinned one.
  return { fingerprints, algorithms: allKeys ? [...algorithms] : undefined };
}

function leadingType(blob: Buffer): string | undefined {
  const len = blob.readUInt32BE(0);
  return blob.length >= 4 + len ? blob.subarray(4, 4 + len).toString("latin1") : undefined;
}

// --- Certificate authentication: a patch over ssh2's Protocol.authPK ------------------------------------
//
// ssh2 (written against 1.17.0) cannot authenticate with an OpenSSH certificate: its key parser has no
// certificate types, and its authPK() always writes the key's own type as the algorithm in both the request
// and the signature blob. For a certificate, SSH_MSG_USERAUTH_REQUEST must name the certificate type with the
// certificate as the key blob, while the signature blob inside stays string("ssh-ed25519") || string(sig).
//
// So the client is given the certificate's plain ed25519 key (ssh2 parses and accepts it), and this
// instance's `_protocol.authPK` is replaced by one that writes the certificate request itself. ssh2's
// client drives it exactly as before: authPK(user, key) for the query, then, on USERAUTH_PK_OK,
// authPK(user, key, algo, cbSign) for the signed request. The replacement depends on these ssh2 internals:
//   - Client#connect() creating `client._protocol` (a Protocol) synchronously, before any auth;
//   - Protocol#_kex.sessionID (the exchange hash of the first key exchange);
//   - Protocol#_packetRW.write.{allocStart, alloc(len), finalize(packet)} and
//     lib/protocol/utils.js sendPacket(protocol, packet) to frame and send a payload;
//   - Protocol#_authsQueue, onto which every USERAUTH_REQUEST pushes its method so that the reply
//     (USERAUTH_PK_OK / FAILURE / SUCCESS) is routed back to the client's handlers.
// All are checked before use; if any moved, authentication fails as UpstreamError "protocol" instead of
// sending a malformed request.

interface PacketWriter {
  allocStart: number;
  alloc(len: number): Buffer;
  finalize(packet: Buffer): Buffer;
}

interface ProtocolInternals {
  authPK: (username: string, pubKey: unknown, keyAlgo?: unknown, cbSign?: unknown) => void;
  _packetRW: { write: PacketWriter };
  _kex?: { sessionID?: unknown };
  _authsQueue: string[];
  _debug?: (msg: string) => void;
}

type SendPacket = (protocol: ProtocolInternals, packet: Buffer) => unknown;

const SSH_MSG_USERAUTH_REQUEST = 50;

function wireString(value: Buffer | string): Buffer {
  const data = typeof value === "string" ? Buffer.from(value, "utf8") : value;
  const len = Buffer.allocUnsafe(4);
  len.writeUInt32BE(data.length, 0);
  return Buffer.concat([len, data]);
}

function internalsMoved(what: string): UpstreamError {
  return new UpstreamError(
    "protocol",
    `ssh2 internals changed (${what}): the certificate authentication patch was written against ssh2 1.17 and needs review`,
  );
}

function loadSendPacket(): SendPacket {
  let mod: { sendPacket?: unknown };
  try {
    mod = require("ssh2/lib/protocol/utils.js") as { sendPacket?: unknown };
  } catch {
    throw internalsMoved("ssh2/lib/protocol/utils.js is gone");
  }
  if (typeof mod.sendPacket !== "function") throw internalsMoved("utils.sendPacket is gone");
  return mod.sendPacket as SendPacket;
}

function protocolOf(client: ssh2.Client): ProtocolInternals {
  const proto = (client as unknown as { _protocol?: Partial<ProtocolInternals> })._protocol;
  if (typeof proto !== "object" || proto === null) throw internalsMoved("Client#_protocol is missing");
  if (typeof proto.authPK !== "function") throw internalsMoved("Protocol#authPK is missing");
  const w = proto._packetRW?.write;
  if (typeof w?.alloc !== "function" || typeof w.finalize !== "function" || typeof w.allocStart !== "number")
    throw internalsMoved("Protocol#_packetRW.write is not the expected packet writer");
  if (!Array.isArray(proto._authsQueue)) throw internalsMoved("Protocol#_authsQueue is missing");
  return proto as ProtocolInternals;
}

/** Replaces authPK on this client's protocol; errors go to `fail` because ssh2 calls it from its parser. */
function installCertificateAuth(
  client: ssh2.Client,
  cert: IssuedCertificate,
  fail: (err: unknown) => void,
): void {
  const sendPacket = loadSendPacket();
  const proto = protocolOf(client);
  const original = proto.authPK;
  proto.authPK = function certificateAuthPK(username, pubKey, keyAlgo, cbSign) {
    // Only the certificate's own key is ours to handle; anything else keeps ssh2's behaviour.
    const blob = (pubKey as Partial<ParsedKey> | undefined)?.getPublicSSH?.();
    if (!Buffer.isBuffer(blob) || !blob.equals(cert.publicKeyBlob)) {
      original.call(this, username, pubKey, keyAlgo, cbSign);
      return;
    }
    try {
      const signed = typeof cbSign === "function" || typeof keyAlgo === "function";
      const sessionId = proto._kex?.sessionID;
      if (!Buffer.isBuffer(sessionId)) throw internalsMoved("Protocol#_kex.sessionID is missing");
      const request = Buffer.concat([
        Buffer.from([SSH_MSG_USERAUTH_REQUEST]),
        wireString(username),
        wireString("ssh-connection"),
        wireString("publickey"),
        Buffer.from([signed ? 1 : 0]),
        wireString(CERT_TYPE),
        wireString(cert.certBlob),
      ]);
      let payload = request;
      if (signed) {
        // RFC 4252 §7: the signature covers string(session id) followed by the request so far.
        const sig = cryptoSign(null, Buffer.concat([wireString(sessionId), request]), cert.privateKey);
        payload = Buffer.concat([
          request,
          wireString(Buffer.concat([wireString("ssh-ed25519"), wireString(sig)])),
        ]);
      }
      const w = proto._packetRW.write;
      const packet = w.alloc(payload.length);
      payload.copy(packet, w.allocStart);
      proto._authsQueue.push("publickey");
      proto._debug?.(
        `Outbound: Sending USERAUTH_REQUEST (publickey certificate -- ${signed ? "signed" : "check"})`,
      );
      sendPacket(proto, w.finalize(packet));
    } catch (err) {
      fail(err);
    }
  };
}

// --- Connecting -----------------------------------------------------------------------------------------

const UNREACHABLE_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EHOSTDOWN",
  "ETIMEDOUT",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EADDRNOTAVAIL",
  "EPIPE",
]);

function classify(err: Error & { level?: string; code?: unknown }, hostKeyRejected: string | undefined) {
  if (err instanceof UpstreamError) return err;
  const opts = { cause: err };
  if (hostKeyRejected !== undefined)
    return new UpstreamError("host_key", `upstream host key ${hostKeyRejected} is not the pinned key`, opts);
  if (err.level === "client-timeout") return new UpstreamError("timeout", err.message, opts);
  if (err.level === "client-authentication") return new UpstreamError("auth", err.message, opts);
  if (err.level === "client-dns" || (typeof err.code === "string" && UNREACHABLE_CODES.has(err.code)))
    return new UpstreamError("unreachable", err.message, opts);
  return new UpstreamError("protocol", err.message, opts);
}

/**
 * Connects and authenticates to the target sshd. Resolves with a ready Client (attach an "error" listener
 * before awaiting anything else); rejects with an UpstreamError, or with the signal's reason on abort.
 */
export function connectUpstream(
  target: UpstreamTarget,
  credential: UpstreamCredential,
  options: ConnectUpstreamOptions = {},
): Promise<ssh2.Client> {
  return new Promise((resolve, reject) => {
    const { signal } = options;
    if (signal?.aborted) return reject(signal.reason);

    let pins: HostKeyPins;
    let key: ParsedKey;
    try {
      pins = parsePins(target.hostKeys);
      key = authKey(credential);
    } catch (err) {
      return reject(err);
    }

    const client = new Client();
    let settled = false;
    let hostKeyRejected: string | undefined;
    const finish = (err?: unknown) => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener("abort", onAbort);
      client.removeListener("ready", onReady);
      client.removeListener("close", onClose);
      if (err === undefined) {
        client.removeListener("error", onError);
        resolve(client);
        return;
      }
      // ssh2 may still emit errors while tearing down; they must not become uncaught.
      client.removeListener("error", onError);
      client.on("error", () => {});
      client.destroy();
      reject(err);
    };
    const onError = (err: Error) => finish(classify(err, hostKeyRejected));
    const onReady = () => finish();
    const onClose = () =>
      finish(
        hostKeyRejected !== undefined
          ? classify(new Error("host key rejected"), hostKeyRejected)
          : new UpstreamError(
              // Closed after the key exchange: something listens and speaks SSH, but it hung up on us.
              handshaken ? "protocol" : "unreachable",
              "the upstream closed the connection before authentication",
            ),
      );
    const onAbort = () => finish(signal?.reason);
    let handshaken = false;
    client.once("handshake", () => {
      handshaken = true;
    });
    client.on("error", onError).on("ready", onReady).on("close", onClose);
    signal?.addEventListener("abort", onAbort, { once: true });

    // Offered once; a second call means the server refused it, which ssh2 turns into
    // "All configured authentication methods failed".
    let offered = false;
    const authHandler: AuthHandlerMiddleware = (_methodsLeft, _partial, next) => {
      // ssh2 accepts `false` for "no more methods"; @types/ssh2 leaves it out.
      if (offered) return next(false as never);
      offered = true;
      return next({ type: "publickey", username: target.user, key });
    };

    const config: ConnectConfig = {
      host: target.host,
      port: target.port,
      username: target.user,
      authHandler,
      readyTimeout: options.readyTimeoutMs ?? 20_000,
      keepaliveInterval: options.keepaliveIntervalMs ?? 0,
      hostVerifier: (hostKey: Buffer) => {
        const fp = fingerprintOf(hostKey);
        if (pins.fingerprints.has(fp)) return true;
        hostKeyRejected = fp;
        return false;
      },
    };
    if (pins.algorithms?.length) config.algorithms = { serverHostKey: pins.algorithms as never };

    try {
      client.connect(config);
      if ("certificate" in credential) installCertificateAuth(client, credential.certificate, finish);
    } catch (err) {
      finish(err instanceof UpstreamError ? err : new UpstreamError("protocol", String(err), { cause: err }));
    }
  });
}

/** The key ssh2 authenticates with: the certificate's own ed25519 key, or the configured private key. */
function authKey(credential: UpstreamCredential): ParsedKey {
  const material =
    "certificate" in credential
      ? toOpenSSHPrivateKey(credential.certificate.privateKey)
      : credential.privateKey;
  const passphrase = "certificate" in credential ? undefined : credential.passphrase;
  const parsed = utils.parseKey(material, passphrase);
  if (parsed instanceof Error)
    throw new UpstreamError("auth", `cannot read the upstream private key: ${parsed.message}`);
  const key = Array.isArray(parsed) ? (parsed[0] as ParsedKey | undefined) : parsed;
  if (!key?.isPrivateKey()) throw new UpstreamError("auth", "the upstream key is not a private key");
  return key;
}
