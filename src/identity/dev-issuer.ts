// ┌──────────────────────────────────────────────────────────────────────────────────────────────────────────┐
// │ DEVELOPMENT ONLY. A throwaway OpenID provider for the quick start and the tests: anyone who can reach it  │
// │ can get a token for any configured user without a password. It refuses to bind anything but loopback.   │
// └──────────────────────────────────────────────────────────────────────────────────────────────────────────┘
//
// A real `oidc-provider` (v9) in-process on 127.0.0.1, random port: discovery, JWKS and the token endpoint are
// the library's own, and every token is signed by its keystore as an RFC 9068 JWT access token (resource
// indicators, accessTokenFormat "jwt", audience "pamgate" by default). Three ways to get one, all through the
// token endpoint with client authentication (client_secret_basic):
//
//   person     grant_type=urn:pamgate:params:oauth:grant-type:dev-login, username=alice
//              as the client "pamgate-cli" → sub=alice, email, groups (in the configured groups claim)
//   machine    grant_type=client_credentials as e.g. "ci-bot" → sub=ci-bot, client_id=ci-bot
//   delegation grant_type=urn:ietf:params:oauth:grant-type:token-exchange (RFC 8693) as the actor client,
//              subject_token=<a token from this issuer> → sub and groups of the subject token,
//              act={sub: <actor client>, client_id: <actor client>, act: <the subject token's act, if any>},
//              client_id=<actor client>, expiring no later than the subject token.
//
// And a browser login for the web console: the authorization code flow with PKCE as the public client
// "pamgate-console" (a native client, so any loopback port of its redirect URI is accepted, RFC 8252 §7.3). The
// login page lists the configured users and asks for no password; consent is implied for that client.
//
// oidc-provider is a devDependency: it is imported lazily, so production code that never starts a dev issuer
// does not need it installed.
import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import {
  calculateJwkThumbprint,
  createLocalJWKSet,
  exportJWK,
  generateKeyPair,
  type JWK,
  type JWTPayload,
  jwtVerify,
} from "jose";
import type {
  AccessToken,
  OidcClient,
  OidcContext,
  Provider,
  ResourceServerInfo,
  TokenLike,
} from "oidc-provider";
import * as oc from "openid-client";
import { type Logger, silentLogger } from "../util/log.js";
import { isLoopback } from "../util/net.js";
import type { IssuerConfig } from "./config.js";

export const DEV_LOGIN_GRANT = "urn:pamgate:params:oauth:grant-type:dev-login";
export const TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange";
export const ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token";
const JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt";

export interface DevUser {
  email?: string | null;
  groups?: string[];
}

export interface DevIssuerOptions {
  /** Loopback address to bind (default 127.0.0.1); anything else is refused. */
  host?: string;
  /** Port (default 0: a free one). */
  port?: number;
  /** The audience of the tokens (default "pamgate"). */
  audience?: string;
  /** Further audiences a token may be requested for (e.g. to show a wrong-audience token being refused). */
  extraAudiences?: string[];
  /** The people who can get a token, by username (= sub). */
  users: Record<string, DevUser>;
  /** Machine clients (client credentials and token exchange), default ["ci-bot"]. */
  clients?: string[];
  /** The client people log in through (default "pamgate-cli"). */
  personClient?: string;
  /**
   * The web console's public client (authorization code + PKCE, default "pamgate-console"); its redirect URI is
   * http://127.0.0.1:<any port>/console/callback (or localhost, [::1]).
   */
  consoleClient?: string;
  /** Where the groups go: a claim name or a dotted path such as "realm_access.roles" (default "groups"). */
  groupsClaim?: string;
  /** Access token lifetime (default 600 s). */
  accessTokenTtlSeconds?: number;
  /**
   * Private signing keys as JWKs, the first one signs (default: one fresh RSA key). Tests pass their own so
   * they can also forge tokens with them.
   */
  keys?: JWK[];
  log?: Logger;
}

export interface DevTokenOptions {
  /** The audience to request (default: the issuer's audience). */
  audience?: string;
}

