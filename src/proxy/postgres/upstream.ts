// Connecting to the real database with credentials only pamgate holds: TCP (optionally TLS), StartupMessage,
// then SCRAM-SHA-256, md5 or cleartext password authentication as the server asks. The agent's token never
// reaches the database and the database password never reaches the agent.
import { type Socket, connect as tcpConnect } from "node:net";
import { type TLSSocket, connect as tlsConnect } from "node:tls";

// pg-protocol is CommonJS (its ESM wrapper re-imports it, which loops with pg's require under some loaders);
// CommonJS export detection).
const { serialize } = protocol;
const { Parser } = parserModule;

// node-postgres's SCRAM client (its public package ships it under lib/): no need for a second implementation.
import sasl from "pg/lib/crypto/sasl";
import pgCrypto from "pg/lib/crypto/utils";
import protocol from "pg-protocol/dist/index";
import type { BackendMessage } from "pg-protocol/dist/messages";
import parserModule from "pg-protocol/dist/parser";

export interface UpstreamTarget {
  host: string;
  port: number;
  database: string;
  user: string;
  password: string;
  /** "disable" (default), "require" (TLS, no certificate check) or "verify-full". */
  sslmode?: "disable" | "require" | "verify-full";
  connectTimeoutMs?: number;
  /**
   * The search_path every session is pinned to (see pinnedSearchPath): exactly one schema, a literal name
   * (`$user` has no special meaning). Default `["public"]`. The analysis reports unqualified names in it.
   */
  searchPath?: readonly string[];
}

export interface UpstreamConnection {
  socket: Socket | TLSSocket;
  parameters: Map<string, string>;
  backendKey: { pid: number; secret: number } | null;
}

export class UpstreamError extends Error {
  override name = "UpstreamError";
  constructor(
    message: string,
    readonly sqlstate = "08006",
  ) {
    super(message);
  }
}

/**
 * Startup parameters a client may pass through to the database; anything else is dropped — `options` (it can set
 * any setting, `-c role=…` included) and `search_path` (see pinnedSearchPath) among them.
 */
export const FORWARDED_STARTUP_PARAMS = new Set([
  "application_name",
  "client_encoding",
  "DateStyle",
  "TimeZone",
  "IntervalStyle",
  "extra_float_digits",
]);

/** The search_path of a target that configures none. */
export const DEFAULT_SEARCH_PATH: readonly string[] = ["public"];

/**
 * Why a configured search_path cannot be pinned, or null. Exactly one schema: with several, which one an
 * unqualified name resolves in depends on which of them has a table of that name — the catalog, not the text —
 * so the analysis could not tell policy what the server reads. A schema name is at most 63 bytes (PostgreSQL
 * truncates longer ones, and policy would see the untruncated name), has no NUL, and is not a temporary schema.
 */
export function searchPathProblem(schemas: readonly string[]): string | null {
  if (schemas.length !== 1) {
    return `search_path must name exactly one schema (got ${schemas.length}); schema-qualify names in other schemas`;
  }
  const schema = schemas[0] as string;
  if (schema.length === 0) return "search_path: a schema name cannot be empty";
  if (schema.includes("\0")) return "search_path: a schema name cannot contain a NUL character";
  if (Buffer.byteLength(schema, "utf8") > 63)
    return `search_path: schema name ${schema} is longer than 63 bytes`;
  if (schema.toLowerCase().startsWith("pg_temp")) return "search_path: cannot be the temporary schema";
  return null;
}

/**
 * The schema a target's sessions are pinned to — the one unqualified relation names resolve in, which the
 * analysis must be given (analyzeSql(sql, schema)). Throws when the configured search_path cannot be pinned.
 */
export function pinnedSchema(target: Pick<UpstreamTarget, "searchPath">): string {
  const schemas = target.searchPath ?? DEFAULT_SEARCH_PATH;
  const problem = searchPathProblem(schemas);
  if (problem) throw new UpstreamError(problem, "08004");
  return schemas[0] as string;
}

/**
 * The startup `options` that pin an upstream session's search_path. The analysis reports an unqualified table
 * name in the pinned schema, so the server must resolve it there too: a client's `search_path=secret` would make
 * `users` mean `secret.users` while policy saw `public.users`. A startup option is the session's own setting: it
 * overrides a role's, a database's and the server's default (`ALTER ROLE … SET search_path`), and RESET,
 * RESET ALL, DISCARD ALL and SET … TO DEFAULT return to it; statements that would change it are refused by the
 * proxy (pg.search_path_change, see analysis/utility.ts).
 *
 * The schema is written as an identifier the server reads back as exactly that name: as is when it is lower case
 * letters, digits, `_` and `$` (not first), else quoted (so that `$user`, capitals or a comma are only a name).
 * The options string escapes backslashes and white space with a backslash, as the server splits it.
 */
export function pinnedSearchPath(target: Pick<UpstreamTarget, "searchPath">): string {
  const schema = pinnedSchema(target);
  const ident = /^[a-z_][a-z0-9_$]*$/.test(schema) ? schema : `"${schema.replaceAll('"', '""')}"`;
  return `-c search_path=${ident.replace(/[\\\s]/g, (c) => `\\${c}`)}`;
}

