// listeners.ssh.bind_keys with real OpenSSH (ssh, ssh-keygen, sshd): a key that signs and is followed by a valid
// token is bound to the token's identity; the key alone then logs in as that identity — until the token expires —
// while an unbound key, or a key followed by a bad token, gets nothing.
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import t from "tap";
import { spoolRecords } from "../../src/audit/reader.js";
import { KeyBindings, keyFingerprint } from "../../src/proxy/ssh/key-bindings.js";
import { run } from "../helpers/gateway.js";
import { type SshTestGateway, startSshTestGateway } from "../helpers/ssh-gateway.js";

let g: SshTestGateway;
t.before(async () => {
  g = await startSshTestGateway((base) => ({
    listeners: { ...base.listeners, ssh: { ...(base.listeners.ssh as object), bind_keys: true } as never },
  }));
});
t.teardown(() => g?.stop());

function newKey(name: string): string {
  const file = join(g.sshd.dir, name);
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", name, "-f", file]);
  return file;
}

/** ssh with a key first, then the token at the keyboard-interactive prompt (empty: no token). */
function sshWithKey(key: string, token: string, command: string[]) {
  const base = g.clientOptions();
  const opts: string[] = [];
  for (let i = 0; i < base.length; i += 2) {
    if (/^(PubkeyAuthentication|PreferredAuthentications)=/.test(base[i + 1] as string)) continue;
    opts.push(base[i] as string, base[i + 1] as string);
  }
  return run(
    "ssh",
    [
      ...opts,
      "-o",
      "IdentitiesOnly=yes",
      "-o",
      "IdentityAgent=none",
      "-i",
      key,
      "-o",
      "PreferredAuthentications=publickey,keyboard-interactive",
      "-p",
      String(g.sshPort),
      "-l",
      g.login(),
      "127.0.0.1",
      "--",
      ...command,
    ],
    undefined,
    g.env(token),
  );
}

async function sessionStarts(): Promise<Array<Record<string, unknown>>> {
  const out: Array<Record<string, unknown>> = [];
  await g.gw.audit?.spool.idle();
  for await (const r of spoolRecords(g.gw.audit?.spool.dir as string))
    if (r.kind === "decision") out.push(JSON.parse(r.body) as Record<string, unknown>);
  return out;
}

t.test("a key signed and then a token: bound; the key alone is then that identity", async (t) => {
  const key = newKey("agent-key");
  const alice = await g.tokenFor("alice");
  const first = await sshWithKey(key, alice, ["echo", "first"]);
  t.equal(first.code, 0, first.stderr);
  t.equal(first.stdout, "first\n");

  const again = await sshWithKey(key, "", ["echo", "again"]);
  t.equal(again.code, 0, `the bound key logs in without a token: ${again.stderr}`);
  t.equal(again.stdout, "again\n");
  t.ok(
    await g.sshd.waitForLog(/ID pamgate decision=\S+ session=\S+ requester=alice/),
    "upstream, it is alice",
  );
  const keyed = (await sessionStarts()).filter(
    (e) => (e.input as { session?: { auth_method?: string } })?.session?.auth_method === "key",
  );
  t.ok(keyed.length > 0, "the policy saw session.auth_method = key");
  t.equal((keyed[0]?.identity as { sub?: string })?.sub, "alice");

  const blocked = await sshWithKey(key, "", ["sudo", "rm", "-rf", "/"]);
  t.equal(blocked.code, 126, "commands are still decided one by one");
});

t.test("an unbound key alone, or a key followed by a bad token, gets nothing", async (t) => {
  const stranger = newKey("stranger-key");
  const alone = await sshWithKey(stranger, "", ["echo", "no"]);
  t.not(alone.code, 0);
  t.notMatch(alone.stdout, /no/);
  t.match(alone.stderr, /no access token|Permission denied/);

  const badToken = newKey("bad-token-key");
  const bad = await sshWithKey(badToken, "not-a-token", ["echo", "no"]);
  t.not(bad.code, 0);
  t.match(bad.stderr, /access token rejected/);
  const after = await sshWithKey(badToken, "", ["echo", "no"]);
  t.not(after.code, 0, "a rejected token binds nothing");
});

t.test("a binding ends when its token expires", async (t) => {
  let now = 1_000_000;
  const b = new KeyBindings(10, () => now);
  const blob = Buffer.from("key blob");
  const identity = { sub: "alice", iss: "https://idp", email: null, groups: [], client_id: null, actors: [] };
  const bound = b.bind(blob, identity as never, new Date(now + 60_000));
  t.equal(bound.fingerprint, keyFingerprint(blob));
  t.equal(b.lookup(blob)?.identity.sub, "alice");
  now += 60_000;
  t.equal(b.lookup(blob), null, "expired with the token");
  t.equal(b.size, 0);
  // Bounded: the binding expiring first makes room.
  const small = new KeyBindings(2, () => now);
  small.bind(Buffer.from("a"), identity as never, new Date(now + 1000));
  small.bind(Buffer.from("b"), identity as never, new Date(now + 3000));
  small.bind(Buffer.from("c"), identity as never, new Date(now + 2000));
  t.equal(small.lookup(Buffer.from("a")), null);
  t.ok(small.lookup(Buffer.from("b")) && small.lookup(Buffer.from("c")));
});
