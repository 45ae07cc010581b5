// SFTP framing and request tracking (src/proxy/ssh/sftp.ts): hand-built packets, malformed ones, and a run
// against the real OpenSSH sftp-server over pipes.
//
// Throughput (not asserted; measured with `node --import tsx`, Node 20, 32 KiB DATA replies each answering a
// tracked READ, through SftpFramer.push + SftpSession.serverPacket): ~2.3 M packets/s (~75 GB/s of payload)
// when each packet arrives as its own chunk; ~120-150 k packets/s (~4-5 GB/s) when the stream comes in 32 KiB
// chunks that never line up with packets, the one copy per packet dominating. 32 KiB WRITEs through the framer
// + clientPacket: ~130-140 k packets/s (~4.5 GB/s). Either way far beyond what an SSH channel carries.
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import t from "tap";
import {
  encodeSftpPacket as enc,
  SftpPacketType as P,
  SftpStatusCode as S,
  SftpFramer,
  type SftpOperation,
  SftpProtocolError,
  SftpSession,
} from "../../src/proxy/ssh/sftp.js";

const FXF = { READ: 1, WRITE: 2, APPEND: 4, CREAT: 8, TRUNC: 0x10, EXCL: 0x20 } as const;
const ATTR = { SIZE: 1, UIDGID: 2, PERMISSIONS: 4, ACMODTIME: 8, EXTENDED: 0x80000000 } as const;

/** Opens `path` (or a directory) and answers with `handle`, as a server would. */
function bind(
  s: SftpSession,
  id: number,
  path: string,
  handle: Buffer,
  pflags: number = FXF.READ,
  dir = false,
): void {
  s.clientPacket(dir ? enc(P.OPENDIR, id, path) : enc(P.OPEN, id, path, pflags, 0));
  s.serverPacket(enc(P.HANDLE, id, handle));
}

const H1 = Buffer.from([0, 0, 0, 1]);
const H2 = Buffer.from([0xff, 0x80, 0, 0]);
const HD = Buffer.from([0, 0, 0, 2]);

t.test("framer: every split point, one byte at a time, and views without copies", async (t) => {
  const packets = [
    enc(P.INIT, 3),
    enc(P.OPEN, 1, "/tmp/a", FXF.WRITE | FXF.CREAT, ATTR.PERMISSIONS, 0o644),
    enc(P.WRITE, 2, H1, 0n, randomBytes(300)),
    enc(P.CLOSE, 3, H1),
    enc(P.EXTENDED, 4, "limits@openssh.com"),
  ];
  const stream = Buffer.concat(packets);
  const same = (got: Buffer[]) =>
    got.length === packets.length && got.every((g, i) => g.equals(packets[i] as Buffer));

  let bad = 0;
  for (let i = 0; i <= stream.length; i++) {
    const f = new SftpFramer();
    const got = [...f.push(stream.subarray(0, i)), ...f.push(stream.subarray(i))];
    if (!same(got) || f.pending !== 0) bad++;
  }
  t.equal(bad, 0, "two chunks, split at each of the stream's offsets");

  // Two cuts over the first two packets: covers a length field cut twice and every pair of positions.
  const short = stream.subarray(0, (packets[0] as Buffer).length + (packets[1] as Buffer).length);
  bad = 0;
  for (let i = 0; i <= short.length; i++) {
    for (let j = i; j <= short.length; j++) {
      const f = new SftpFramer();
      const got = [
        ...f.push(short.subarray(0, i)),
        ...f.push(short.subarray(i, j)),
        ...f.push(short.subarray(j)),
      ];
      if (got.length !== 2 || !got[0]?.equals(packets[0] as Buffer) || !got[1]?.equals(packets[1] as Buffer))
        bad++;
    }
  }
  t.equal(bad, 0, "three chunks, every pair of cuts");

  const f = new SftpFramer();
  const got: Buffer[] = [];
  const pendings: number[] = [];
  for (const byte of stream) {
    got.push(...f.push(Buffer.from([byte])));
    pendings.push(f.pending);
  }
  t.ok(same(got), "one byte at a time");
  t.equal(pendings[0], 1, "a byte of a length field is pending");
  t.equal(pendings[3], 4, "INIT (9 bytes) is pending after 4");
  t.equal(pendings[8], 0, "and is handed over at its last byte");
  t.equal(pendings[9], 1);

  const whole = new SftpFramer().push(stream);
  t.ok(same(whole));
  t.ok(
    whole.every((p) => p.buffer === stream.buffer),
    "packets within one chunk are views of it",
  );
  t.same(new SftpFramer().push(Buffer.alloc(0)), []);
});

