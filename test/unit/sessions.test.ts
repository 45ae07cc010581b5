// The session opener every adapter uses: the TLS-for-token rule, token verification, the session's policy
// input, and durable start/end records in a real audit spool (in a temp dir). The token verifier is a stand-in
// here (the real one is tested against a real OIDC provider in identity.test.ts).
import t from "tap";
import { AuditTrail } from "../../src/audit/index.js";
import { spoolRecords } from "../../src/audit/reader.js";
import { recordBody } from "../../src/audit/record.js";
import { SessionOpener, SessionRefusedError, type TokenAuthenticator } from "../../src/gateway/sessions.js";
import { sampleInput } from "../helpers/bundles.js";

const { identity, resource } = sampleInput();
const auth: TokenAuthenticator = {
  verify: async (token) => {
    if (token !== "good") throw new Error("signature verification failed");
    return { identity, expiresAt: new Date(Date.now() + 60_000) };
  },
};

async function refusal(p: Promise<unknown>): Promise<SessionRefusedError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  if (!(err instanceof SessionRefusedError)) throw new Error(`expected a refusal, got ${String(err)}`);
  return err;
}

t.test("the token is only asked for over TLS or loopback, and is verified", async (t) => {
  const opener = new SessionOpener({ auth });
  let asked = 0;
  const getToken = async () => {
    asked++;
    return "good";
  };
  const req = (remoteAddress: string, tls: boolean, allowCleartextToken = false) => ({
    protocol: "postgres" as const,
    resource,
    transport: { remoteAddress, tls, allowCleartextToken },
    getToken,
  });

  const cleartext = await refusal(opener.authenticate(req("10.1.2.3", false)));
  t.equal(cleartext.code, "identity.tls_required");
  t.equal(asked, 0, "a token is never invited over cleartext from another host");

  for (const [addr, tls, allow] of [
    ["10.1.2.3", true, false],
    ["127.0.0.1", false, false],
    ["::ffff:127.0.0.1", false, false],
    ["::1", false, false],
    ["10.1.2.3", false, true],
  ] as const) {
    const ok = await opener.authenticate(req(addr, tls, allow));
    t.equal(ok.identity.sub, "alice", `${addr} tls=${tls} allow=${allow}`);
  }

  const none = await refusal(opener.authenticate({ ...req("127.0.0.1", false), getToken: async () => "" }));
  t.equal(none.code, "identity.no_token");
  const bad = await refusal(
    opener.authenticate({ ...req("127.0.0.1", false), getToken: async () => "forged" }),
  );
  t.equal(bad.code, "identity.token_rejected");
  t.match(bad.message, /access token rejected: signature verification failed/);
});

t.test("a session has its policy input, durable start and end records, and a transcript", async (t) => {
  const dir = t.testdir();
  const audit = await AuditTrail.open({ dir, recording: { flushMs: 10 } });
  t.teardown(() => audit.close());
  const opener = new SessionOpener({ auth, audit });
  const authed = await opener.authenticate({
    protocol: "postgres",
    resource,
    transport: { remoteAddress: "127.0.0.1", tls: true },
    getToken: async () => "good",
  });
  const s = await opener.open(authed, { approval_id: null });
  t.equal(opener.count("postgres"), 1);
  t.equal(opener.count("ssh"), 0);
  t.equal(s.ctx.identity.sub, "alice");
  const input = JSON.parse(
    s.ctx.input.serialize({ statement: "select" }, { rfc3339: "2026-01-01T00:00:00Z", ns: 0n }),
  );
  t.match(input, {
    protocol: "postgres",
    resource: { name: "orders-db" },
    identity: { sub: "alice" },
    session: { id: s.ctx.id, client_addr: "127.0.0.1" },
    command: { statement: "select" },
  });
  s.transcript({ event: "statement", statement: "select" });
  const rec = s.terminal({ width: 80, height: 24 });
  rec?.output("hello\r\n");
  t.equal(rec?.sessionId, `${s.ctx.id}/1`, "a terminal is its own recording beside the transcript");
  s.end("client closed the connection");
  s.end("twice");
  t.equal(opener.count(), 0, "ended sessions are unregistered");
  t.ok(rec?.isClosed, "open terminal recordings are closed with the session");

  await new Promise((r) => setTimeout(r, 200));
  const kinds: string[] = [];
  const sessions: Array<Record<string, unknown>> = [];
  for await (const r of spoolRecords(dir)) {
    kinds.push(r.kind);
    if (r.kind === "session") sessions.push(recordBody(r) as Record<string, unknown>);
  }
  t.match(sessions, [
    { event: "start", session_id: s.ctx.id, sub: "alice", tls: true, protocol: "postgres" },
    { event: "end", session_id: s.ctx.id, reason: "client closed the connection" },
  ]);
  t.equal(sessions.length, 2, "ending twice records once");
  t.ok(kinds.includes("recording"), "the transcript and the terminal recording reached the spool");
});

