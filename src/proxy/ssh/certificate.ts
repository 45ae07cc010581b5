// Short-lived OpenSSH user certificates signed by the gateway CA. The target sshd trusts the CA through
// TrustedUserCAKeys, so no per-user key ever has to be installed upstream and every session gets its own key
// pair and a certificate that expires within minutes.
//
// No npm library issues OpenSSH certificates, so the format is encoded here by hand, following
// PROTOCOL.certkeys from the OpenSSH sources. Only the ed25519 certificate type is issued (the per-session key
// is always ed25519); the CA key may be ed25519 or RSA.
import { createHash, generateKeyPairSync, type KeyObject, randomBytes } from "node:crypto";
import ssh2, { type ParsedKey } from "ssh2";

const { parseKey } = ssh2.utils;

export const CERT_TYPE = "ssh-ed25519-cert-v01@openssh.com";
/** Upper bound on a certificate's lifetime: a leaked certificate is worth at most five minutes. */
export const MAX_VALID_SECONDS = 300;
const MAX_SKEW_SECONDS = 300;
const SSH_CERT_TYPE_USER = 1;

export interface CertificateRequest {
  /** Shows up in sshd's log ("Accepted publickey … ID <keyId>"), so make it identify the decision. */
  keyId: string;
  /** Target account names; at least one (an empty list would mean "any account" to sshd). */
  principals: string[];
  /** Lifetime from `now`; at most 300. */
  validSeconds: number;
  /** e.g. { "force-command": "…", "source-address": "10.0.0.1/32" }; "" encodes a flag option (empty data). */
  criticalOptions?: Record<string, string>;
  /** e.g. ["permit-pty", "permit-port-forwarding"]; none by default, so everything is opt-in. */
  extensions?: string[];
  /** Random 64-bit by default. */
  serial?: bigint;
  now?: Date;
  /** valid_after = now - skew, for targets whose clock runs a little behind ours; default 30. */
  clockSkewSeconds?: number;
}

export interface IssuedCertificate {
  certBlob: Buffer;
  /** "ssh-ed25519-cert-v01@openssh.com AAAA… keyid" for logs/ssh-keygen -L */
  certLine: string;
  /** The certified ed25519 private key; never leaves the gateway. */
  privateKey: KeyObject;
  /** The certified key's public SSH wire blob: string("ssh-ed25519") || string(32-byte key). */
  publicKeyBlob: Buffer;
  validAfter: Date;
  validBefore: Date;
  keyId: string;
  serial: bigint;
}

// --- SSH wire encoding (RFC 4251 §5) --------------------------------------------------------------------

function sshString(value: Buffer | string): Buffer {
  const data = typeof value === "string" ? Buffer.from(value, "utf8") : value;
  const len = Buffer.allocUnsafe(4);
  len.writeUInt32BE(data.length, 0);
  return Buffer.concat([len, data]);
}

function uint32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n, 0);
  return b;
}

function uint64(n: bigint): Buffer {
  const b = Buffer.allocUnsafe(8);
  b.writeBigUInt64BE(n, 0);
  return b;
}

/** Reads the leading string of a wire blob, e.g. the key type of a public key blob. */
function leadingString(blob: Buffer): string {
  if (blob.length < 4) throw new Error("truncated SSH blob");
  const len = blob.readUInt32BE(0);
  if (blob.length < 4 + len) throw new Error("truncated SSH blob");
  return blob.subarray(4, 4 + len).toString("utf8");
}

function ed25519Raw(key: KeyObject): { pub: Buffer; seed: Buffer | undefined } {
  const jwk = key.export({ format: "jwk" });
  if (jwk.kty !== "OKP" || jwk.crv !== "Ed25519" || typeof jwk.x !== "string")
    throw new Error("not an Ed25519 key");
  return {
    pub: Buffer.from(jwk.x, "base64url"),
    seed: typeof jwk.d === "string" ? Buffer.from(jwk.d, "base64url") : undefined,
  };
}

function ed25519PublicBlob(pub: Buffer): Buffer {
  return Buffer.concat([sshString("ssh-ed25519"), sshString(pub)]);
}

/** "SHA256:…" exactly as `ssh-keygen -l` prints it (unpadded base64 of the blob's SHA-256). */
export function sshFingerprint(publicKeyBlob: Buffer): string {
  return `SHA256:${createHash("sha256").update(publicKeyBlob).digest("base64").replace(/=+$/, "")}`;
}

