// The gateway's upstream SSH leg against a real OpenSSH sshd: certificates from the gateway CA (encoded by
// hand, sent through the ssh2 authPK patch) must be accepted, checked and enforced by sshd itself, and every
// failure must surface as the right UpstreamError kind.
import { execFileSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import ssh2, { type Client } from "ssh2";
import t from "tap";
import { CertificateAuthority, toOpenSSHPrivateKey } from "../../src/proxy/ssh/certificate.js";
import { connectUpstream, UpstreamError, type UpstreamTarget } from "../../src/proxy/ssh/upstream.js";
import { freePort } from "../helpers/postgres.js";
import { type SshdServer, sshdAvailable, startSshd } from "../helpers/sshd.js";

function exec(
  client: Client,
  command: string,
): Promise<{ stdout: string; stderr: string; code: number | null }> {
  return new Promise((resolve, reject) => {
    client.exec(command, (err, stream) => {
      if (err) return reject(err);
      let stdout = "";
      let stderr = "";
      stream.on("data", (d: Buffer) => {
        stdout += d.toString();
      });
      stream.stderr.on("data", (d: Buffer) => {
        stderr += d.toString();
      });
      stream.on("close", (code: number | null) => resolve({ stdout, stderr, code }));
    });
  });
}

async function rejection(p: Promise<unknown>): Promise<UpstreamError> {
  try {
    const c = await p;
    (c as Client).end();
  } catch (err) {
    if (err instanceof UpstreamError) return err;
    throw err;
  }
  throw new Error("expected the connection to fail");
}

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** sshd logs the reason on the line before "Failed publickey … ID <keyId>", without the key id itself. */
async function failureReason(sshd: SshdServer, keyId: string): Promise<string> {
  const failed = await sshd.waitForLog(new RegExp(`Failed publickey for .* ID ${escapeRe(keyId)} `));
  const lines = sshd.log();
  return lines[lines.indexOf(failed) - 1] ?? "";
}

if (!sshdAvailable()) {
  t.plan(0, "OpenSSH sshd is not installed (/usr/sbin/sshd)");
} else {
  const work = mkdtempSync(join(tmpdir(), "pamgate-ssh-test-"));
  t.teardown(() => rmSync(work, { recursive: true, force: true }));

  // The CA goes through a file and back, as a deployment would load it.
  const generated = CertificateAuthority.generate();
  writeFileSync(join(work, "ca"), generated.privateKeyPem, { mode: 0o600 });
  const ca = CertificateAuthority.fromPrivateKey(readFileSync(join(work, "ca")));
  // An RSA CA made by ssh-keygen exercises the other signature algorithm.
  execFileSync("ssh-keygen", ["-q", "-t", "rsa", "-b", "3072", "-N", "", "-f", join(work, "rsa-ca")]);
  const rsaCa = CertificateAuthority.fromPrivateKey(readFileSync(join(work, "rsa-ca")));
  // A plain key for the private-key fallback.
  execFileSync("ssh-keygen", [
    "-q",
    "-t",
    "ed25519",
    "-N",
    "",
    "-C",
    "fallback",
    "-f",
    join(work, "fallback"),
  ]);

  let sshd: SshdServer;
  let target: UpstreamTarget;
  t.before(async () => {
    sshd = await startSshd({
      trustedUserCaKeys: [ca.publicKeyLine(), rsaCa.publicKeyLine("rsa-ca")],
      authorizedKeys: [readFileSync(join(work, "fallback.pub"), "utf8").trim()],
    });
    target = { host: sshd.host, port: sshd.port, user: sshd.user, hostKeys: [sshd.hostKeyLine] };
  });
  t.teardown(() => sshd?.stop());

  t.test("generated CA matches ssh-keygen's view of it", async (t) => {
    t.equal(ca.publicKeyLine(), generated.ca.publicKeyLine());
    t.match(generated.privateKeyPem, /^-----BEGIN OPENSSH PRIVATE KEY-----\n/);
    const pub = execFileSync("ssh-keygen", ["-y", "-f", join(work, "ca")], { encoding: "utf8" });
    t.equal(pub.split(" ").slice(0, 2).join(" "), ca.publicKeyLine(""));
    const fp = execFileSync("ssh-keygen", ["-l", "-E", "sha256", "-f", join(work, "ca")], {
      encoding: "utf8",
    });
    t.equal(fp.split(" ")[1], ca.fingerprint());
    t.throws(() => CertificateAuthority.fromPrivateKey("not a key"), /cannot read the SSH CA private key/);
    t.throws(
      () => CertificateAuthority.fromPrivateKey(readFileSync(join(work, "fallback.pub"))),
      /public key/,
    );
  });

  t.test("(a) a certificate logs in, exec runs, sshd logs the key id", async (t) => {
    const keyId = `pamgate decision=${randomUUID()} requester=alice@example.com`;
    const cert = ca.issue({ keyId, principals: [sshd.user], validSeconds: 60 });
    const client = await connectUpstream(target, { certificate: cert });
    t.teardown(() => client.end());
    const out = await exec(client, "echo ok; id -un");
    t.equal(out.code, 0, out.stderr);
    t.equal(out.stdout, `ok\n${sshd.user}\n`);
    const line = await sshd.waitForLog(
      new RegExp(`Accepted publickey for ${sshd.user} .* ID ${escapeRe(keyId)}`),
    );
    t.match(line, /ED25519-CERT SHA256:/);
    t.match(line, `CA ED25519 ${ca.fingerprint()}`);
    t.match(line, `(serial ${cert.serial})`);
  });

  t.test("(a) OpenSSH's own client accepts the same certificate", async (t) => {
    const keyId = `pamgate openssh-client ${randomUUID()}`;
    const cert = ca.issue({ keyId, principals: [sshd.user], validSeconds: 60 });
    const dir = mkdtempSync(join(work, "client-"));
    writeFileSync(join(dir, "id"), toOpenSSHPrivateKey(cert.privateKey), { mode: 0o600 });
    writeFileSync(join(dir, "id-cert.pub"), `${cert.certLine}\n`);
    writeFileSync(join(dir, "known_hosts"), `[${sshd.host}]:${sshd.port} ${sshd.hostKeyLine}\n`);
    const out = execFileSync(
      "ssh",
      [
        "-F",
        "none",
        "-i",
        join(dir, "id"),
        "-o",
        `CertificateFile=${join(dir, "id-cert.pub")}`,
        "-o",
        `UserKnownHostsFile=${join(dir, "known_hosts")}`,
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-p",
        String(sshd.port),
        `${sshd.user}@${sshd.host}`,
        "echo via-openssh",
      ],
      { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] },
    );
    t.equal(out, "via-openssh\n");
    await sshd.waitForLog(new RegExp(`Accepted publickey .* ID ${escapeRe(keyId)}`));
  });

  t.test("(a) an RSA CA signs with rsa-sha2-512 and is accepted", async (t) => {
    const keyId = `pamgate rsa-ca ${randomUUID()}`;
    const client = await connectUpstream(target, {
      certificate: rsaCa.issue({ keyId, principals: [sshd.user], validSeconds: 60 }),
    });
    t.teardown(() => client.end());
    t.equal((await exec(client, "echo rsa")).stdout, "rsa\n");
    const line = await sshd.waitForLog(new RegExp(`ID ${escapeRe(keyId)}`));
    t.match(line, `CA RSA ${rsaCa.fingerprint()}`);
  });

  t.test("(b) ssh-keygen -L parses the certificate", async (t) => {
    const keyId = `pamgate decision=${randomUUID()} requester=alice@example.com`;
    const cert = ca.issue({
      keyId,
      principals: [sshd.user, "deploy"],
      validSeconds: 120,
      serial: 4242n,
      criticalOptions: { "force-command": "echo forced", "source-address": "127.0.0.1/32" },
      extensions: ["permit-pty", "permit-agent-forwarding"],
    });
    const file = join(work, "inspect-cert.pub");
    writeFileSync(file, `${cert.certLine}\n`);
    const out = execFileSync("ssh-keygen", ["-L", "-f", file], {
      encoding: "utf8",
      env: { ...process.env, TZ: "UTC" },
    });
    t.match(out, "Type: ssh-ed25519-cert-v01@openssh.com user certificate");
    t.match(out, `Signing CA: ED25519 ${ca.fingerprint()} (using ssh-ed25519)`);
    t.match(out, `Key ID: "${keyId}"`);
    t.match(out, "Serial: 4242");
    const iso = (d: Date) => d.toISOString().slice(0, 19);
    t.match(out, `Valid: from ${iso(cert.validAfter)} to ${iso(cert.validBefore)}`);
    t.equal(
      cert.validBefore.getTime() - cert.validAfter.getTime(),
      150_000,
      "120 s plus the default 30 s skew",
    );
    t.match(out, new RegExp(`Principals: \\n\\s+${sshd.user}\\n\\s+deploy\\n`));
    t.match(out, /Critical Options: \n\s+force-command echo forced\n\s+source-address 127\.0\.0\.1\/32\n/);
    t.match(out, /Extensions: \n\s+permit-agent-forwarding\n\s+permit-pty\n/, "sorted by name");
  });

  t.test("(c) force-command is enforced by sshd", async (t) => {
    const cert = ca.issue({
      keyId: `pamgate forced ${randomUUID()}`,
      principals: [sshd.user],
      validSeconds: 60,
      criticalOptions: { "force-command": "echo forced" },
    });
    const client = await connectUpstream(target, { certificate: cert });
    t.teardown(() => client.end());
    const out = await exec(client, "echo other");
    t.equal(out.stdout, "forced\n");
  });

  t.test("(d) an expired certificate is rejected and sshd says why", async (t) => {
    const keyId = `pamgate expired ${randomUUID()}`;
    const cert = ca.issue({
      keyId,
      principals: [sshd.user],
      validSeconds: 60,
      clockSkewSeconds: 0,
      now: new Date(Date.now() - 10 * 60_000),
    });
    const err = await rejection(connectUpstream(target, { certificate: cert }));
    t.equal(err.kind, "auth");
    t.match(err.message, /authentication methods failed/);
    t.equal(await failureReason(sshd, keyId), "Certificate invalid: expired");
    const futureId = `pamgate future ${randomUUID()}`;
    const future = ca.issue({
      keyId: futureId,
      principals: [sshd.user],
      validSeconds: 60,
      clockSkewSeconds: 0,
      now: new Date(Date.now() + 10 * 60_000),
    });
    t.equal((await rejection(connectUpstream(target, { certificate: future }))).kind, "auth");
    t.equal(await failureReason(sshd, futureId), "Certificate invalid: not yet valid");
  });

  t.test("(e) a certificate for another principal is rejected", async (t) => {
    const keyId = `pamgate wrong ${randomUUID()}`;
    const cert = ca.issue({ keyId, principals: ["someone-else"], validSeconds: 60 });
    const err = await rejection(connectUpstream(target, { certificate: cert }));
    t.equal(err.kind, "auth");
    t.equal(await failureReason(sshd, keyId), "Certificate invalid: name is not a listed principal");
  });

  t.test("(f) certificate requests are bounded", async (t) => {
    const base = { keyId: "k", principals: ["root"] };
    t.throws(() => ca.issue({ ...base, validSeconds: 301 }), /exceeds the maximum of 300/);
    t.doesNotThrow(() => ca.issue({ ...base, validSeconds: 300 }));
    t.throws(() => ca.issue({ ...base, validSeconds: 0 }), /positive integer/);
    t.throws(() => ca.issue({ keyId: "k", principals: [], validSeconds: 60 }), /at least one principal/);
    t.throws(() => ca.issue({ ...base, keyId: "a\nb", validSeconds: 60 }), /control characters/);
    t.throws(
      () => ca.issue({ ...base, validSeconds: 60, extensions: ["permit-pty", "permit-pty"] }),
      /duplicate/,
    );
  });

  t.test("(g) host keys are pinned", async (t) => {
    const cert = () =>
      ca.issue({ keyId: `pamgate hostkey ${randomUUID()}`, principals: [sshd.user], validSeconds: 60 });
    const other = CertificateAuthority.generate().ca.publicKeyLine("not-the-host");
    const mismatch = await rejection(
      connectUpstream({ ...target, hostKeys: [other] }, { certificate: cert() }),
    );
    t.equal(mismatch.kind, "host_key");
    t.match(mismatch.message, sshd.hostKeyFingerprint, "names the key the server presented");

    const wrongFp = await rejection(
      connectUpstream(
        { ...target, hostKeys: [CertificateAuthority.generate().ca.fingerprint()] },
        { certificate: cert() },
      ),
    );
    t.equal(wrongFp.kind, "host_key");

    const none = await rejection(connectUpstream({ ...target, hostKeys: [] }, { certificate: cert() }));
    t.equal(none.kind, "host_key");
    t.match(none.message, /trust on first use/);

    const byFingerprint = await connectUpstream(
      { ...target, hostKeys: [sshd.hostKeyFingerprint] },
      { certificate: cert() },
    );
    t.equal((await exec(byFingerprint, "echo pinned")).stdout, "pinned\n");
    byFingerprint.end();
  });

  t.test("(h) the private-key fallback logs in with an authorized key", async (t) => {
    const client = await connectUpstream(target, { privateKey: readFileSync(join(work, "fallback")) });
    t.teardown(() => client.end());
    t.equal((await exec(client, "echo fallback")).stdout, "fallback\n");
    await sshd.waitForLog(/Accepted publickey for \S+ from 127\.0\.0\.1 port \d+ ssh2: ED25519 SHA256:/);

    const stranger = CertificateAuthority.generate().privateKeyPem;
    t.equal((await rejection(connectUpstream(target, { privateKey: stranger }))).kind, "auth");
    t.equal((await rejection(connectUpstream(target, { privateKey: "garbage" }))).kind, "auth");
  });

  t.test("(i) an unreachable upstream", async (t) => {
    const port = await freePort();
    const cert = ca.issue({ keyId: "pamgate unreachable", principals: [sshd.user], validSeconds: 60 });
    const err = await rejection(connectUpstream({ ...target, port }, { certificate: cert }));
    t.equal(err.kind, "unreachable");
    t.match(err.message, /ECONNREFUSED/);
  });

  t.test("a silent upstream times out; an abort wins over the timeout", async (t) => {
    const silent: Server = createServer(() => {});
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
    t.teardown(() => {
      silent.close();
    });
    const port = (silent.address() as { port: number }).port;
    const cert = ca.issue({ keyId: "pamgate silent", principals: [sshd.user], validSeconds: 60 });
    const err = await rejection(
      connectUpstream({ ...target, port }, { certificate: cert }, { readyTimeoutMs: 300 }),
    );
    t.equal(err.kind, "timeout");

    const ac = new AbortController();
    const pending = connectUpstream({ ...target, port }, { certificate: cert }, { signal: ac.signal });
    setTimeout(() => ac.abort(new Error("client went away")), 50);
    await t.rejects(pending, /client went away/);
  });

  t.test("moved ssh2 internals fail loudly as a protocol error", async (t) => {
    // Simulates an ssh2 upgrade that renamed a field the certificate patch relies on.
    const proto = ssh2.Client.prototype as unknown as { connect: (...a: unknown[]) => unknown };
    const connect = proto.connect;
    proto.connect = function (this: { _protocol?: Record<string, unknown> }, ...args: unknown[]) {
      const ret = connect.apply(this, args);
      if (this._protocol) delete this._protocol._authsQueue;
      return ret;
    };
    t.teardown(() => {
      proto.connect = connect;
    });
    const cert = ca.issue({ keyId: "pamgate internals", principals: [sshd.user], validSeconds: 60 });
    const err = await rejection(connectUpstream(target, { certificate: cert }));
    t.equal(err.kind, "protocol");
    t.match(err.message, /ssh2 internals changed \(Protocol#_authsQueue is missing\)/);
  });
}