t.test("framer: oversize and empty packets are refused", async (t) => {
  const f = new SftpFramer(1000);
  t.same(f.push(enc(P.WRITE, 1, H1, 0n, Buffer.alloc(1000 - 25))).length, 1, "exactly at the limit");
  t.throws(
    () => f.push(enc(P.WRITE, 2, H1, 0n, Buffer.alloc(1000 - 24))),
    { name: "SftpProtocolError", message: /1001 bytes exceeds the limit of 1000/ },
    "one byte over",
  );

  const big = Buffer.alloc(4);
  big.writeUInt32BE(0xffffffff);
  const split = new SftpFramer();
  t.same(split.push(big.subarray(0, 2)), []);
  t.throws(() => split.push(big.subarray(2)), SftpProtocolError, "decided as soon as the length is whole");

  t.throws(() => new SftpFramer().push(Buffer.from([0, 0, 0, 0])), /length 0/);
  const dflt = new SftpFramer();
  t.same(
    dflt.push(enc(P.DATA, 1, Buffer.alloc(256 * 1024))).length,
    1,
    "the default takes a 256 KiB payload",
  );
  t.throws(() => dflt.push(enc(P.DATA, 1, Buffer.alloc(257 * 1024))), SftpProtocolError);
});

t.test("every request type is classified", async (t) => {
  const s = new SftpSession();
  t.equal(s.clientPacket(enc(P.INIT, 3)), null, "INIT passes");
  s.serverPacket(enc(P.VERSION, 3, "posix-rename@openssh.com", "1"));
  bind(s, 1, "/data/f", H1, FXF.READ | FXF.WRITE);
  bind(s, 2, "/data/g", H2, FXF.READ);
  bind(s, 3, "/data", HD, 0, true);
  // Every attribute: flags, size, uid, gid, permissions, atime, mtime, one extended pair.
  const attrs = [0x8000000f, 10n, 1000, 1000, 0o600, 1, 2, 1, "ext", "val"] as const;
  const up = { direction: "upload", mutating: true } as const;
  const down = { direction: "download", mutating: false } as const;
  const none = { direction: "none", mutating: false } as const;

  const cases: Array<[string, Buffer, Partial<SftpOperation> & { op: SftpOperation["op"] }]> = [
    ["open read", enc(P.OPEN, 10, "/r", FXF.READ, 0), { op: "open", path: "/r", flags: ["read"], ...down }],
    ["open no flags", enc(P.OPEN, 10, "/r", 0, 0), { op: "open", path: "/r", flags: [], ...down }],
    [
      "open read|excl",
      enc(P.OPEN, 10, "/r", FXF.READ | FXF.EXCL, 0),
      { op: "open", path: "/r", flags: ["read", "exclusive"], ...down },
    ],
    [
      "open write|creat|trunc with attrs",
      enc(P.OPEN, 10, "/w", FXF.WRITE | FXF.CREAT | FXF.TRUNC, ...attrs),
      { op: "open", path: "/w", flags: ["write", "create", "truncate"], ...up },
    ],
    [
      "open append",
      enc(P.OPEN, 10, "/w", FXF.APPEND, 0),
      { op: "open", path: "/w", flags: ["append"], ...up },
    ],
    [
      "open creat|excl",
      enc(P.OPEN, 10, "/w", FXF.CREAT | FXF.EXCL, 0),
      { op: "open", path: "/w", flags: ["create", "exclusive"], ...up },
    ],
    [
      "open trunc alone",
      enc(P.OPEN, 10, "/w", FXF.READ | FXF.TRUNC, 0),
      { op: "open", path: "/w", flags: ["read", "truncate"], ...up },
    ],
    ["close", enc(P.CLOSE, 10, H1), { op: "close", path: "/data/f", ...none }],
    ["read", enc(P.READ, 10, H2, 1n << 40n, 32768), { op: "read", path: "/data/g", bytes: 32768, ...down }],
    ["write", enc(P.WRITE, 10, H1, 0n, Buffer.alloc(7)), { op: "write", path: "/data/f", bytes: 7, ...up }],
    ["opendir", enc(P.OPENDIR, 10, "/d"), { op: "opendir", path: "/d", ...down }],
    ["readdir", enc(P.READDIR, 10, HD), { op: "readdir", path: "/data", ...down }],
    ["lstat", enc(P.LSTAT, 10, "/l"), { op: "stat", path: "/l", ...none }],
    ["stat", enc(P.STAT, 10, "/s"), { op: "stat", path: "/s", ...none }],
    ["fstat", enc(P.FSTAT, 10, H2), { op: "stat", path: "/data/g", ...none }],
    ["setstat", enc(P.SETSTAT, 10, "/s", ...attrs), { op: "setstat", path: "/s", ...up }],
    ["fsetstat", enc(P.FSETSTAT, 10, H1, ATTR.PERMISSIONS, 0o600), { op: "setstat", path: "/data/f", ...up }],
    ["remove", enc(P.REMOVE, 10, "/x"), { op: "remove", path: "/x", ...up }],
    ["mkdir", enc(P.MKDIR, 10, "/m", ATTR.PERMISSIONS, 0o755), { op: "mkdir", path: "/m", ...up }],
    ["rmdir", enc(P.RMDIR, 10, "/m"), { op: "rmdir", path: "/m", ...up }],
    ["realpath", enc(P.REALPATH, 10, "."), { op: "realpath", path: ".", ...none }],
    ["readlink", enc(P.READLINK, 10, "/ln"), { op: "readlink", path: "/ln", ...none }],
    ["rename", enc(P.RENAME, 10, "/a", "/b"), { op: "rename", path: "/a", target: "/b", ...up }],
    // OpenSSH order: what the link points to, then the link.
    [
      "symlink",
      enc(P.SYMLINK, 10, "/etc/hosts", "/data/ln"),
      { op: "symlink", path: "/etc/hosts", target: "/data/ln", ...up },
    ],
  ];
  const ext = (name: string, ...fields: Array<number | bigint | string | Buffer>) =>
    enc(P.EXTENDED, 10, name, ...fields);
  cases.push(
    [
      "posix-rename",
      ext("posix-rename@openssh.com", "/a", "/b"),
      { op: "rename", path: "/a", target: "/b", extension: "posix-rename@openssh.com", ...up },
    ],
    [
      "hardlink",
      ext("hardlink@openssh.com", "/etc/shadow", "/data/s"),
      { op: "link", path: "/etc/shadow", target: "/data/s", extension: "hardlink@openssh.com", ...up },
    ],
    [
      "lsetstat",
      ext("lsetstat@openssh.com", "/l", ...attrs),
      { op: "setstat", path: "/l", extension: "lsetstat@openssh.com", ...up },
    ],
    [
      "fsync",
      ext("fsync@openssh.com", H1),
      { op: "extended", path: "/data/f", extension: "fsync@openssh.com", ...none },
    ],
    [
      "statvfs",
      ext("statvfs@openssh.com", "/"),
      { op: "extended", path: "/", extension: "statvfs@openssh.com", ...none },
    ],
    [
      "fstatvfs",
      ext("fstatvfs@openssh.com", H2),
      { op: "extended", path: "/data/g", extension: "fstatvfs@openssh.com", ...none },
    ],
    [
      "limits",
      ext("limits@openssh.com"),
      { op: "extended", path: "", extension: "limits@openssh.com", ...none },
    ],
    [
      "expand-path",
      ext("expand-path@openssh.com", "~/x"),
      { op: "extended", path: "~/x", extension: "expand-path@openssh.com", ...none },
    ],
    [
      "home-directory",
      ext("home-directory", "bob"),
      { op: "extended", path: "", extension: "home-directory", ...none },
    ],
    [
      "users-groups-by-id",
      ext("users-groups-by-id@openssh.com", Buffer.from([0, 0, 0, 0]), Buffer.alloc(0)),
      { op: "extended", path: "", extension: "users-groups-by-id@openssh.com", ...none },
    ],
    [
      "copy-data",
      ext("copy-data", H2, 0n, 0n, H1, 0n),
      { op: "extended", path: "/data/f", extension: "copy-data", ...up },
    ],
    [
      "copy-data from an unknown handle",
      ext("copy-data", Buffer.from("zz"), 0n, 0n, H1, 0n),
      { op: "extended", path: "", extension: "copy-data", ...up },
    ],
    [
      "unknown extension",
      ext("evil@example.com", "/whatever", 5),
      { op: "extended", path: "", extension: "evil@example.com", ...up },
    ],
    [
      "unknown packet type",
      enc(77, 10, "/x"),
      { op: "extended", path: "", extension: "unknown-type-77", ...up },
    ],
  );
  for (const [name, packet, want] of cases) {
    const got = s.clientPacket(packet);
    t.strictSame(got, { id: 10, ...want }, name);
    s.refused(10); // so id 10 can be used again
  }
});

