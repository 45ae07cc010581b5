// Public keys bound to a verified identity, for as long as the token that bound them (listeners.ssh.bind_keys).
//
// An agent that connects with a key pair and its OIDC token once — the key's signature verified first, then the
// token — has the key bound to the token's identity (delegation chain included) until the token expires; later
// connections with that key alone are that identity, with that expiry, so an agent can run many `ssh` commands
// without handing its token to each. The binding proves possession twice over: the key signed the session, and
// the token was valid at the time. Nothing outlives the token: a binding is no longer than the token's own
// lifetime, commands are still checked against that expiry, and an unbound key is never accepted by itself.
//
// Bindings live in this gateway process (a worker or a replica binds its own); a restart forgets them, and the
// agent presents its token again.
import { createHash } from "node:crypto";
import type { Identity } from "../../decision/contract.js";

export interface KeyBinding {
  identity: Identity;
  expiresAt: Date;
  /** The key's SHA256 fingerprint, as OpenSSH prints it. */
  fingerprint: string;
  boundAt: Date;
}

/** OpenSSH's SHA256 fingerprint of a public key blob: `SHA256:` and unpadded base64. */
export function keyFingerprint(blob: Buffer): string {
  return `SHA256:${createHash("sha256").update(blob).digest("base64").replace(/=+$/, "")}`;
}

export class KeyBindings {
  private readonly byKey = new Map<string, KeyBinding>();

  constructor(
    /** At most this many bindings; the one expiring first makes room. */
    private readonly max = 10_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** Binds `blob` to the identity until `expiresAt`, replacing an earlier binding of the same key. */
  bind(blob: Buffer, identity: Identity, expiresAt: Date): KeyBinding {
    this.prune();
    const fingerprint = keyFingerprint(blob);
    if (!this.byKey.has(fingerprint) && this.byKey.size >= this.max) {
      let first: string | undefined;
      for (const [k, b] of this.byKey)
        if (!first || b.expiresAt < (this.byKey.get(first) as KeyBinding).expiresAt) first = k;
      if (first) this.byKey.delete(first);
    }
    const binding: KeyBinding = { identity, expiresAt, fingerprint, boundAt: new Date(this.now()) };
    this.byKey.set(fingerprint, binding);
    return binding;
  }

  /** The live binding of `blob`, or null (never bound, or its token has expired). */
  lookup(blob: Buffer): KeyBinding | null {
    const fingerprint = keyFingerprint(blob);
    const b = this.byKey.get(fingerprint);
    if (!b) return null;
    if (b.expiresAt.getTime() <= this.now()) {
      this.byKey.delete(fingerprint);
      return null;
    }
    return b;
  }

  get size(): number {
    return this.byKey.size;
  }

  private prune(): void {
    const now = this.now();
    for (const [k, b] of this.byKey) if (b.expiresAt.getTime() <= now) this.byKey.delete(k);
  }
}