/**
 * An ed25519 private key in OpenSSH's own unencrypted format ("openssh-key-v1"), because that is what ssh2's
 * parseKey, ssh and ssh-keygen all read (ssh2 does not read PKCS#8).
 */
export function toOpenSSHPrivateKey(privateKey: KeyObject, comment = ""): string {
  const { pub, seed } = ed25519Raw(privateKey);
  if (!seed) throw new Error("toOpenSSHPrivateKey needs a private key");
  const publicBlob = ed25519PublicBlob(pub);
  const check = randomBytes(4);
  let priv = Buffer.concat([
    check,
    check,
    sshString("ssh-ed25519"),
    sshString(pub),
    // OpenSSH stores the 32-byte seed followed by the public key.
    sshString(Buffer.concat([seed, pub])),
    sshString(comment),
  ]);
  // Padded to the cipher block size (8 for "none") with 1, 2, 3, …; readers verify the padding.
  const pad = (8 - (priv.length % 8)) % 8;
  priv = Buffer.concat([priv, Buffer.from(Array.from({ length: pad }, (_, i) => i + 1))]);
  const body = Buffer.concat([
    Buffer.from("openssh-key-v1\0", "latin1"),
    sshString("none"),
    sshString("none"),
    sshString(""),
    uint32(1),
    sshString(publicBlob),
    sshString(priv),
  ]);
  const lines = body.toString("base64").match(/.{1,70}/g) ?? [];
  return `-----BEGIN OPENSSH PRIVATE KEY-----\n${lines.join("\n")}\n-----END OPENSSH PRIVATE KEY-----\n`;
}

// --- Certificates ---------------------------------------------------------------------------------------

/** Names must be unique and in strcmp order — sshd rejects a certificate whose options are not. */
function sortedUnique(names: string[], what: string): string[] {
  for (const n of names) {
    if (n.length === 0) throw new Error(`empty ${what} name`);
  }
  const sorted = [...names].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i] === sorted[i - 1]) throw new Error(`duplicate ${what}: ${sorted[i]}`);
  }
  return sorted;
}

// Key ids and principals end up in sshd's log lines; control characters would let one forge log entries.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const CONTROL = /[\u0000-\u001f\u007f]/;

export class CertificateAuthority {
  private constructor(
    private readonly key: ParsedKey,
    private readonly publicBlob: Buffer,
    /** The signature algorithm name written into the signature blob. */
    private readonly sigAlgo: "ssh-ed25519" | "rsa-sha2-512",
  ) {}

  /** Loads an OpenSSH (or legacy PEM) private key as ssh2 reads it; ed25519 or RSA. */
  static fromPrivateKey(pem: string | Buffer, passphrase?: string): CertificateAuthority {
    const parsed = parseKey(pem, passphrase);
    if (parsed instanceof Error) throw new Error(`cannot read the SSH CA private key: ${parsed.message}`);
    const key = Array.isArray(parsed) ? (parsed[0] as ParsedKey | undefined) : parsed;
    if (!key) throw new Error("cannot read the SSH CA private key: the file holds no key");
    if (!key.isPrivateKey())
      throw new Error("the SSH CA key is a public key: signing certificates needs the private key");
    let sigAlgo: "ssh-ed25519" | "rsa-sha2-512";
    if (key.type === "ssh-ed25519") sigAlgo = "ssh-ed25519";
    // OpenSSH ≥ 8.2 refuses ssh-rsa (SHA-1) certificate signatures by default.
    else if (key.type === "ssh-rsa") sigAlgo = "rsa-sha2-512";
    else throw new Error(`unsupported SSH CA key type ${key.type}: use an ed25519 or RSA key`);
    return new CertificateAuthority(key, Buffer.from(key.getPublicSSH()), sigAlgo);
  }

  /** A fresh ed25519 CA. privateKeyPem is in OpenSSH format ("BEGIN OPENSSH PRIVATE KEY"). */
  static generate(comment = "pamgate-ca"): { ca: CertificateAuthority; privateKeyPem: string } {
    const { privateKey } = generateKeyPairSync("ed25519");
    const privateKeyPem = toOpenSSHPrivateKey(privateKey, comment);
    return { ca: CertificateAuthority.fromPrivateKey(privateKeyPem), privateKeyPem };
  }