t.test("handles: bound by the HANDLE reply, resolved by handle ops, forgotten on CLOSE OK", async (t) => {
  const s = new SftpSession();
  t.equal(s.clientPacket(enc(P.READ, 1, H1, 0n, 10))?.path, "", "unknown handle → path ''");
  s.refused(1);
  t.equal(s.clientPacket(enc(P.CLOSE, 2, Buffer.alloc(300)))?.path, "", "an over-long handle is never known");

  s.clientPacket(enc(P.OPEN, 3, "/one", FXF.READ, 0));
  s.clientPacket(enc(P.OPEN, 4, "/two", FXF.WRITE, 0));
  t.equal(s.clientPacket(enc(P.READ, 5, H1, 0n, 10))?.path, "", "no handle before the reply");
  s.refused(5);
  // Replies out of order still bind by request id.
  s.serverPacket(enc(P.HANDLE, 4, H2));
  s.serverPacket(enc(P.HANDLE, 3, H1));
  t.equal(s.clientPacket(enc(P.FSTAT, 6, H1))?.path, "/one");
  t.equal(s.clientPacket(enc(P.FSTAT, 7, H2))?.path, "/two", "binary handle bytes are keys too");
  t.equal(s.clientPacket(enc(P.FSTAT, 8, Buffer.from([0xff, 0x80, 0, 1])))?.path, "");

  s.serverPacket(enc(P.HANDLE, 99, Buffer.from("x")));
  t.equal(
    s.clientPacket(enc(P.FSTAT, 9, Buffer.from("x")))?.path,
    "",
    "a HANDLE answering nothing binds nothing",
  );

  s.clientPacket(enc(P.CLOSE, 10, H1));
  s.serverPacket(enc(P.STATUS, 10, S.FAILURE, "close failed", ""));
  t.equal(s.clientPacket(enc(P.FSTAT, 11, H1))?.path, "/one", "a failed CLOSE keeps the handle");
  s.clientPacket(enc(P.CLOSE, 12, H1));
  s.refused(12);
  t.equal(s.clientPacket(enc(P.FSTAT, 13, H1))?.path, "/one", "so does a refused one");
  s.clientPacket(enc(P.CLOSE, 14, H1));
  t.equal(s.clientPacket(enc(P.FSTAT, 15, H1))?.path, "/one", "still bound until the reply");
  s.serverPacket(enc(P.STATUS, 14, S.OK, "", ""));
  t.equal(s.clientPacket(enc(P.FSTAT, 16, H1))?.path, "", "forgotten after STATUS OK");

  // The server reuses handle values once freed (OpenSSH does): the new OPEN's path wins.
  bind(s, 17, "/three", H1);
  t.equal(s.clientPacket(enc(P.READ, 18, H1, 0n, 1))?.path, "/three");

  s.clientPacket(enc(P.OPEN, 19, "/missing", FXF.READ, 0));
  s.serverPacket(enc(P.STATUS, 19, S.NO_SUCH_FILE, "No such file", ""));
  s.serverPacket(enc(P.HANDLE, 19, H2));
  t.equal(
    s.clientPacket(enc(P.FSTAT, 20, H2))?.path,
    "/two",
    "a late HANDLE for a failed OPEN binds nothing",
  );
});