t.test("a trail that cannot take the start record refuses the session", async (t) => {
  const failing = {
    record: async () => {
      throw new Error("audit spool full: 1024 bytes of 1024");
    },
    openTranscript: () => {
      throw new Error("not reached");
    },
    openTerminalRecording: () => {
      throw new Error("not reached");
    },
  } as unknown as AuditTrail;
  const opener = new SessionOpener({ auth, audit: failing });
  const authed = await opener.authenticate({
    protocol: "postgres",
    resource,
    transport: { remoteAddress: "127.0.0.1", tls: false },
    getToken: async () => "good",
  });
  const err = await refusal(opener.open(authed));
  t.equal(err.code, "audit.unavailable");
  t.match(err.message, /cannot record this session.*spool full/);
  t.equal(opener.count(), 0);
});

t.test("sessions per identity: counted across protocols, refused over the limit and recorded", async (t) => {
  const dir = t.testdir();
  const audit = await AuditTrail.open({ dir, recording: { flushMs: 10 } });
  t.teardown(() => audit.close());
  const bob = { ...identity, sub: "bob", actors: [{ ...identity.actors[0], sub: "bob" }] };
  const verify: TokenAuthenticator = {
    verify: async (token) => ({
      identity: token === "bob" ? bob : identity,
      expiresAt: new Date(Date.now() + 60_000),
    }),
  };
  const opener = new SessionOpener({ auth: verify, audit, maxSessionsPerIdentity: 2 });
  const authFor = (token: string, protocol: "postgres" | "ssh" | "kubernetes") =>
    opener.authenticate({
      protocol,
      resource,
      transport: { remoteAddress: "127.0.0.1", tls: true },
      getToken: async () => token,
    });

  // Opened at once: the count is taken before anything is awaited, so they cannot all slip under the limit.
  const a = await authFor("alice", "postgres");
  const b = await authFor("alice", "ssh");
  const c = await authFor("alice", "kubernetes");
  const results = await Promise.allSettled([opener.open(a), opener.open(b), opener.open(c)]);
  const opened = results.filter((r) => r.status === "fulfilled");
  const refused = results.filter((r) => r.status === "rejected");
  t.equal(opened.length, 2, "two of three concurrent opens succeed");
  t.equal(refused.length, 1);
  const err = (refused[0] as PromiseRejectedResult).reason as SessionRefusedError;
  t.equal(err.code, "session.identity_limit");
  t.match(err.message, /alice already has 2 sessions open .*limits\.sessions_per_identity/);
  t.equal(opener.countFor(identity), 2);

  // authenticate refuses already, before the adapter does any upstream work.
  const early = await refusal(authFor("alice", "postgres"));
  t.equal(early.code, "session.identity_limit");

  // Another requester is not affected.
  const bobSession = await opener.open(await authFor("bob", "postgres"));
  t.equal(opener.countFor(bob), 1);

  // Ending one frees a slot.
  (opened[0] as PromiseFulfilledResult<Awaited<ReturnType<typeof opener.open>>>).value.end("done");
  t.equal(opener.countFor(identity), 1);
  const again = await opener.open(await authFor("alice", "ssh"));
  t.equal(opener.countFor(identity), 2);
  again.end("done");
  bobSession.end("done");
  (opened[1] as PromiseFulfilledResult<Awaited<ReturnType<typeof opener.open>>>).value.end("done");
  t.equal(opener.countFor(identity), 0);

  await new Promise((r) => setTimeout(r, 200));
  const refusals: Array<Record<string, unknown>> = [];
  for await (const r of spoolRecords(dir)) {
    const body = r.kind === "session" ? (recordBody(r) as Record<string, unknown>) : null;
    if (body?.event === "refused") refusals.push(body);
  }
  t.equal(refusals.length, 2, "each refusal is recorded");
  t.match(refusals[0], {
    event: "refused",
    code: "session.identity_limit",
    sub: "alice",
    reason: /limits\.sessions_per_identity/,
  });
});

t.test("a session the trail refused does not count against its requester", async (t) => {
  let fail = true;
  const flaky = {
    record: async () => {
      if (fail) throw new Error("audit spool full");
      return { seq: 1, hash: "" };
    },
    openTranscript: () => null,
    openTerminalRecording: () => {
      throw new Error("not reached");
    },
  } as unknown as AuditTrail;
  const opener = new SessionOpener({ auth, audit: flaky, maxSessionsPerIdentity: 1 });
  const authed = await opener.authenticate({
    protocol: "postgres",
    resource,
    transport: { remoteAddress: "127.0.0.1", tls: true },
    getToken: async () => "good",
  });
  t.equal((await refusal(opener.open(authed))).code, "audit.unavailable");
  t.equal(opener.countFor(identity), 0);
  fail = false;
  const s = await opener.open(authed);
  t.equal(opener.countFor(identity), 1);
  s.end("done");
});