function openSocket(target: UpstreamTarget): Promise<Socket | TLSSocket> {
  return new Promise((resolve, reject) => {
    const timeout = target.connectTimeoutMs ?? 10_000;
    const socket = tcpConnect({ host: target.host, port: target.port });
    socket.setNoDelay(true);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new UpstreamError(`database ${target.host}:${target.port} did not answer within ${timeout} ms`));
    }, timeout);
    socket.once("error", (err) => {
      clearTimeout(timer);
      reject(new UpstreamError(`cannot reach database ${target.host}:${target.port}: ${err.message}`));
    });
    socket.once("connect", () => {
      if (!target.sslmode || target.sslmode === "disable") {
        clearTimeout(timer);
        resolve(socket);
        return;
      }
      socket.write(serialize.requestSsl());
      socket.once("data", (answer: Buffer) => {
        clearTimeout(timer);
        if (answer[0] !== 0x53) {
          socket.destroy();
          reject(new UpstreamError(`database ${target.host}:${target.port} refused TLS`));
          return;
        }
        const tls = tlsConnect({
          socket,
          servername: target.host,
          rejectUnauthorized: target.sslmode === "verify-full",
        });
        tls.once("secureConnect", () => resolve(tls));
        tls.once("error", (err) => reject(new UpstreamError(`TLS to database failed: ${err.message}`)));
      });
    });
  });
}

/**
 * Opens an authenticated session on the upstream server and waits for its first ReadyForQuery. Errors name
 * the server and the failure but never the password.
 */
export async function connectUpstream(
  target: UpstreamTarget,
  clientParams: Record<string, string> = {},
): Promise<UpstreamConnection> {
  const options = pinnedSearchPath(target);
  const socket = await openSocket(target);
  const params: Record<string, string> = { user: target.user, database: target.database };
  for (const [k, v] of Object.entries(clientParams)) if (FORWARDED_STARTUP_PARAMS.has(k)) params[k] = v;
  params.options = options;
  const parameters = new Map<string, string>();
  let backendKey: UpstreamConnection["backendKey"] = null;
  const where = `${target.user}@${target.host}:${target.port}/${target.database}`;

  return new Promise((resolve, reject) => {
    const parser = new Parser();
    let scram: ReturnType<typeof sasl.startSession> | null = null;
    const fail = (err: Error) => {
      socket.removeListener("data", onData);
      socket.destroy();
      reject(
        err instanceof UpstreamError
          ? err
          : new UpstreamError(`authentication to ${where} failed: ${err.message}`),
      );
    };
    const onMessage = async (msg: BackendMessage & Record<string, unknown>) => {
      switch (msg.name) {
        case "authenticationCleartextPassword":
          socket.write(serialize.password(target.password));
          break;
        case "authenticationMD5Password": {
          const hash = await pgCrypto.postgresMd5PasswordHash(
            target.user,
            target.password,
            msg.salt as Buffer,
          );
          socket.write(serialize.password(hash));
          break;
        }
        case "authenticationSASL":
          scram = sasl.startSession(msg.mechanisms as string[]);
          socket.write(serialize.sendSASLInitialResponseMessage(scram.mechanism, scram.response));
          break;
        case "authenticationSASLContinue":
          await sasl.continueSession(scram, target.password, msg.data as string);
          socket.write(serialize.sendSCRAMClientFinalMessage(scram?.response ?? ""));
          break;
        case "authenticationSASLFinal":
          sasl.finalizeSession(scram, msg.data as string);
          break;
        case "authenticationOk":
          break;
        case "parameterStatus":
          parameters.set(msg.parameterName as string, msg.parameterValue as string);
          break;
        case "backendKeyData":
          backendKey = { pid: msg.processID as number, secret: msg.secretKey as number };
          break;
        case "readyForQuery":
          socket.removeListener("data", onData);
          socket.removeListener("error", onError);
          socket.removeListener("close", onClose);
          resolve({ socket, parameters, backendKey });
          break;
        case "error":
          fail(
            new UpstreamError(
              `database ${where} refused the gateway's connection: ${msg.message as string}`,
              (msg.code as string) ?? "08006",
            ),
          );
          break;
        default:
          break;
      }
    };
    // Messages are handled strictly in order even though SCRAM steps are async.
    let chain = Promise.resolve();
    const onData = (chunk: Buffer) => {
      parser.parse(chunk, (msg) => {
        chain = chain.then(() => onMessage(msg as BackendMessage & Record<string, unknown>)).catch(fail);
      });
    };
    const onError = (err: Error) => fail(err);
    const onClose = () => fail(new UpstreamError(`database ${where} closed the connection during start-up`));
    socket.on("data", onData);
    socket.once("error", onError);
    socket.once("close", onClose);
    socket.write(serialize.startup(params));
  });
}

/** Sends a CancelRequest for `key` on a fresh connection, as the protocol requires. */
export function cancelUpstream(target: UpstreamTarget, key: { pid: number; secret: number }): Promise<void> {
  return new Promise((resolve) => {
    const socket = tcpConnect({ host: target.host, port: target.port }, () => {
      socket.end(serialize.cancel(key.pid, key.secret));
    });
    socket.on("error", () => resolve());
    socket.on("close", () => resolve());
  });
}