t.test("refused(): a refused OPEN never yields a handle, a refused WRITE is not counted", async (t) => {
  const s = new SftpSession();
  s.clientPacket(enc(P.OPEN, 1, "/secret", FXF.READ, 0));
  s.refused(1);
  s.serverPacket(enc(P.HANDLE, 1, H1)); // whatever arrives for that id now binds nothing
  t.equal(s.clientPacket(enc(P.READ, 2, H1, 0n, 10))?.path, "");
  s.refused(2);
  s.refused(12345); // unknown ids are fine

  bind(s, 3, "/f", H2, FXF.WRITE);
  s.clientPacket(enc(P.WRITE, 4, H2, 0n, Buffer.alloc(10)));
  s.refused(4);
  t.strictSame(Object.fromEntries(s.bytesByPath()), {}, "paths without bytes are left out");
  s.clientPacket(enc(P.OPEN, 1, "/again", FXF.READ, 0));
  s.serverPacket(enc(P.HANDLE, 1, H1));
  t.equal(s.clientPacket(enc(P.FSTAT, 5, H1))?.path, "/again", "the id is free to use again");
});

t.test("bytes per path: writes at request time (minus failures), reads as DATA arrives", async (t) => {
  const s = new SftpSession();
  bind(s, 1, "/up", H1, FXF.WRITE | FXF.CREAT);
  bind(s, 2, "/down", H2, FXF.READ);
  bind(s, 3, "/up", HD, FXF.READ); // a second handle on the same path shares its count
  s.clientPacket(enc(P.WRITE, 10, H1, 0n, Buffer.alloc(100)));
  s.clientPacket(enc(P.WRITE, 11, H1, 100n, Buffer.alloc(50)));
  t.strictSame(s.bytesByPath().get("/up"), { read: 0, written: 150 }, "counted at request time");
  s.serverPacket(enc(P.STATUS, 10, S.OK, "", ""));
  s.serverPacket(enc(P.STATUS, 11, S.FAILURE, "disk full", ""));
  s.clientPacket(enc(P.READ, 12, H2, 0n, 32768));
  s.clientPacket(enc(P.READ, 13, H2, 32768n, 32768));
  s.clientPacket(enc(P.READ, 14, HD, 0n, 32768));
  s.serverPacket(enc(P.DATA, 12, Buffer.alloc(32768)));
  s.serverPacket(enc(P.DATA, 14, Buffer.alloc(100)));
  s.serverPacket(enc(P.STATUS, 13, S.EOF, "EOF", ""));
  s.serverPacket(enc(P.DATA, 13, Buffer.alloc(999))); // answers nothing any more
  t.strictSame(Object.fromEntries(s.bytesByPath()), {
    "/up": { read: 100, written: 100 },
    "/down": { read: 32768, written: 0 },
  });
  const copy = s.bytesByPath();
  (copy.get("/up") as { read: number }).read = 0;
  t.equal(s.bytesByPath().get("/up")?.read, 100, "the caller gets a copy");

  const few = new SftpSession({ maxPaths: 1 });
  bind(few, 1, "/a", H1, FXF.WRITE);
  bind(few, 2, "/b", H2, FXF.WRITE);
  few.clientPacket(enc(P.WRITE, 3, H1, 0n, Buffer.alloc(5)));
  few.clientPacket(enc(P.WRITE, 4, H2, 0n, Buffer.alloc(7)));
  t.strictSame(
    Object.fromEntries(few.bytesByPath()),
    { "/a": { read: 0, written: 5 }, "": { read: 0, written: 7 } },
    "paths past the limit are counted under ''",
  );
});

