// The limits of the SSH listener, with real OpenSSH clients, ssh2 clients and raw sockets against a real gateway
// (in this process) in front of a real sshd: the authentication timeout (from the TCP accept, before any version
// line), the limit on connections pending authentication, exec command lines that are too long or nest too deep,
// and sessions per identity across protocols (SSH and PostgreSQL together). Timings have generous bounds only.
import { chmodSync, writeFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { join } from "node:path";
import pg from "pg";
import ssh2 from "ssh2";
import t from "tap";
import { spoolRecords } from "../../src/audit/reader.js";
import { recordBody } from "../../src/audit/record.js";
import type { Identity } from "../../src/decision/contract.js";
import { run } from "../helpers/gateway.js";
import { type SshTestGateway, startSshTestGateway } from "../helpers/ssh-gateway.js";
import { sshdAvailable } from "../helpers/sshd.js";

if (!sshdAvailable()) {
  t.plan(0, "OpenSSH sshd is not installed (scripts/bootstrap installs openssh-server)");
  process.exit(0);
}

let g: SshTestGateway;
t.before(async () => {
  g = await startSshTestGateway((base) => ({
    listeners: {
      ...base.listeners,
      ssh: {
        ...(base.listeners.ssh as NonNullable<typeof base.listeners.ssh>),
        auth_timeout_s: 3,
        max_unauthenticated_connections: 3,
        max_command_bytes: 4096,
        max_command_nesting: 64,
      },
    },
    limits: { sessions_per_identity: 2 },
  }));
});
t.teardown(() => g?.stop());

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, check: () => boolean | Promise<boolean>, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

function details(): { pending_auth: number; refused_pending_limit: number; auth_timeouts: number } {
  const d = (g.gw.status.get("listener:ssh")?.details ?? {}) as Record<string, unknown>;
  return {
    pending_auth: Number(d.pending_auth),
    refused_pending_limit: Number(d.refused_pending_limit),
    auth_timeouts: Number(d.auth_timeouts),
  };
}

interface Raw {
  socket: Socket;
  text(): string;
  closed: Promise<void>;
}

async function rawConnect(): Promise<Raw> {
  const socket = connect(g.sshPort, "127.0.0.1");
  let text = "";
  socket.on("data", (c: Buffer) => {
    text += c.toString("latin1");
  });
  socket.on("error", () => {});
  const closed = new Promise<void>((r) => socket.once("close", () => r()));
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", () => resolve());
    socket.once("error", reject);
  });
  return { socket, text: () => text, closed };
}

function connectClient(token: string): Promise<ssh2.Client> {
  return new Promise((resolve, reject) => {
    const c = new ssh2.Client();
    c.on("ready", () => resolve(c)).on("error", reject);
    c.connect({
      host: "127.0.0.1",
      port: g.sshPort,
      username: g.login(),
      password: token,
      hostVerifier: () => true,
    });
  });
}

function exec(c: ssh2.Client, command: string): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    c.exec(command, (err, ch) => {
      if (err) return reject(err);
      let out = "";
      let errText = "";
      let code: number | null = null;
      ch.on("data", (d: Buffer) => {
        out += d;
      });
      ch.stderr.on("data", (d: Buffer) => {
        errText += d;
      });
      ch.on("exit", (c: number | null) => {
        code = c;
      });
      ch.on("close", () => resolve({ code, out, err: errText }));
      ch.end();
    });
  });
}

t.test("auth_timeout_s runs from the TCP accept: silent and stuck clients are closed", async (t) => {
  const alice = await g.tokenFor("alice");
  // An authenticated connection outlives the timeout.
  const c = await connectClient(alice);
  t.teardown(() => c.end());

  const started = Date.now();
  const silent = await rawConnect(); // never sends its version line (ssh2 alone would wait forever)
  const noKex = await rawConnect(); // a version line, then nothing
  noKex.socket.write("SSH-2.0-stuck\r\n");
  for (const [name, raw] of [
    ["no version line", silent],
    ["no key exchange", noKex],
  ] as const) {
    await raw.closed;
    const elapsed = Date.now() - started;
    t.ok(elapsed >= 2500 && elapsed < 20_000, `${name}: closed after ${elapsed} ms`);
  }
  t.match(noKex.text(), /^SSH-2\.0-pamgate/, "the gateway had sent its version line");

  // OpenSSH whose token never comes (its askpass hangs): told why in a banner, then disconnected.
  const hang = join(g.dir, "askpass-hang");
  writeFileSync(hang, "#!/bin/sh\nsleep 8\necho not-a-token\n");
  chmodSync(hang, 0o755);
  const stuck = await run(
    "ssh",
    [...g.clientOptions(), "-p", String(g.sshPort), "-l", g.login(), "127.0.0.1", "--", "true"],
    undefined,
    { ...g.env(alice), SSH_ASKPASS: hang },
  );
  t.equal(stuck.code, 255);
  t.match(stuck.stderr, /not completed within 3 s \(listeners\.ssh\.auth_timeout_s\)/);

  t.equal((await exec(c, "echo still-here")).out, "still-here\n", "the authenticated connection goes on");
  t.equal(details().pending_auth, 0);
  t.ok(details().auth_timeouts >= 3);
});

