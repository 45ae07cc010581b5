// A real PostgreSQL server for tests: Debian's server binaries, `initdb` into a fresh temp dir, a random
// loopback port, password authentication (SCRAM-SHA-256 by default) — never a preexisting service.
//
// PostgreSQL refuses to run as root, and CI runs as root, so when we are root the server processes run as the
// `postgres` system user (created by Debian's package), spawned directly with its uid so that signals reach
// the postmaster itself.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface PostgresServer {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
  /** postgres://user:password@127.0.0.1:port/database */
  url: string;
  dataDir: string;
  /** The server binaries' folder (pgbench, psql-compatible tools live beside it). */
  bin: string;
  /** The postmaster's process id (benchmarks pin it, and so every backend it forks, to a CPU). */
  pid: number;
  /** Stops the server but keeps its data (chaos tests: the database goes away). */
  down(): Promise<void>;
  /** Starts it again on the same data and port after down(). */
  up(): Promise<void>;
  stop(): Promise<void>;
}

export interface PostgresOptions {
  auth?: "scram-sha-256" | "md5" | "trust";
  user?: string;
  password?: string;
  database?: string;
  /** Extra postgresql.conf lines. */
  config?: string[];
}

/** The newest installed server's bin folder, or null when no server is installed. */
export function postgresBin(): string | null {
  const root = "/usr/lib/postgresql";
  if (!existsSync(root)) return null;
  const versions = readdirSync(root)
    .filter((v) => existsSync(join(root, v, "bin", "initdb")))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] ? join(root, versions[0], "bin") : null;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
    srv.on("error", reject);
  });
}

const isRoot = process.getuid?.() === 0;

function pgUserIds(): { uid: number; gid: number } {
  const uid = Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim());
  const gid = Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim());
  return { uid, gid };
}

/** Spawn options that run a server binary as the postgres user when we are root. */
function serverUser(): { uid?: number; gid?: number } {
  return isRoot ? pgUserIds() : {};
}

export async function startPostgres(options: PostgresOptions = {}): Promise<PostgresServer> {
  const bin = postgresBin();
  if (!bin)
    throw new Error("PostgreSQL server binaries not found under /usr/lib/postgresql: run scripts/bootstrap");
  const auth = options.auth ?? "scram-sha-256";
  const user = options.user ?? "pamgate_test";
  const password = options.password ?? "test-password-not-secret";
  const database = options.database ?? "app";
  const root = mkdtempSync(join(tmpdir(), "pamgate-pg-"));
  const dataDir = join(root, "data");
  const pwfile = join(root, "pwfile");
  writeFileSync(pwfile, `${password}\n`);
  if (isRoot) {
    const { uid, gid } = pgUserIds();
    chownSync(root, uid, gid);
    chownSync(pwfile, uid, gid);
  }
  chmodSync(root, 0o700);

  execFileSync(
    join(bin, "initdb"),
    [
      "-D",
      dataDir,
      "-U",
      user,
      "--pwfile",
      pwfile,
      "--auth",
      auth,
      "--encoding",
      "UTF8",
      "--locale",
      "C",
      "--no-sync",
    ],
    { stdio: ["ignore", "ignore", "pipe"], ...serverUser() },
  );
  if (auth === "md5") {
    // initdb hashes the bootstrap password with the default (SCRAM); md5 auth needs an md5 hash.
    writeFileSync(join(dataDir, "postgresql.auto.conf"), "password_encryption = 'md5'\n", { flag: "a" });
  }

  const port = await freePort();
  const conf = [
    `port = ${port}`,
    "listen_addresses = '127.0.0.1'",
    `unix_socket_directories = '${root}'`,
    "fsync = off",
    "synchronous_commit = off",
    "full_page_writes = off",
    "max_connections = 200",
    "shared_buffers = 32MB",
    ...(options.config ?? []),
  ];
  writeFileSync(join(dataDir, "postgresql.conf"), `${conf.join("\n")}\n`, { flag: "a" });

  let proc: ChildProcess;
  let log = "";
  let exited: Promise<void>;
  const launch = () => {
    proc = spawn(join(bin, "postgres"), ["-D", dataDir], {
      stdio: ["ignore", "ignore", "pipe"],
      ...serverUser(),
    });
    proc.stderr?.on("data", (c: Buffer) => {
      log = (log + c.toString()).slice(-8000);
    });
    exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
  };
  const halt = async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill("SIGINT"); // fast shutdown
      const timer = setTimeout(() => proc.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(timer);
    }
  };
  const ready = async () => {
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`postgres exited during start-up:\n${log}`);
      try {
        execFileSync(join(bin, "pg_isready"), ["-h", "127.0.0.1", "-p", String(port), "-q"]);
        return;
      } catch {
        if (Date.now() > deadline) {
          await server.stop();
          throw new Error(`postgres did not become ready within 30 s:\n${log}`);
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  };
  launch();

  const server: PostgresServer = {
    host: "127.0.0.1",
    port,
    get pid() {
      return proc.pid as number;
    },
    user,
    password,
    database,
    url: `postgres://${user}:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}`,
    dataDir,
    bin,
    down: halt,
    async up() {
      launch();
      await ready();
    },
    async stop() {
      await halt();
      rmSync(root, { recursive: true, force: true });
    },
  };

  // Wait until it accepts connections, then create the test database.
  await ready();
  const psqlEnv = { ...process.env, PGPASSWORD: password };
  execFileSync(
    "psql",
    [
      "-h",
      "127.0.0.1",
      "-p",
      String(port),
      "-U",
      user,
      "-d",
      "postgres",
      "-qc",
      `CREATE DATABASE ${database}`,
    ],
    { env: psqlEnv, stdio: ["ignore", "ignore", "pipe"] },
  );
  return server;
}