t.test("refusal(): a framed STATUS", async (t) => {
  const s = new SftpSession();
  const msg = "denied by policy: /etc/shadow ✗";
  const m = Buffer.from(msg, "utf8");
  const want = Buffer.alloc(4 + 1 + 4 + 4 + 4 + m.length + 4);
  want.writeUInt32BE(want.length - 4, 0);
  want[4] = 101;
  want.writeUInt32BE(0xdeadbeef, 5);
  want.writeUInt32BE(3, 9);
  want.writeUInt32BE(m.length, 13);
  m.copy(want, 17);
  want.writeUInt32BE(0, 17 + m.length);
  const got = s.refusal(0xdeadbeef, msg);
  t.ok(got.equals(want), "STATUS, id, PERMISSION_DENIED, message, empty language");

  const [framed] = new SftpFramer().push(s.refusal(7, "nope", S.OP_UNSUPPORTED));
  t.ok(framed);
  const f = framed as Buffer;
  t.equal(f.readUInt8(4), P.STATUS);
  t.equal(f.readUInt32BE(5), 7);
  t.equal(f.readUInt32BE(9), S.OP_UNSUPPORTED);
  t.equal(f.toString("utf8", 17, 17 + f.readUInt32BE(13)), "nope");
  t.equal(f.readUInt32BE(17 + 4), 0);
  t.equal(f.length, 25);
});

