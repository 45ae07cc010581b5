// The SSH gateway end to end, from real parts: OpenSSH's sshd (trusting the gateway's CA) started on loopback with
// a temp config, the real ssh / scp / sftp clients, and ssh2's client where a test needs to send what OpenSSH
// never would (several channels on one connection, raw bytes, unknown channel types, garbage on the wire).
import { spawn, spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import ssh2 from "ssh2";
import t from "tap";
import { spoolRecords } from "../../src/audit/reader.js";
import { loadRecording, recordedBytes, type SessionRecording } from "../../src/audit/replay.js";
import { listSegmentFiles } from "../../src/audit/spool-layout.js";
import { verifySpool } from "../../src/audit/verify.js";
import { packagePath } from "../../src/util/tools.js";
import { run } from "../helpers/gateway.js";
import { type SshTestGateway, startSshTestGateway } from "../helpers/ssh-gateway.js";
import { sshdAvailable } from "../helpers/sshd.js";

if (!sshdAvailable()) {
  t.plan(0, "OpenSSH sshd is not installed (scripts/bootstrap installs openssh-server)");
  process.exit(0);
}

let g: SshTestGateway;
t.before(async () => {
  g = await startSshTestGateway();
});
t.teardown(() => g?.stop());

const auditDir = () => join(g.dir, "audit");

async function records(kind: string): Promise<Array<Record<string, unknown>>> {
  const out: Array<Record<string, unknown>> = [];
  for await (const r of spoolRecords(auditDir())) if (r.kind === kind) out.push(JSON.parse(r.body));
  return out;
}

/** Transcript entries of every session so far. */
async function transcriptEntries(): Promise<Array<Record<string, unknown>>> {
  const out: Array<Record<string, unknown>> = [];
  for (const chunk of await records("recording"))
    if (chunk.format === "jsonl") out.push(...(chunk.events as Array<Record<string, unknown>>));
  return out;
}

/** An ssh2 client connection through the gateway (password = token). */
function connectClient(token: string, resource = "web-1"): Promise<ssh2.Client> {
  return new Promise((resolve, reject) => {
    const c = new ssh2.Client();
    c.on("ready", () => resolve(c)).on("error", reject);
    c.connect({
      host: "127.0.0.1",
      port: g.sshPort,
      username: g.login(resource),
      password: token,
      hostVerifier: () => true,
    });
  });
}

function exec(
  c: ssh2.Client,
  command: string | Buffer,
): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    c.exec(command as string, (err, ch) => {
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

async function waitForPending() {
  for (let i = 0; i < 200; i++) {
    const list = await g.gw.approvals.list({ status: "pending" });
    if (list[0]) return list[0];
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error("no pending approval");
}

t.test("exec: allowed commands run with their output and exit status; sshd logs the requester", async (t) => {
  const alice = await g.tokenFor("alice");
  const r = await g.ssh(alice, ["echo hello; id -un; exit 3"]);
  t.equal(r.code, 3, "the exit status comes back");
  t.equal(r.stdout, `hello\n${g.sshd.user}\n`);
  const line = await g.sshd.waitForLog(/Accepted publickey .*ED25519-CERT .*ID pamgate decision=/);
  t.match(line, /requester=alice/, "sshd's own log names the original requester in the certificate's key id");
  const decisionId = /decision=([0-9a-f-]+)/.exec(line)?.[1];
  const decisions = await records("decision");
  t.ok(
    decisions.some((d) => d.decision_id === decisionId),
    "the key id names the decision on record",
  );
  const ids = await transcriptEntries();
  t.ok(
    ids.some((e) => e.event === "exec" && e.action === "allow"),
    "the exec is in the transcript",
  );
});

t.test("exec: output that comes after the exit status still reaches the client", async (t) => {
  // sshd sends exit-status when the program exits; a background child still holding stdout writes after it.
  // (pamgate used to end the client's channel at the exit status, and such output was lost.)
  const alice = await g.tokenFor("alice");
  const r = await g.ssh(alice, ["(sleep 0.5; echo late; echo late-err >&2) & echo early; exit 4"]);
  t.equal(r.code, 4, "the exit status of the program");
  t.equal(r.stdout, "early\nlate\n", "and every byte of stdout");
  t.match(r.stderr, /late-err/, "and of stderr");
});

t.test("exec through a delegation chain: the key id names the person and the chain", async (t) => {
  const bot = await g.botFor("alice");
  const r = await g.ssh(bot, ["true"]);
  t.equal(r.code, 0, `ssh exited ${r.code}: ${r.stderr}`);
  const line = await g.sshd.waitForLog(/requester=alice chain=alice>ci-bot/);
  t.ok(line);
});

t.test(
  "exec: a blocked command is told why on stderr, exits 126, and the connection stays usable",
  async (t) => {
    const alice = await g.tokenFor("alice");
    const r = await g.ssh(alice, ["ls /tmp && rm -rf /"]);
    t.equal(r.code, 126);
    t.match(
      r.stderr,
      /pamgate: blocked: blocked as destructive: a recursive or forced rm of \/ .*\[ssh\.destructive\]/,
    );
    const c = await connectClient(alice);
    t.teardown(() => c.end());
    const blocked = await exec(c, "bash -c 'sh -c \"rm -rf /etc\"'");
    t.equal(blocked.code, 126, "recursion into bash -c and sh -c finds the rm");
    const after = await exec(c, "echo still-here");
    t.equal(after.out, "still-here\n", "the next channel on the same connection works");
  },
);

t.test("exec: what the parser cannot check is blocked with the reason", async (t) => {
  const alice = await g.tokenFor("alice");
  const c = await connectClient(alice);
  t.teardown(() => c.end());
  const cases: Array<[string | Buffer, RegExp]> = [
    ["echo 'unterminated", /\[ssh\.command_unparsable\]/],
    ["$CMD -rf /", /\[ssh\.command_dynamic\]/],
    [`echo ${"x".repeat(20_000)}`, /more than the 16384 allowed.*\[ssh\.command_too_large\]/],
    [Buffer.from([0x65, 0x63, 0x68, 0x6f, 0x20, 0xff, 0xfe]), /not valid UTF-8.*\[ssh\.command_not_utf8\]/],
  ];
  for (const [line, why] of cases) {
    const r = await exec(c, line);
    t.equal(r.code, 126, String(line).slice(0, 40));
    t.match(r.err, why);
  }
  t.equal((await exec(c, "echo ok")).out, "ok\n", "and the connection goes on");
  const viaOpenSsh = await run(
    "bash",
    ["-c", `ssh ${g.clientOptions().join(" ")} -p ${g.sshPort} -l ${g.login()} 127.0.0.1 $'echo \\xff'`],
    undefined,
    g.env(alice),
  );
  t.equal(viaOpenSsh.code, 126, "OpenSSH sending raw bytes is refused the same way");
  t.match(viaOpenSsh.stderr, /ssh\.command_not_utf8/);
});

t.test(
  "approve: a sudo exec waits for an approver, runs once approved, and the grant lets a retry through",
  async (t) => {
    const alice = await g.tokenFor("alice");
    const held = g.ssh(alice, ["sudo -n true; echo ran"]);
    const pending = await waitForPending();
    t.equal(pending.command.text, "sudo -n true; echo ran", "the approver sees the exact command line");
    const bob = (await g.gw.verifier.verify(await g.tokenFor("bob"))).identity;
    await g.gw.approvals.approve(pending.id, bob, { comment: "ok" });
    const r = await held;
    t.match(
      r.stderr,
      new RegExp(`waiting for approval ${pending.id}`),
      "the user was told what it waits for",
    );
    t.match(r.stdout, /ran/, `the approved exec ran (exit ${r.code}, stderr: ${r.stderr})`);
    const again = await g.ssh(alice, ["sudo -n true; echo ran"]);
    t.match(
      again.stdout,
      /ran/,
      `the same command runs under the grant (exit ${again.code}, stderr: ${again.stderr})`,
    );
    const other = g.ssh(alice, ["sudo -n true; echo other"]);
    const second = await waitForPending();
    t.not(second.id, pending.id, "a different command line needs its own approval");
    await g.gw.approvals.deny(second.id, bob, { comment: "no" });
    const denied = await other;
    t.equal(denied.code, 126);
    t.match(denied.stderr, /denied.*\[approval\.denied\]/);
  },
);

t.test("approve: a client that disconnects while held leaves nothing behind", async (t) => {
  const alice = await g.tokenFor("alice");
  const child = spawn(
    "ssh",
    [...g.clientOptions(), "-p", String(g.sshPort), "-l", g.login(), "127.0.0.1", "sudo -n true; echo late"],
    { env: g.env(alice), stdio: ["ignore", "pipe", "pipe"] },
  );
  const pending = await waitForPending();
  child.kill("SIGKILL");
  await new Promise((r) => child.on("close", r));
  const bob = (await g.gw.verifier.verify(await g.tokenFor("bob"))).identity;
  await g.gw.approvals.deny(pending.id, bob, { comment: "cleanup" });
  for (let i = 0; i < 50 && g.gw.sessions.count("ssh") > 0; i++) await new Promise((r) => setTimeout(r, 50));
  t.equal(g.gw.sessions.count("ssh"), 0, "the session ended");
  const r = await g.ssh(alice, ["echo fine"]);
  t.equal(r.stdout, "fine\n", "other sessions go on");
});

t.test("shell: a person gets a recorded shell; a machine identity gets exec only", async (t) => {
  const alice = await g.tokenFor("alice");
  const r = await g.ssh(alice, [], { options: ["-tt"], input: "echo from-the-shell\nexit\n" });
  t.match(r.stdout, /from-the-shell/);
  const entries = await transcriptEntries();
  t.ok(
    entries.some((e) => e.event === "typed" && e.line === "echo from-the-shell"),
    "typed lines are noted",
  );
  const recId = entries
    .filter((e) => e.event === "recording")
    .map((e) => e.recording_id as string)
    .pop();
  t.ok(recId, "the shell's recording is named in the transcript");
  await new Promise((r) => setTimeout(r, 400));
  const rec = await loadRecording(spoolRecords(auditDir()), recId as string);
  t.equal(rec?.format, "asciicast-v2");
  t.equal(rec?.header.version, 2);
  t.ok(rec?.complete, "the recording is complete");
  t.ok(
    rec?.events.some((e) => Array.isArray(e) && e[1] === "o" && String(e[2]).includes("from-the-shell")),
    "the output is recorded",
  );
  t.match(
    rec?.keyframes[0],
    { index: 0, t: Number, width: Number, height: Number, screen: String },
    "a pty recording has keyframes",
  );
  const bot = await g.botFor("alice");
  const denied = await g.ssh(bot, [], { options: ["-tt"], input: "exit\n" });
  t.equal(denied.code, 126);
  t.match(denied.stderr, /machine identity and may not open an interactive shell.*\[ssh\.shell_machine\]/);
});

t.test("forwarding, X11 and agent forwarding are refused with the policy's reason", async (t) => {
  const alice = await g.tokenFor("alice");
  const c = await connectClient(alice);
  t.teardown(() => c.end());
  const local = await new Promise<Error | null>((resolve) =>
    c.forwardOut("127.0.0.1", 1234, "127.0.0.1", g.sshd.port, (err) => resolve(err ?? null)),
  );
  t.match(local?.message, /port forwarding is disabled.*\[ssh\.port_forward\]/, "local forwarding");
  const remote = await new Promise<Error | null>((resolve) =>
    c.forwardIn("127.0.0.1", 0, (err) => resolve(err ?? null)),
  );
  t.ok(remote, "remote forwarding is refused");
  // A real agent, so that ssh -A asks for agent forwarding.
  const sock = join(g.dir, "agent.sock");
  const agent = spawn("ssh-agent", ["-D", "-a", sock], { stdio: "ignore" });
  t.teardown(() => agent.kill());
  for (let i = 0; i < 50; i++) {
    try {
      readFileSync(sock);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") break;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const r = await run(
    "ssh",
    [...g.clientOptions(), "-X", "-A", "-p", String(g.sshPort), "-l", g.login(), "127.0.0.1", "echo x"],
    undefined,
    { ...g.env(alice), SSH_AUTH_SOCK: sock },
  );
  t.equal(r.stdout, "x\n", "the command itself runs");
  t.match(r.stderr, /X11 forwarding refused.*\[ssh\.x11_forwarding\]/);
  t.match(r.stderr, /agent forwarding refused.*\[ssh\.agent_forwarding\]/);
  const entries = await transcriptEntries();
  for (const what of ["x11", "agent_forward", "channel", "global_request"])
    t.ok(
      entries.some((e) => e.event === what && e.action === "block"),
      `${what} is recorded as a decision`,
    );
});

t.test(
  "unknown channel types and garbage on the wire: a refusal, and nothing else is affected",
  async (t) => {
    const alice = await g.tokenFor("alice");
    const c = await connectClient(alice);
    t.teardown(() => c.end());
    // ssh2's client has no API for a made-up channel type: write CHANNEL_OPEN through its packet writer.
    const proto = (
      c as unknown as {
        _protocol: {
          _packetRW: { write: { allocStart: number; alloc(n: number): Buffer; finalize(b: Buffer): Buffer } };
        };
      }
    )._protocol;
    const { sendPacket } = createRequire(import.meta.url)("ssh2/lib/protocol/utils.js") as {
      sendPacket: (p: unknown, b: Buffer) => void;
    };
    const type = Buffer.from("x-evil@example.com");
    const w = proto._packetRW.write;
    const pkt = w.alloc(1 + 4 + type.length + 12);
    let p = w.allocStart;
    pkt[p++] = 90;
    pkt.writeUInt32BE(type.length, p);
    type.copy(pkt, p + 4);
    p += 4 + type.length;
    pkt.writeUInt32BE(99, p);
    pkt.writeUInt32BE(65536, p + 4);
    pkt.writeUInt32BE(32768, p + 8);
    sendPacket(proto, w.finalize(pkt));
    for (let i = 0; i < 50; i++) {
      if ((await transcriptEntries()).some((e) => e.event === "channel" && e.type === "x-evil@example.com"))
        break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const entry = (await transcriptEntries()).find((e) => e.type === "x-evil@example.com");
    t.match(entry, { action: "block" }, "the unknown channel is decided and recorded");
    t.equal((await exec(c, "echo alive")).out, "alive\n", "the connection goes on");

    const garbage = connect(g.sshPort, "127.0.0.1");
    garbage.on("error", () => {});
    garbage.resume();
    garbage.write("SSH-2.0-fuzzer\r\n");
    garbage.write(Buffer.alloc(4096, 0x41));
    const ended = await new Promise<boolean>((r) => {
      garbage.on("end", () => r(true));
      setTimeout(() => r(false), 10_000).unref();
    });
    garbage.destroy();
    t.ok(ended, "a malformed packet closes that connection");
    t.equal((await exec(c, "echo bystander")).out, "bystander\n", "a bystander session is unaffected");
  },
);

t.test("sftp per operation and scp: a download-only resource refuses writes", async (t) => {
  const alice = await g.tokenFor("alice");
  const work = mkdtempSync(join(tmpdir(), "pamgate-sftp-"));
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  const remoteDir = mkdtempSync(join(tmpdir(), "pamgate-remote-"));
  t.teardown(() => rmSync(remoteDir, { recursive: true, force: true }));
  writeFileSync(join(work, "up.txt"), "uploaded through pamgate\n");
  writeFileSync(join(remoteDir, "report.csv"), "a,b\n1,2\n");

  const host = (resource: string) => `${g.login(resource)}@127.0.0.1`;
  // Commands on stdin, not -b: sftp -b forces BatchMode, which turns off the token prompt.
  const ok = await g.client(
    "sftp",
    alice,
    [host("web-1")],
    `put ${join(work, "up.txt")} ${remoteDir}/up.txt\nget ${remoteDir}/report.csv ${work}/got.csv\n`,
  );
  t.equal(ok.code, 0, ok.stderr);
  t.equal(
    readFileSync(join(remoteDir, "up.txt"), "utf8"),
    "uploaded through pamgate\n",
    "the upload arrived",
  );
  t.equal(readFileSync(join(work, "got.csv"), "utf8"), "a,b\n1,2\n", "the download arrived");
  const entries = await transcriptEntries();
  t.ok(
    entries.some((e) => e.event === "sftp" && e.op === "open" && e.path === `${remoteDir}/up.txt`),
    "each open is decided",
  );
  t.ok(
    entries.some((e) => e.event === "sftp.bytes" && e.path === `${remoteDir}/up.txt` && e.written === 25),
    "bytes per path",
  );

  const ro = await g.client(
    "sftp",
    alice,
    [host("archive")],
    `get ${remoteDir}/report.csv ${work}/got2.csv\nput ${join(work, "up.txt")} ${remoteDir}/up2.txt\n`,
  );
  // sftp prints the status code's text, not the message pamgate puts in it; the record has the reason.
  t.match(ro.stderr, /up2\.txt.*Permission denied/, "the put is refused");
  const refused = (await records("decision")).find(
    (d) => (d.input as { command?: { path?: string } })?.command?.path === `${remoteDir}/up2.txt`,
  );
  t.match(refused?.result, { action: "block", reasons: [{ code: "ssh.download_only" }] }, "as download-only");
  t.equal(readFileSync(join(work, "got2.csv"), "utf8"), "a,b\n1,2\n", "downloads from it work");
  t.throws(() => readFileSync(join(remoteDir, "up2.txt")), "the upload never reached the target");

  const scpUp = await g.client("scp", alice, [
    "-O",
    join(work, "up.txt"),
    `${host("archive")}:${remoteDir}/up3.txt`,
  ]);
  t.not(scpUp.code, 0, "legacy scp upload (scp -t) is refused");
  t.match(scpUp.stderr, /download-only/);
  const scpDown = await g.client("scp", alice, [
    "-O",
    `${host("archive")}:${remoteDir}/report.csv`,
    join(work, "got3.csv"),
  ]);
  t.equal(scpDown.code, 0, scpDown.stderr);
  t.equal(readFileSync(join(work, "got3.csv"), "utf8"), "a,b\n1,2\n", "the scp -O download arrived");
  const isTransfer = (e: Record<string, unknown>) =>
    e.event === "transfer" && e.direction === "download" && String(e.paths).includes("report.csv");
  // The transcript is written in chunks (every 250 ms): wait for the one with the transfer.
  for (let i = 0; i < 50 && !(await transcriptEntries()).some(isTransfer); i++)
    await new Promise((r) => setTimeout(r, 100));
  const transfer = (await transcriptEntries()).find(isTransfer);
  t.match(transfer, { protocol: "scp", code: 0 }, "scp -f is recorded as a transfer, not as terminal output");
  t.ok(Number(transfer?.bytes_from_target) >= 8, "with its byte count");
  const scpNew = await g.client("scp", alice, [
    join(work, "up.txt"),
    `${host("web-1")}:${remoteDir}/up4.txt`,
  ]);
  t.equal(scpNew.code, 0, scpNew.stderr);
  t.equal(
    readFileSync(join(remoteDir, "up4.txt"), "utf8"),
    "uploaded through pamgate\n",
    "scp over SFTP works",
  );
});

t.test("bad tokens and unknown resources are refused with a message ssh prints", async (t) => {
  const bad = await g.ssh("not-a-token", ["true"]);
  t.equal(bad.code, 255);
  t.match(bad.stderr, /pamgate: access token rejected/);
  const alice = await g.tokenFor("alice");
  const unknown = await g.ssh(alice, ["true"], { resource: "nope" });
  t.match(unknown.stderr, /"nope" is not a pamgate ssh resource/);
});

/** The terminal recording of the exec of `line` (found through its session's transcript). */
async function recordingOfExec(line: string): Promise<SessionRecording | null> {
  const transcripts = new Map<string, Array<Record<string, unknown>>>();
  for (const chunk of await records("recording")) {
    if (chunk.format !== "jsonl") continue;
    const entries = transcripts.get(chunk.session_id as string) ?? [];
    entries.push(...(chunk.events as Array<Record<string, unknown>>));
    transcripts.set(chunk.session_id as string, entries);
  }
  for (const entries of transcripts.values()) {
    if (!entries.some((e) => e.event === "exec" && e.line === line)) continue;
    const id = entries.find((e) => e.event === "recording")?.recording_id as string;
    return loadRecording(spoolRecords(auditDir()), id);
  }
  return null;
}

// Keep this one last: it stops the gateway (the teardown's stop() then only removes what is left).
t.test("recordings are chained into the audit trail: one changed byte fails verify", async (t) => {
  const alice = await g.tokenFor("alice");
  const marker = `recorded-${process.pid}-output`;
  const printed = await g.ssh(alice, [`echo ${marker}`]);
  t.equal(printed.stdout, `${marker}\n`, printed.stderr);
  const binaryLine = "printf '\\377\\376ok'";
  const binary = await g.ssh(alice, [binaryLine]);
  t.equal(binary.code, 0, binary.stderr);
  // A clean stop: sessions end, their recordings close, the spool is sealed.
  await g.gw.close();

  const bin = await recordingOfExec(binaryLine);
  t.ok(bin?.complete, "the recording of the printf is complete");
  t.same(
    recordedBytes(bin as SessionRecording),
    Buffer.from([0xff, 0xfe, 0x6f, 0x6b]),
    "output that is not UTF-8 comes back byte-exact through the loader",
  );
  t.match(bin?.events, [[Number, "o", "\uFFFD\uFFFDok"]], "while the .cast has its text");
  const recId = ((await recordingOfExec(`echo ${marker}`)) as SessionRecording).session_id;
  const pamgate = (args: string[]) =>
    spawnSync(process.execPath, [packagePath("bin", "pamgate.js"), ...args], { cwd: packagePath() });
  const raw = pamgate(["replay", bin?.session_id as string, "--raw", "--spool", auditDir()]);
  t.equal(raw.status, 0, String(raw.stderr));
  t.same(raw.stdout, Buffer.from([0xff, 0xfe, 0x6f, 0x6b]), "pamgate replay --raw prints the exact bytes");

  const pristine = join(g.dir, "audit-copy");
  const tampered = join(g.dir, "audit-tampered");
  cpSync(auditDir(), pristine, { recursive: true });
  cpSync(auditDir(), tampered, { recursive: true });
  // The spool file and line holding the chunk with the echo's output; one byte of that output changed.
  let found: { file: string; line: number; seq: number } | null = null;
  for (const seg of await listSegmentFiles(tampered)) {
    const lines = readFileSync(seg.path, "utf8").split("\n");
    const i = lines.findIndex(
      (l) => l.includes('"kind":"recording"') && l.includes(JSON.stringify(recId)) && l.includes(marker),
    );
    if (i < 0) continue;
    lines[i] = (lines[i] as string).replace(marker, marker.replace("output", "outpub"));
    writeFileSync(seg.path, lines.join("\n"));
    found = {
      file: basename(seg.path),
      line: i + 1,
      seq: Number(/^\{"seq":(\d+)/.exec(lines[i] as string)?.[1]),
    };
    break;
  }
  t.ok(found, "the spool file with the recording chunk");
  const ok = pamgate(["audit", "verify", "--spool", pristine]);
  t.equal(ok.status, 0, String(ok.stdout) + String(ok.stderr));
  t.match(String(ok.stdout), /^ok: .* chain intact/, "the unmodified copy verifies");
  const bad = pamgate(["audit", "verify", "--spool", tampered]);
  t.equal(bad.status, 1, "one changed byte of recorded output fails verify");
  t.match(String(bad.stdout), `FAILED: ${tampered} spool `);
  t.match(
    String(bad.stdout),
    `first bad record seq ${found?.seq} at ${found?.file} line ${found?.line}: seq ${found?.seq} was modified`,
    "naming the record of that chunk",
  );
  t.ok((await verifySpool(auditDir())).ok, "the trail itself verifies");
});