export interface DevIssuer {
  /** The issuer identifier, e.g. http://127.0.0.1:41234 */
  readonly issuer: string;
  readonly audience: string;
  readonly port: number;
  readonly tokenEndpoint: string;
  readonly jwksUri: string;
  /** The client people log in through. */
  readonly personClient: string;
  /** The web console's public client (authorization code flow with PKCE). */
  readonly consoleClient: string;
  readonly groupsClaim: string;
  /** The client secret of a configured client (random per start), for curl. */
  clientSecret(clientId: string): string;
  /** A token for a configured user, through the dev-login grant. */
  tokenFor(user: string, options?: DevTokenOptions): Promise<string>;
  /** A client-credentials token for a machine client. */
  machineToken(clientId: string, options?: DevTokenOptions): Promise<string>;
  /** RFC 8693 token exchange: the machine client `actorClientId` acting for the subject of `subjectToken`. */
  delegatedToken(subjectToken: string, actorClientId: string, options?: DevTokenOptions): Promise<string>;
  /** The public JWKS as served. */
  jwks(): { keys: JWK[] };
  /**
   * Key rotation: `key` (default: a fresh RSA key) signs from now on; the previous keys stay published.
   * Resolves with the new key's kid.
   */
  rotateKeys(key?: JWK): Promise<string>;
  /** How many requests the server has answered for a path (e.g. "/jwks"). */
  requests(path: string): number;
  /** The IssuerConfig that trusts this issuer (http on loopback allowed). */
  issuerConfig(): IssuerConfig;
  stop(): Promise<void>;
}

type OidcModule = typeof import("oidc-provider");
let oidcModule: Promise<OidcModule> | null = null;

/**
 * Imports oidc-provider once. On Node 20 it prints "Unsupported runtime" (it is tested on 22+) straight to the
 * console at import; that one line goes to our logger instead.
 */
function loadOidcProvider(log: Logger): Promise<OidcModule> {
  if (!oidcModule) {
    const original = console.warn;
    console.warn = (...args: unknown[]) => {
      const text = args.map(String).join(" ");
      if (text.includes("oidc-provider WARNING: Unsupported runtime")) {
        log.info({ node: process.version }, `dev issuer: ${text}`);
      } else {
        original(...args);
      }
    };
    oidcModule = import("oidc-provider").finally(() => {
      console.warn = original;
    });
  }
  return oidcModule;
}

function algFor(jwk: JWK): string {
  if (jwk.alg) return jwk.alg;
  if (jwk.kty === "RSA") return "RS256";
  if (jwk.kty === "EC" && jwk.crv === "P-256") return "ES256";
  if (jwk.kty === "EC" && jwk.crv === "P-384") return "ES384";
  if (jwk.kty === "OKP") return "EdDSA";
  throw new Error(`dev issuer: unsupported signing key type ${jwk.kty}/${jwk.crv ?? ""}`);
}