  /** "ssh-ed25519 AAAA… pamgate-ca" — what goes into the target's TrustedUserCAKeys. */
  publicKeyLine(comment = "pamgate-ca"): string {
    const line = `${leadingString(this.publicBlob)} ${this.publicBlob.toString("base64")}`;
    return comment ? `${line} ${comment}` : line;
  }

  /** The CA public key's wire blob (for comparing against a pinned key). */
  publicKeyBlob(): Buffer {
    return Buffer.from(this.publicBlob);
  }

  fingerprint(): string {
    return sshFingerprint(this.publicBlob);
  }

  issue(req: CertificateRequest): IssuedCertificate {
    const { keyId, principals, validSeconds } = req;
    if (!Number.isInteger(validSeconds) || validSeconds <= 0)
      throw new Error(`validSeconds must be a positive integer, got ${validSeconds}`);
    if (validSeconds > MAX_VALID_SECONDS)
      throw new Error(`validSeconds ${validSeconds} exceeds the maximum of ${MAX_VALID_SECONDS}`);
    const skew = req.clockSkewSeconds ?? 30;
    if (!Number.isInteger(skew) || skew < 0 || skew > MAX_SKEW_SECONDS)
      throw new Error(`clockSkewSeconds must be an integer between 0 and ${MAX_SKEW_SECONDS}, got ${skew}`);
    if (!keyId || CONTROL.test(keyId)) throw new Error("keyId must be non-empty without control characters");
    if (principals.length === 0)
      throw new Error("a certificate needs at least one principal (none would mean any account)");
    for (const p of principals) {
      if (!p || CONTROL.test(p) || p.includes(",")) throw new Error(`invalid principal ${JSON.stringify(p)}`);
    }
    const serial = req.serial ?? randomBytes(8).readBigUInt64BE(0);
    if (serial < 0n || serial >= 1n << 64n) throw new Error("serial must fit in an unsigned 64-bit integer");

    const nowSec = Math.floor((req.now ?? new Date()).getTime() / 1000);
    const validAfter = nowSec - skew;
    const validBefore = nowSec + validSeconds;

    const critical = req.criticalOptions ?? {};
    const criticalBlob = Buffer.concat(
      sortedUnique(Object.keys(critical), "critical option").flatMap((name) => {
        const value = critical[name] ?? "";
        // Valued options (force-command, source-address) carry their value as a string inside the data
        // string; flag options (verify-required) have empty data.
        return [sshString(name), sshString(value === "" ? Buffer.alloc(0) : sshString(value))];
      }),
    );
    const extensionsBlob = Buffer.concat(
      sortedUnique(req.extensions ?? [], "extension").flatMap((name) => [
        sshString(name),
        sshString(Buffer.alloc(0)),
      ]),
    );

    const { privateKey, publicKey } = generateKeyPairSync("ed25519");
    const pub = ed25519Raw(publicKey).pub;

    const toBeSigned = Buffer.concat([
      sshString(CERT_TYPE),
      sshString(randomBytes(32)), // nonce: makes signatures unpredictable (hash-collision defence)
      sshString(pub),
      uint64(serial),
      uint32(SSH_CERT_TYPE_USER),
      sshString(keyId),
      sshString(Buffer.concat(principals.map((p) => sshString(p)))),
      uint64(BigInt(validAfter)),
      uint64(BigInt(validBefore)),
      sshString(criticalBlob),
      sshString(extensionsBlob),
      sshString(""), // reserved
      sshString(this.publicBlob),
    ]);
    const certBlob = Buffer.concat([toBeSigned, sshString(this.sign(toBeSigned))]);
    return {
      certBlob,
      certLine: `${CERT_TYPE} ${certBlob.toString("base64")} ${keyId}`,
      privateKey,
      publicKeyBlob: ed25519PublicBlob(pub),
      validAfter: new Date(validAfter * 1000),
      validBefore: new Date(validBefore * 1000),
      keyId,
      serial,
    };
  }

  /** The certificate signature blob: string(algorithm) || string(raw signature). */
  private sign(data: Buffer): Buffer {
    const sig = this.key.sign(data, this.sigAlgo === "rsa-sha2-512" ? "sha512" : undefined) as Buffer | Error;
    if (sig instanceof Error) throw new Error(`SSH CA signing failed: ${sig.message}`);
    return Buffer.concat([sshString(this.sigAlgo), sshString(sig)]);
  }
}