t.test(
  "max_unauthenticated_connections: beyond it a connection is refused at once, saying why",
  async (t) => {
    const alice = await g.tokenFor("alice");
    const c = await connectClient(alice);
    t.teardown(() => c.end());
    const hogs = await Promise.all([1, 2, 3].map(() => rawConnect()));
    await until("3 connections pending", () => details().pending_auth === 3);

    const over = await rawConnect();
    await over.closed;
    t.match(
      over.text(),
      /^pamgate: too many connections pending authentication on this listener \(listeners\.ssh\.max_unauthenticated_connections = 3\); try again shortly\r\n$/,
      "a line before any version line, then closed",
    );
    const refused = await g.ssh(alice, ["true"]);
    t.equal(refused.code, 255, "OpenSSH gets no session");
    t.equal((await exec(c, "echo busy-but-fine")).out, "busy-but-fine\n", "authenticated connections go on");

    for (const h of hogs) h.socket.destroy();
    await until("nothing pending", () => details().pending_auth === 0);
    const ok = await g.ssh(alice, ["echo", "again"]);
    t.equal(ok.code, 0, ok.stderr);
    t.equal(ok.stdout, "again\n");
    t.ok(details().refused_pending_limit >= 2);
  },
);

t.test("max_command_bytes and max_command_nesting: refused before anything runs, quickly", async (t) => {
  const c = await connectClient(await g.tokenFor("alice"));
  t.teardown(() => c.end());

  const long = await exec(c, `echo ${"x".repeat(5000)}`);
  t.equal(long.code, 126);
  t.match(long.err, /4096.*\[ssh\.command_too_large\]/);
  t.equal(
    (await exec(c, `echo ${"y".repeat(3000)}`)).out,
    `${"y".repeat(3000)}\n`,
    "under the limit it runs",
  );

  let last = Date.now();
  let worstGap = 0;
  const ticker = setInterval(() => {
    const now = Date.now();
    worstGap = Math.max(worstGap, now - last);
    last = now;
  }, 5);
  t.teardown(() => clearInterval(ticker));
  const nested: Record<string, string> = {
    "nested $(…)": `echo ${"$(echo ".repeat(500)}x${")".repeat(500)}`,
    "nested subshells": `${"(".repeat(2000)}true${")".repeat(2000)}`,
    "nested groups": `${"{ ".repeat(700)}true${"; }".repeat(700)}`,
    "a long && chain": `true${" && true".repeat(500)}`,
    "65 levels (the configured limit is 64)": `${"(".repeat(65)}true${")".repeat(65)}`,
  };
  for (const [name, line] of Object.entries(nested)) {
    t.ok(Buffer.byteLength(line) <= 4096, `${name}: within max_command_bytes`);
    const started = Date.now();
    const r = await exec(c, line);
    t.equal(r.code, 126, name);
    t.match(r.err, /nests deeper than 64 levels.*\[ssh\.command_too_deep\]/, name);
    t.ok(Date.now() - started < 10_000, `${name}: refused in ${Date.now() - started} ms`);
  }
  clearInterval(ticker);
  t.ok(worstGap < 2_000, `the event loop was never blocked for long (worst gap ${worstGap} ms)`);
  const shallow = await exec(c, `${"( ".repeat(5)}echo shallow${" )".repeat(5)}`);
  t.equal(shallow.out, "shallow\n", `shallow nesting runs ${shallow.err}`);
});

t.test("limits.sessions_per_identity counts SSH and PostgreSQL sessions together", async (t) => {
  const carol = await g.tokenFor("carol");
  const carolIdentity = { iss: g.gw.devIssuer?.issuer ?? "", sub: "carol" } as Identity;
  const db = new pg.Client({ connectionString: g.url(carol, "staging-db") });
  db.on("error", () => {});
  await db.connect();
  t.teardown(() => db.end().catch(() => {}));
  const sshConn = await connectClient(carol);
  t.teardown(() => sshConn.end());
  t.equal(g.gw.sessions.countFor(carolIdentity), 2);

  const third = await g.ssh(carol, ["true"]);
  t.equal(third.code, 255);
  t.match(
    third.stderr,
    /pamgate: carol already has 2 sessions open through pamgate.*limits\.sessions_per_identity/,
  );
  const pgThird = new pg.Client({ connectionString: g.url(carol, "staging-db") });
  pgThird.on("error", () => {});
  const err = await pgThird.connect().then(
    () => null,
    (e: { code?: string; message: string }) => e,
  );
  t.equal(err?.code, "53300");

  // Others are not affected, and carol's sessions go on.
  const alice = await g.ssh(await g.tokenFor("alice"), ["echo", "alice"]);
  t.equal(alice.stdout, "alice\n", alice.stderr);
  t.equal((await exec(sshConn, "echo carol")).out, "carol\n");
  t.equal((await db.query("SELECT 1 AS x")).rows[0].x, 1);

  sshConn.end();
  await until("carol's ssh session ended", () => g.gw.sessions.countFor(carolIdentity) === 1);
  const now = await g.ssh(carol, ["echo", "now"]);
  t.equal(now.stdout, "now\n", now.stderr);

  const refusals: Array<Record<string, unknown>> = [];
  for await (const r of spoolRecords(join(g.dir, "audit"))) {
    if (r.kind !== "session") continue;
    const body = recordBody(r) as Record<string, unknown>;
    if (body.event === "refused") refusals.push(body);
  }
  t.match(
    refusals.map((r) => [r.protocol, r.code, r.sub]),
    [
      ["ssh", "session.identity_limit", "carol"],
      ["postgres", "session.identity_limit", "carol"],
    ],
  );
});