/** A fresh private signing key as a JWK with kid (its thumbprint), alg and use. */
export async function generateSigningKey(alg = "RS256"): Promise<JWK> {
  const { privateKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = await exportJWK(privateKey);
  jwk.kid = await calculateJwkThumbprint(jwk);
  jwk.alg = alg;
  jwk.use = "sig";
  return jwk;
}

/** The public half of a private JWK. */
export function publicJwk(jwk: JWK): JWK {
  const { d, p, q, dp, dq, qi, oth, k, ...pub } = jwk as JWK & { oth?: unknown };
  void [d, p, q, dp, dq, qi, oth, k];
  return pub;
}

function setAtPath(target: Record<string, unknown>, path: string, value: unknown): void {
  const parts = path.split(".");
  let node = target;
  for (const part of parts.slice(0, -1)) {
    const next = node[part];
    if (typeof next !== "object" || next === null) node[part] = {};
    node = node[part] as Record<string, unknown>;
  }
  node[parts[parts.length - 1] as string] = value;
}

/**
 * Storage for oidc-provider's stateful models: the browser login's sessions, interactions, grants and codes
 * (JWT access tokens are not stored). It exists so oidc-provider does not warn about its own in-memory adapter
 * on every start. Entries expire; nothing is pruned, which is fine for a development issuer.
 */
class DevAdapter {
  private readonly store = new Map<string, { payload: Record<string, unknown>; expiresAt: number }>();
  constructor(private readonly model: string) {}
  private key(id: string) {
    return `${this.model}:${id}`;
  }
  async upsert(id: string, payload: Record<string, unknown>, expiresIn?: number) {
    this.store.set(this.key(id), { payload, expiresAt: Date.now() + (expiresIn ?? 3600) * 1000 });
  }
  async find(id: string) {
    const entry = this.store.get(this.key(id));
    if (!entry || entry.expiresAt < Date.now()) return undefined;
    return entry.payload;
  }
  /** Sessions are also found by their uid (the browser login's interactions refer to them by it). */
  async findByUid(uid: string) {
    for (const [key, entry] of this.store) {
      if (key.startsWith(`${this.model}:`) && entry.payload.uid === uid && entry.expiresAt >= Date.now())
        return entry.payload;
    }
    return undefined;
  }
  async findByUserCode() {
    return undefined;
  }
  async consume(id: string) {
    const entry = this.store.get(this.key(id));
    if (entry) entry.payload.consumed = Math.floor(Date.now() / 1000);
  }
  async destroy(id: string) {
    this.store.delete(this.key(id));
  }
  async revokeByGrantId() {}
}

const CONSOLE_REDIRECTS = [
  "http://127.0.0.1/console/callback",
  "http://localhost/console/callback",
  "http://[::1]/console/callback",
];

const escapeHtml = (text: string) => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/**
 * The login step of the authorization code flow: a page listing the development users (no password: this issuer
 * is for loopback development only), and its form's POST, which ends the interaction as that user.
 */
async function loginInteraction(
  provider: Provider,
  req: IncomingMessage,
  res: ServerResponse,
  users: Map<string, DevUser>,
  log: Logger,
): Promise<void> {
  const details = await provider.interactionDetails(req, res);
  if (details.prompt.name === "consent") {
    // The console is this issuer's own first-party client: its consent is implied (oidc-provider asks for it
    // on every sign-in of a native client).
    const accountId = details.session?.accountId;
    if (!accountId) throw new Error("consent without a signed-in user");
    const grant = new provider.Grant({ accountId, clientId: String(details.params.client_id) });
    grant.addOIDCScope(String(details.params.scope ?? "openid"));
    if (typeof details.params.resource === "string") grant.addResourceScope(details.params.resource, "");
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
    return;
  }
  if (req.method === "POST") {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req) {
      size += (chunk as Buffer).length;
      if (size > 4096) throw new Error("login form too large");
      chunks.push(chunk as Buffer);
    }
    const username = new URLSearchParams(Buffer.concat(chunks).toString("utf8")).get("username") ?? "";
    if (!users.has(username)) throw new Error(`no development user ${JSON.stringify(username)}`);
    log.info({ sub: username, client_id: details.params.client_id }, "dev issuer: browser login");
    await provider.interactionFinished(
      req,
      res,
      { login: { accountId: username } },
      { mergeWithLastSubmission: false },
    );
    return;
  }
  const options = [...users.entries()]
    .map(
      ([name, u]) =>
        `<option value="${escapeHtml(name)}">${escapeHtml(name)}${u.groups?.length ? ` (${escapeHtml(u.groups.join(", "))})` : ""}</option>`,
    )
    .join("");
  res.writeHead(200, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" });
  res.end(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Sign in — pamgate development issuer</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: system-ui, sans-serif; max-width: 28rem; margin: 4rem auto; padding: 0 1rem">
<h1>Sign in</h1>
<p><strong>Development issuer:</strong> anyone who can reach it signs in as any user below, without a password.</p>
<form method="post" action="/interaction/${escapeHtml(details.uid)}">
<label for="username">User</label> <select id="username" name="username">${options}</select>
<button type="submit">Sign in</button>
</form></body></html>`);
}

/** Resource indicators (RFC 8707) must be absolute URIs; a bare audience like "pamgate" gets a URN. */
function indicatorFor(audience: string): string {
  return URL.parse(audience) ? audience : `urn:pamgate:audience:${audience}`;
}

function checkLoopback(host: string): string {
  if (!isLoopback(host))
    throw new Error(
      `the development issuer only binds loopback addresses (127.0.0.1, ::1); refusing ${JSON.stringify(host)}`,
    );
  return host === "localhost" ? "127.0.0.1" : host.replace(/^\[(.*)\]$/, "$1");
}

/** Starts the DEVELOPMENT ONLY issuer on loopback. */
export async function startDevIssuer(options: DevIssuerOptions): Promise<DevIssuer> {
  const log = options.log ?? silentLogger;
  const host = checkLoopback(options.host ?? "127.0.0.1");
  const audience = options.audience ?? "pamgate";
  const audiences = [audience, ...(options.extraAudiences ?? [])];
  const users = new Map(Object.entries(options.users ?? {}));
  const machineClients = options.clients ?? ["ci-bot"];
  const personClient = options.personClient ?? "pamgate-cli";
  const consoleClient = options.consoleClient ?? "pamgate-console";
  const groupsClaim = options.groupsClaim ?? "groups";
  const ttl = options.accessTokenTtlSeconds ?? 600;
  if (machineClients.includes(personClient))
    throw new Error(`dev issuer: ${personClient} is both the person client and a machine client`);

  const { Provider: ProviderClass, errors } = await loadOidcProvider(log);
  // oidc-provider's InvalidGrant hides its detail from the client; a development issuer should explain.
  const invalidGrant = (description: string) =>
    new errors.CustomOIDCProviderError("invalid_grant", description);
  let keys: JWK[] = options.keys?.length ? [...options.keys] : [await generateSigningKey()];
  for (const key of keys) if (!key.kid) key.kid = await calculateJwkThumbprint(key);

  const secrets = new Map<string, string>(
    [personClient, ...machineClients].map((id) => [id, randomBytes(24).toString("base64url")]),
  );
  /** Claims a grant handler wants on the token it is about to save (read by extraTokenClaims). */
  const pendingClaims = new WeakMap<object, Record<string, unknown>>();
  const requestCounts = new Map<string, number>();

  const server: Server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  if (!isLoopback(address.address)) {
    server.close();
    throw new Error(
      `the development issuer bound ${address.address}, which is not loopback; refusing to run`,
    );
  }
  const port = address.port;
  const issuer = `http://${address.family === "IPv6" ? `[${address.address}]` : address.address}:${port}`;

  const signingAlg = () => algFor(keys[0] as JWK);
  const resourceInfo = (aud: string): ResourceServerInfo => ({
    scope: "",
    audience: aud,
    accessTokenFormat: "jwt",
    accessTokenTTL: ttl,
    jwt: { sign: { alg: signingAlg() } },
  });

  const resourceServerFor = (provider: Provider, ctx: OidcContext) => {
    const requested = ctx.oidc.params?.resource;
    const indicator = typeof requested === "string" ? requested : indicatorFor(audience);
    const aud = audiences.find((a) => indicatorFor(a) === indicator);
    if (!aud) throw new errors.InvalidTarget(`unknown resource ${indicator}`);
    return new provider.ResourceServer(indicator, resourceInfo(aud));
  };

  const tokenResponse = (at: AccessToken, value: string, ctx: OidcContext, exchange: boolean) => {
    ctx.body = {
      access_token: value,
      token_type: "Bearer",
      expires_in: at.expiration,
      ...(exchange ? { issued_token_type: ACCESS_TOKEN_TYPE } : {}),
    };
  };

  const userClaims = (sub: string): Record<string, unknown> => {
    const user = users.get(sub);
    if (!user) return {};
    const claims: Record<string, unknown> = {};
    if (user.email) claims.email = user.email;
    setAtPath(claims, groupsClaim, [...(user.groups ?? [])]);
    return claims;
  };

  const buildProvider = (): Provider => {
    const alg = signingAlg();
    const provider: Provider = new ProviderClass(issuer, {
      adapter: DevAdapter,
      jwks: { keys },
      clients: [
        {
          client_id: personClient,
          client_secret: secrets.get(personClient),
          grant_types: [DEV_LOGIN_GRANT],
          response_types: [],
          redirect_uris: [],
        },
        ...machineClients.map((id) => ({
          client_id: id,
          client_secret: secrets.get(id),
          grant_types: ["client_credentials", TOKEN_EXCHANGE_GRANT],
          response_types: [],
          redirect_uris: [],
        })),
        {
          client_id: consoleClient,
          application_type: "native",
          token_endpoint_auth_method: "none",
          grant_types: ["authorization_code"],
          response_types: ["code"],
          redirect_uris: CONSOLE_REDIRECTS,
        },
      ],
      clientDefaults: { id_token_signed_response_alg: alg },
      cookies: { keys: [randomBytes(32).toString("base64url")] },
      interactions: {
        url: async (_ctx: unknown, interaction: { uid: string }) => `/interaction/${interaction.uid}`,
      },
      features: {
        devInteractions: { enabled: false },
        clientCredentials: { enabled: true },
        introspection: { enabled: false },
        revocation: { enabled: false },
        resourceIndicators: {
          enabled: true,
          defaultResource: async () => indicatorFor(audience),
          useGrantedResource: async () => true,
          getResourceServerInfo: async (_ctx: unknown, indicator: string) => {
            const aud = audiences.find((a) => indicatorFor(a) === indicator);
            if (!aud) throw new errors.InvalidTarget(`unknown resource ${indicator}`);
            return resourceInfo(aud);
          },
        },
      },
      ttl: {
        AccessToken: () => ttl,
        ClientCredentials: () => ttl,
        // The browser login's artifacts (oidc-provider prints a notice for each one left at its default).
        Interaction: 600,
        Session: 8 * 3600,
        Grant: 8 * 3600,
        AuthorizationCode: 60,
        IdToken: ttl,
      },
      extraTokenClaims: async (_ctx: unknown, token: TokenLike) => {
        const claims = token.kind === "AccessToken" && token.accountId ? userClaims(token.accountId) : {};
        return { ...claims, ...pendingClaims.get(token) };
      },
      findAccount: async (_ctx: unknown, sub: string) =>
        users.has(sub) ? { accountId: sub, claims: async () => ({ sub, ...userClaims(sub) }) } : undefined,
    });

    // A person: password-less, because this is a development issuer on loopback.
    provider.registerGrantType(
      DEV_LOGIN_GRANT,
      async (ctx) => {
        const client = ctx.oidc.client as OidcClient;
        const username = ctx.oidc.params?.username;
        if (typeof username !== "string" || username === "")
          throw new errors.InvalidRequest("missing required parameter 'username'");
        if (!users.has(username)) throw invalidGrant(`no development user ${JSON.stringify(username)}`);
        const at = new provider.AccessToken({ accountId: username, client, gty: "dev_login" });
        at.resourceServer = resourceServerFor(provider, ctx);
        const value = await at.save();
        log.info(
          { sub: username, client_id: client.clientId, jti: at.jti },
          "dev issuer: issued a person token",
        );
        tokenResponse(at, value, ctx, false);
      },
      ["username", "resource"],
    );

    // Delegation (RFC 8693): the authenticated client is the new actor.
    provider.registerGrantType(
      TOKEN_EXCHANGE_GRANT,
      async (ctx) => {
        const client = ctx.oidc.client as OidcClient;
        const params = ctx.oidc.params ?? {};
        const subjectToken = params.subject_token;
        const subjectTokenType = params.subject_token_type;
        if (typeof subjectToken !== "string" || subjectToken === "")
          throw new errors.InvalidRequest("missing required parameter 'subject_token'");
        if (subjectTokenType !== ACCESS_TOKEN_TYPE && subjectTokenType !== JWT_TOKEN_TYPE)
          throw new errors.InvalidRequest(`subject_token_type must be ${ACCESS_TOKEN_TYPE}`);
        if (
          params.requested_token_type !== undefined &&
          params.requested_token_type !== ACCESS_TOKEN_TYPE &&
          params.requested_token_type !== JWT_TOKEN_TYPE
        )
          throw new errors.InvalidRequest(`only ${ACCESS_TOKEN_TYPE} can be requested`);
        let subject: JWTPayload;
        try {
          ({ payload: subject } = await jwtVerify(
            subjectToken,
            createLocalJWKSet({ keys: keys.map(publicJwk) }),
            {
              issuer,
              requiredClaims: ["sub", "exp"],
            },
          ));
        } catch (err) {
          throw invalidGrant(
            `subject_token is not a valid token of this issuer: ${err instanceof Error ? err.message : String(err)}`,
          );
        }
        const act: Record<string, unknown> = { sub: client.clientId, client_id: client.clientId };
        if (subject.act !== undefined) act.act = subject.act;

        const at = new provider.AccessToken({
          accountId: subject.sub as string,
          client,
          gty: "token_exchange",
        });
        at.resourceServer = resourceServerFor(provider, ctx);
        // The delegated token never outlives the token it was exchanged for.
        const remaining = (subject.exp as number) - Math.floor(Date.now() / 1000);
        at.expiresIn = Math.max(1, Math.min(ttl, remaining));
        pendingClaims.set(at, { act });
        const value = await at.save();
        log.info(
          { sub: subject.sub, client_id: client.clientId, jti: at.jti, subject_jti: subject.jti },
          "dev issuer: issued a delegated token",
        );
        tokenResponse(at, value, ctx, true);
      },
      ["subject_token", "subject_token_type", "requested_token_type", "resource"],
    );

    provider.on("server_error", (_ctx, err) => {
      log.error({ err: err instanceof Error ? err.message : String(err) }, "dev issuer: server error");
    });
    return provider;
  };

  let provider = buildProvider();
  let handler = provider.callback();
  server.on("request", (req: IncomingMessage, res: ServerResponse) => {
    const path = new URL(req.url ?? "/", issuer).pathname;
    requestCounts.set(path, (requestCounts.get(path) ?? 0) + 1);
    if (path.startsWith("/interaction/")) {
      loginInteraction(provider, req, res, users, log).catch((err) => {
        log.warn({ err: (err as Error).message }, "dev issuer: login page failed");
        if (!res.headersSent) res.writeHead(400, { "content-type": "text/plain; charset=utf-8" });
        res.end(`dev issuer: ${(err as Error).message}\n`);
      });
      return;
    }
    handler(req, res);
  });

  log.warn(
    { issuer, audience, users: [...users.keys()], clients: [personClient, ...machineClients] },
    "DEVELOPMENT ONLY identity issuer started on loopback: it hands out tokens without passwords; never use it in production",
  );

  // openid-client as the dev issuer's own client: the token requests go through the real token endpoint.
  let serverMetadata: oc.ServerMetadata | null = null;
  const clientConfigs = new Map<string, oc.Configuration>();
  const clientConfig = async (clientId: string): Promise<oc.Configuration> => {
    const secret = secrets.get(clientId);
    if (secret === undefined) throw new Error(`dev issuer: no client ${JSON.stringify(clientId)}`);
    let config = clientConfigs.get(clientId);
    if (!config) {
      if (!serverMetadata) {
        const discovered = await oc.discovery(
          new URL(issuer),
          clientId,
          secret,
          oc.ClientSecretBasic(secret),
          {
            execute: [oc.allowInsecureRequests],
          },
        );
        serverMetadata = discovered.serverMetadata();
        config = discovered;
      } else {
        config = new oc.Configuration(serverMetadata, clientId, secret, oc.ClientSecretBasic(secret));
        oc.allowInsecureRequests(config);
      }
      clientConfigs.set(clientId, config);
    }
    return config;
  };
  /** openid-client's errors say "server responded with an error"; the OAuth error and description are what matter. */
  const explained = async <T>(what: string, request: Promise<T>): Promise<T> => {
    try {
      return await request;
    } catch (err) {
      if (err instanceof oc.ResponseBodyError)
        throw new Error(
          `dev issuer: ${what} refused: ${err.error}: ${err.error_description ?? "(no description)"}`,
        );
      throw err;
    }
  };
  const resourceParam = (opts?: DevTokenOptions) => ({ resource: indicatorFor(opts?.audience ?? audience) });

  return {
    issuer,
    audience,
    port,
    personClient,
    consoleClient,
    groupsClaim,
    tokenEndpoint: `${issuer}/token`,
    jwksUri: `${issuer}/jwks`,
    clientSecret(clientId) {
      const secret = secrets.get(clientId);
      if (secret === undefined) throw new Error(`dev issuer: no client ${JSON.stringify(clientId)}`);
      return secret;
    },
    async tokenFor(user, opts) {
      const config = await clientConfig(personClient);
      const request = oc.genericGrantRequest(config, DEV_LOGIN_GRANT, {
        username: user,
        ...resourceParam(opts),
      });
      return (await explained(`a token for ${user}`, request)).access_token;
    },
    async machineToken(clientId, opts) {
      if (!machineClients.includes(clientId))
        throw new Error(`dev issuer: ${clientId} is not a machine client`);
      const request = oc.clientCredentialsGrant(await clientConfig(clientId), resourceParam(opts));
      return (await explained(`a machine token for ${clientId}`, request)).access_token;
    },
    async delegatedToken(subjectToken, actorClientId, opts) {
      if (!machineClients.includes(actorClientId))
        throw new Error(`dev issuer: ${actorClientId} is not a machine client`);
      const request = oc.genericGrantRequest(await clientConfig(actorClientId), TOKEN_EXCHANGE_GRANT, {
        subject_token: subjectToken,
        subject_token_type: ACCESS_TOKEN_TYPE,
        ...resourceParam(opts),
      });
      return (await explained(`the token exchange for ${actorClientId}`, request)).access_token;
    },
    jwks() {
      return { keys: keys.map(publicJwk) };
    },
    async rotateKeys(key) {
      const next = key ?? (await generateSigningKey());
      if (!next.kid) next.kid = await calculateJwkThumbprint(next);
      keys = [next, ...keys.filter((k) => k.kid !== next.kid)];
      provider = buildProvider();
      handler = provider.callback();
      log.info({ issuer, kid: next.kid }, "dev issuer: rotated signing key");
      return next.kid;
    },
    requests(path) {
      return requestCounts.get(path) ?? 0;
    },
    issuerConfig() {
      return { issuer, audience, groupsClaim, allowInsecureHttp: true };
    },
    async stop() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}