t.test("malformed requests and replies", async (t) => {
  const s = new SftpSession();
  bind(s, 1, "/f", H1, FXF.WRITE);

  const open = enc(P.OPEN, 2, "abc", FXF.READ, 0);
  open.writeUInt32BE(100, 9);
  t.throws(() => s.clientPacket(open), {
    name: "SftpProtocolError",
    message: /^OPEN: filename .*runs past the end/,
  });
  const write = enc(P.WRITE, 3, H1, 0n, Buffer.alloc(10));
  write.writeUInt32BE(11, write.length - 14);
  t.throws(
    () => s.clientPacket(write),
    /^WRITE: data \(11 bytes\) runs past the end of the packet \(10 left\)/,
  );
  t.throws(() => s.clientPacket(enc(P.READ, 4, H1, 0n)), /^READ: length/);
  t.throws(() => s.clientPacket(enc(P.SETSTAT, 5, "/x", ATTR.SIZE)), /^SETSTAT: attrs size/);
  t.throws(() => s.clientPacket(enc(P.MKDIR, 5, "/x")), /^MKDIR: attrs flags/, "MKDIR needs its attrs");
  t.throws(
    () => s.clientPacket(enc(P.SETSTAT, 5, "/x", ATTR.EXTENDED, 2, "a", "b", "c")),
    /attrs extended data length/,
  );
  t.throws(() => s.clientPacket(enc(P.RENAME, 6, "/a")), /^RENAME: newpath length/);
  t.throws(
    () => s.clientPacket(enc(P.EXTENDED, 7, "copy-data", H1, 0n)),
    /^EXTENDED copy-data: read-from offset/,
  );
  t.throws(() => s.clientPacket(enc(P.REMOVE)), /request id/);
  t.throws(() => s.clientPacket(Buffer.concat([enc(P.REMOVE, 8, "/x"), Buffer.from([0])])), /does not match/);
  t.throws(() => s.clientPacket(Buffer.from([0, 0])), /does not match/);
  const trailing = Buffer.concat([enc(P.STAT, 10, "/x"), Buffer.from("junk")]);
  trailing.writeUInt32BE(trailing.length - 4, 0);
  t.equal(s.clientPacket(trailing)?.path, "/x", "trailing bytes are ignored, as sftp-server does");

  t.throws(
    () => s.clientPacket(enc(P.OPEN, 11, Buffer.from([0x2f, 0xff, 0xfe]), 1, 0)),
    /filename is not valid UTF-8/,
  );
  t.throws(
    () => s.clientPacket(enc(P.STAT, 11, Buffer.from([0x2f, 0xc0, 0xaf]))),
    /not valid UTF-8/,
    "overlong '/'",
  );
  t.throws(
    () => s.clientPacket(enc(P.STAT, 11, Buffer.from([0xed, 0xa0, 0x80]))),
    /not valid UTF-8/,
    "a surrogate",
  );
  t.throws(() => s.clientPacket(enc(P.REMOVE, 11, "/ok.txt\0/etc/shadow")), /contains a NUL byte/);
  t.equal(s.clientPacket(enc(P.STAT, 12, "/tmp/日本語 ✓"))?.path, "/tmp/日本語 ✓");

  s.clientPacket(enc(P.READ, 20, H1, 0n, 10));
  const data = enc(P.DATA, 20, Buffer.alloc(10));
  data.writeUInt32BE(50, 9);
  t.throws(() => s.serverPacket(data), /^DATA: data/);
  t.throws(() => s.serverPacket(enc(P.STATUS, 20)), /^STATUS: status code/);
  t.throws(() => s.serverPacket(enc(P.HANDLE)), /^HANDLE: request id/);
  s.clientPacket(enc(P.OPEN, 21, "/g", FXF.READ, 0));
  t.throws(
    () => s.serverPacket(enc(P.HANDLE, 21, Buffer.alloc(257))),
    /257 bytes is over the 256-byte limit/,
  );
  t.throws(() => s.serverPacket(enc(P.VERSION, 4)), /SFTP version 4, not 3/);
  t.doesNotThrow(() => s.serverPacket(enc(P.EXTENDED_REPLY, 99, Buffer.from([1, 2, 3]))), "an unknown reply");
  t.doesNotThrow(() => s.serverPacket(enc(150, 1, 2, 3)), "a type the server should not send");
  t.doesNotThrow(() => s.serverPacket(enc(P.NAME, 22)), "NAME is not looked into");
});

t.test("limits: outstanding requests, handles, reused ids", async (t) => {
  const s = new SftpSession();
  bind(s, 0, "/f", H1);
  for (let id = 1; id <= 4096; id++) s.clientPacket(enc(P.READ, id, H1, 0n, 10));
  t.throws(
    () => s.clientPacket(enc(P.READ, 4097, H1, 0n, 10)),
    /too many requests awaiting replies \(limit 4096\)/,
  );
  s.serverPacket(enc(P.STATUS, 1, S.EOF, "", ""));
  t.doesNotThrow(() => s.clientPacket(enc(P.READ, 4097, H1, 0n, 10)), "a reply frees a place");
  t.doesNotThrow(() => s.clientPacket(enc(P.STAT, 4098, "/x")), "requests without state are not limited");
  t.throws(
    () => s.clientPacket(enc(P.WRITE, 4097, H1, 0n, Buffer.alloc(1))),
    /request id 4097 is already awaiting a reply/,
  );

  const h = new SftpSession({ maxHandles: 2 });
  bind(h, 1, "/a", H1);
  h.clientPacket(enc(P.OPENDIR, 2, "/d"));
  t.throws(() => h.clientPacket(enc(P.OPEN, 3, "/c", FXF.READ, 0)), /too many open handles \(limit 2\)/);
  h.serverPacket(enc(P.STATUS, 2, S.NO_SUCH_FILE, "", ""));
  t.doesNotThrow(() => h.clientPacket(enc(P.OPEN, 4, "/c", FXF.READ, 0)), "a failed OPENDIR frees its place");
  h.serverPacket(enc(P.HANDLE, 4, H2));
  t.throws(() => h.clientPacket(enc(P.OPEN, 5, "/e", FXF.READ, 0)), /too many open handles/);
  h.clientPacket(enc(P.CLOSE, 6, H1));
  h.serverPacket(enc(P.STATUS, 6, S.OK, "", ""));
  t.doesNotThrow(() => h.clientPacket(enc(P.OPEN, 7, "/e", FXF.READ, 0)), "a closed handle frees its place");
});

/** The gateway's view of a channel to a real sftp-server: each request through framer + tracker, then on. */
class Channel {
  readonly toServer = new SftpFramer();
  readonly fromServer = new SftpFramer();
  readonly session = new SftpSession();
  private readonly waiting = new Map<number, (reply: Buffer) => void>();
  private version: ((reply: Buffer) => void) | null = null;
  private nextId = 1;
  failed: Error | null = null;

  constructor(private readonly child: ChildProcessWithoutNullStreams) {
    child.stdout.on("data", (chunk: Buffer) => {
      try {
        for (const p of this.fromServer.push(chunk)) {
          this.session.serverPacket(p);
          if (p.readUInt8(4) === P.VERSION) this.version?.(p);
          else {
            const id = p.readUInt32BE(5);
            this.waiting.get(id)?.(p);
            this.waiting.delete(id);
          }
        }
      } catch (err) {
        this.failed = err as Error;
        child.kill();
      }
    });
  }

  init(): Promise<Buffer> {
    const reply = new Promise<Buffer>((resolve) => {
      this.version = resolve;
    });
    this.forward(enc(P.INIT, 3));
    return reply;
  }

  /** Parses the request as the gateway does and forwards it; `op` is what policy would have seen. */
  request(
    type: number,
    ...fields: Array<number | bigint | string | Buffer>
  ): { op: SftpOperation; reply: Promise<Buffer> } {
    const id = this.nextId++;
    const reply = new Promise<Buffer>((resolve) => this.waiting.set(id, resolve));
    const op = this.forward(enc(type, id, ...fields));
    if (op === null) throw new Error("not a request");
    return { op, reply };
  }

  /** What the gateway does with a refused request: answer it itself, never forward. */
  refuse(
    type: number,
    ...fields: Array<number | bigint | string | Buffer>
  ): { op: SftpOperation; reply: Buffer } {
    const id = this.nextId++;
    const [packet] = this.toServer.push(enc(type, id, ...fields));
    const op = this.session.clientPacket(packet as Buffer) as SftpOperation;
    this.session.refused(id);
    return { op, reply: this.session.refusal(id, "denied") };
  }

  private forward(packet: Buffer): SftpOperation | null {
    // Cut each request in two, as the channel might.
    const cut = Math.floor(packet.length / 3);
    const parts = [
      ...this.toServer.push(packet.subarray(0, cut)),
      ...this.toServer.push(packet.subarray(cut)),
    ];
    let op: SftpOperation | null = null;
    for (const p of parts) {
      op = this.session.clientPacket(p);
      this.child.stdin.write(p);
    }
    return op;
  }
}

function status(reply: Buffer): number {
  return reply.readUInt8(4) === P.STATUS ? reply.readUInt32BE(9) : -1;
}

const SFTP_SERVER = "/usr/lib/openssh/sftp-server";
const noServer = existsSync(SFTP_SERVER) ? false : `no ${SFTP_SERVER} here`;

t.test("a real sftp-server, driven through the framer and tracker", { skip: noServer }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "pamgate-sftp-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const child = spawn(SFTP_SERVER, ["-e", "-l", "FATAL"], { cwd: dir, stdio: ["pipe", "pipe", "pipe"] });
  t.teardown(() => {
    child.kill();
  });
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const ch = new Channel(child);

  const version = await ch.init();
  t.equal(version.readUInt32BE(5), 3, "VERSION 3");

  const file = join(dir, "upload.bin");
  const content = randomBytes(3 * 32768 + 1234);
  const open = ch.request(P.OPEN, file, FXF.WRITE | FXF.CREAT | FXF.TRUNC, ATTR.PERMISSIONS, 0o600);
  t.match(open.op, { op: "open", path: file, direction: "upload", mutating: true });
  const handle = await open.reply;
  t.equal(handle.readUInt8(4), P.HANDLE);
  const h = handle.subarray(13, 13 + handle.readUInt32BE(9));

  // Pipelined, as sftp does.
  const writes = [];
  for (let off = 0; off < content.length; off += 32768) {
    const w = ch.request(P.WRITE, h, BigInt(off), content.subarray(off, off + 32768));
    t.equal(w.op.path, file);
    writes.push(w.reply);
  }
  t.strictSame((await Promise.all(writes)).map(status), [0, 0, 0, 0], "every WRITE succeeded");
  const bogus = ch.refuse(P.WRITE, Buffer.from("nope"), 0n, Buffer.alloc(10));
  t.equal(bogus.op.path, "", "a made-up handle is unknown");
  t.equal(status(bogus.reply), S.PERMISSION_DENIED);
  t.equal(status(await ch.request(P.CLOSE, h).reply), S.OK);
  t.ok((await readFile(file)).equals(content), "the file on disk is what was written");

  const ropen = ch.request(P.OPEN, file, FXF.READ, 0);
  t.match(ropen.op, { op: "open", direction: "download", mutating: false, flags: ["read"] });
  const rh = (await ropen.reply).subarray(13);
  const reads = [];
  for (let off = 0; off < content.length + 32768; off += 32768)
    reads.push(ch.request(P.READ, rh, BigInt(off), 32768));
  t.strictSame(
    reads.map((r) => r.op),
    reads.map((r) => ({
      id: r.op.id,
      op: "read",
      path: file,
      direction: "download",
      mutating: false,
      bytes: 32768,
    })),
  );
  const replies = await Promise.all(reads.map((r) => r.reply));
  const got = Buffer.concat(replies.filter((r) => r.readUInt8(4) === P.DATA).map((r) => r.subarray(13)));
  t.ok(got.equals(content), "read back what was written");
  t.equal(status(replies[replies.length - 1] as Buffer), S.EOF);
  t.equal(status(await ch.request(P.CLOSE, rh).reply), S.OK);
  t.equal(ch.refuse(P.READ, rh, 0n, 10).op.path, "", "the handle is forgotten after CLOSE");

  const sub = join(dir, "sub");
  const mk = ch.request(P.MKDIR, sub, ATTR.PERMISSIONS, 0o755);
  t.match(mk.op, { op: "mkdir", path: sub, mutating: true });
  t.equal(status(await mk.reply), S.OK);
  const moved = join(sub, "moved.bin");
  const mv = ch.request(P.RENAME, file, moved);
  t.match(mv.op, { op: "rename", path: file, target: moved, direction: "upload" });
  t.equal(status(await mv.reply), S.OK);
  t.ok(existsSync(moved) && !existsSync(file), "renamed on disk");

  const od = ch.request(P.OPENDIR, sub);
  const dh = (await od.reply).subarray(13);
  const rd = ch.request(P.READDIR, dh);
  t.equal(rd.op.path, sub);
  const names = await rd.reply;
  t.equal(names.readUInt8(4), P.NAME);
  t.ok(names.includes(Buffer.from("moved.bin")));
  t.equal(status(await ch.request(P.READDIR, dh).reply), S.EOF);
  t.equal(status(await ch.request(P.CLOSE, dh).reply), S.OK);

  const limits = ch.request(P.EXTENDED, "limits@openssh.com");
  t.equal((await limits.reply).readUInt8(4), P.EXTENDED_REPLY);
  const unknown = ch.request(P.EXTENDED, "frobnicate@example.com", "/x");
  t.match(unknown.op, { op: "extended", mutating: true, path: "" });
  t.equal(status(await unknown.reply), S.OP_UNSUPPORTED, "(forwarded here only to see the server's answer)");
  t.equal((await ch.request(P.STAT, moved).reply).readUInt8(4), P.ATTRS);

  const rm1 = ch.request(P.REMOVE, moved);
  t.match(rm1.op, { op: "remove", path: moved, mutating: true });
  t.equal(status(await rm1.reply), S.OK);
  t.notOk(existsSync(moved), "removed on disk");
  t.equal(status(await ch.request(P.REMOVE, moved).reply), S.NO_SUCH_FILE);

  t.strictSame(Object.fromEntries(ch.session.bytesByPath()), {
    [file]: { read: content.length, written: content.length },
  });
  t.equal(ch.failed, null);
  t.equal(ch.toServer.pending + ch.fromServer.pending, 0);
  t.equal(stderr, "");
});

t.test("a real sftp-server: relative paths and a short read", { skip: noServer }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "pamgate-sftp-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await mkdir(join(dir, "d"));
  await writeFile(join(dir, "d", "x"), "12345");
  const child = spawn(SFTP_SERVER, [], { cwd: dir, stdio: ["pipe", "pipe", "pipe"] });
  t.teardown(() => {
    child.kill();
  });
  const ch = new Channel(child);
  await ch.init();
  const open = ch.request(P.OPEN, "d/x", FXF.READ, 0);
  t.equal(open.op.path, "d/x", "relative paths are reported as sent");
  const h = (await open.reply).subarray(13);
  const r = ch.request(P.READ, h, 0n, 100);
  t.equal((await r.reply).readUInt32BE(9), 5);
  await ch.request(P.CLOSE, h).reply;
  t.strictSame(Object.fromEntries(ch.session.bytesByPath()), { "d/x": { read: 5, written: 0 } });
});
