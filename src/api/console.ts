// The web console: its single-page app under /console/, and its sign-in — the OAuth 2.0 authorization code
// flow with PKCE (RFC 7636) through openid-client, against an issuer the gateway already trusts.
//
// The session is the access token itself, in an HttpOnly, SameSite=Strict cookie: every API call is verified by
// the same TokenVerifier as a bearer token (same issuers, audience, expiry, revocation by key rotation), so a
// console session is never more than the token it came from, and any replica or worker can serve it — there is
// no server-side session to share. When the token expires the API answers 401 and the app signs in again.
//
// The login's own state (PKCE verifier, OAuth state, where to return) travels in a second, short-lived cookie
// scoped to the callback path; SameSite=Lax, because the identity provider's redirect back is a cross-site
// top-level navigation.
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from "fastify";
import * as oc from "openid-client";
import { TokenError } from "../identity/errors.js";
import type { TokenVerifier } from "../identity/verifier.js";
import type { Logger } from "../util/log.js";
import { isLoopback } from "../util/net.js";
import { authenticate, CONSOLE_HEADER, type Rights, SESSION_COOKIE, tokenOf } from "./auth.js";
import type { ConsoleAssets } from "./console-assets.js";
import { bearerAuth, errorResponses } from "./schemas.js";

export interface ConsoleLoginOptions {
  /** The issuer people sign in with; it must be one the gateway's verifier trusts. */
  issuer: string;
  clientId: string;
  /** A confidential client's secret; without it the client is public and PKCE alone protects the code. */
  clientSecret?: string;
  /**
   * The console's public base URL (https://pamgate.example.com): the redirect URI is <publicUrl>/console/callback
   * and cookies are Secure when it is https. Unset: taken from the request, which is accepted only on loopback.
   */
  publicUrl?: string;
  /** Default ["openid"]. */
  scopes?: string[];
  /** An RFC 8707 resource indicator, for issuers that pick the access token's audience by it. */
  resource?: string;
  /** http:// issuers are accepted only on loopback (the development issuer). */
  allowInsecureHttp?: boolean;
}

export interface ConsoleRoutesOptions {
  verifier: TokenVerifier;
  rights: Rights;
  /** Absent: the console's pages are served but signing in says it is not configured. */
  login?: ConsoleLoginOptions;
  /** The built app, loaded on first use. Absent: /console/ says there is none. */
  assets?: () => Promise<ConsoleAssets>;
  log: Logger;
}

const LOGIN_COOKIE = "pamgate_login";
const LOGIN_TTL_S = 600;

interface LoginState {
  verifier: string;
  state: string;
  /** A hash route of the app (#/approvals/…), never a URL: the console redirects only to itself. */
  back: string;
}

/** Only the app's own hash routes are accepted as "where to return": no open redirect. */
function safeHashRoute(value: unknown): string {
  return typeof value === "string" && /^#\/[\w\-./?=&%~+:@,;]*$/.test(value) && value.length <= 1000
    ? value
    : "#/approvals";
}

/** Cookie attributes: HttpOnly always; Secure when the console's public URL is https. */
function cookieOptions(path: string, sameSite: "lax" | "strict", maxAgeS: number, secure: boolean) {
  return { path, sameSite, httpOnly: true, secure, maxAge: Math.max(0, Math.floor(maxAgeS)) };
}

function page(reply: FastifyReply, status: number, title: string, message: string): FastifyReply {
  const esc = (t: string) => t.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  return reply
    .code(status)
    .type("text/html; charset=utf-8")
    .header("cache-control", "no-store")
    .send(
      `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${esc(title)} — pamgate</title></head>` +
        `<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 4rem auto; padding: 0 1rem">` +
        `<h1>${esc(title)}</h1><p>${esc(message)}</p><p><a href="/console/login">Sign in again</a></p></body></html>`,
    );
}

/** The OIDC client, discovered on first use (the IdP may be down when the gateway starts) and kept. */
class LoginClient {
  private config: Promise<oc.Configuration> | null = null;

  constructor(private readonly options: ConsoleLoginOptions) {
    const url = URL.parse(options.issuer);
    if (!url) throw new Error(`listeners.api.console.issuer: ${JSON.stringify(options.issuer)} is not a URL`);
    if (
      url.protocol === "http:" &&
      !(options.allowInsecureHttp && isLoopback(url.hostname.replace(/^\[|\]$/g, "")))
    )
      throw new Error(
        `listeners.api.console.issuer: ${options.issuer} is http://; only a loopback development issuer may be`,
      );
    if (options.publicUrl !== undefined && !URL.parse(options.publicUrl))
      throw new Error(`listeners.api.console.public_url: ${JSON.stringify(options.publicUrl)} is not a URL`);
  }

  get secure(): boolean {
    return this.options.publicUrl?.startsWith("https:") ?? false;
  }

  configuration(): Promise<oc.Configuration> {
    this.config ??= oc
      .discovery(
        new URL(this.options.issuer),
        this.options.clientId,
        this.options.clientSecret,
        this.options.clientSecret ? oc.ClientSecretBasic(this.options.clientSecret) : oc.None(),
        this.options.issuer.startsWith("http:") ? { execute: [oc.allowInsecureRequests] } : undefined,
      )
      .catch((err) => {
        this.config = null; // try again on the next sign-in
        throw err;
      });
    return this.config;
  }

  /** The redirect URI: configured, or this loopback request's own origin. */
  redirectUri(request: FastifyRequest): string {
    if (this.options.publicUrl) return new URL("/console/callback", this.options.publicUrl).href;
    const host = request.hostname.replace(/:\d+$/, "").replace(/^\[|\]$/g, "");
    if (!isLoopback(host) && host !== "localhost")
      throw new ConsoleLoginError(
        400,
        "set listeners.api.console.public_url: without it the console accepts sign-ins only on a loopback address",
      );
    return `${request.protocol}://${request.host}/console/callback`;
  }

  get scope(): string {
    return (this.options.scopes ?? ["openid"]).join(" ");
  }

  get resource(): Record<string, string> {
    return this.options.resource ? { resource: this.options.resource } : {};
  }
}

class ConsoleLoginError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** What openid-client's errors mean for a person at a browser. */
function explain(err: unknown): string {
  if (err instanceof oc.AuthorizationResponseError || err instanceof oc.ResponseBodyError)
    return `the identity provider refused: ${err.error}${err.error_description ? `: ${err.error_description}` : ""}`;
  return err instanceof Error ? err.message : String(err);
}

export const consoleRoutes: FastifyPluginAsync<ConsoleRoutesOptions> = async (app, options) => {
  const { verifier, rights, log } = options;
  const client = options.login ? new LoginClient(options.login) : null;
  const secure = client?.secure ?? false;

  app.get("/console", { schema: { hide: true } }, async (_request, reply) => reply.redirect("/console/"));

  app.get("/console/login", { schema: { hide: true } }, async (request, reply) => {
    if (!client)
      return page(
        reply,
        404,
        "Console sign-in is not configured",
        "Set listeners.api.console (issuer, client_id) in the gateway's configuration — see docs/console.md.",
      );
    try {
      const config = await client.configuration();
      const login: LoginState = {
        verifier: oc.randomPKCECodeVerifier(),
        state: oc.randomState(),
        back: safeHashRoute((request.query as Record<string, unknown>).return),
      };
      const url = oc.buildAuthorizationUrl(config, {
        redirect_uri: client.redirectUri(request),
        scope: client.scope,
        code_challenge: await oc.calculatePKCECodeChallenge(login.verifier),
        code_challenge_method: "S256",
        state: login.state,
        ...client.resource,
      });
      reply.setCookie(
        LOGIN_COOKIE,
        Buffer.from(JSON.stringify(login)).toString("base64url"),
        cookieOptions("/console/callback", "lax", LOGIN_TTL_S, secure),
      );
      return reply.header("cache-control", "no-store").redirect(url.href);
    } catch (err) {
      if (err instanceof ConsoleLoginError) return page(reply, err.status, "Cannot sign in", err.message);
      log.warn({ err: explain(err) }, "console: cannot start a sign-in");
      return page(reply, 502, "Cannot reach the identity provider", explain(err));
    }
  });

  app.get("/console/callback", { schema: { hide: true } }, async (request, reply) => {
    if (!client) return reply.redirect("/console/login");
    reply.clearCookie(LOGIN_COOKIE, cookieOptions("/console/callback", "lax", 0, secure));
    let login: LoginState;
    try {
      login = JSON.parse(Buffer.from(request.cookies[LOGIN_COOKIE] ?? "", "base64url").toString("utf8"));
      if (typeof login.verifier !== "string" || typeof login.state !== "string")
        throw new Error("incomplete");
    } catch {
      return page(
        reply,
        400,
        "Sign-in expired",
        `This sign-in was not started here or took longer than ${LOGIN_TTL_S / 60} minutes; start it again.`,
      );
    }
    let accessToken: string;
    try {
      const config = await client.configuration();
      const redirect = new URL(client.redirectUri(request));
      const current = new URL(request.url, redirect);
      const tokens = await oc.authorizationCodeGrant(
        config,
        current,
        { pkceCodeVerifier: login.verifier, expectedState: login.state },
        client.resource,
      );
      accessToken = tokens.access_token;
    } catch (err) {
      log.warn({ err: explain(err) }, "console: sign-in failed");
      return page(reply, 400, "Sign-in failed", explain(err));
    }
    // The token must pass the gateway's own checks, or every API call would refuse it.
    let expiresAt: Date;
    try {
      const token = await verifier.verify(accessToken);
      expiresAt = token.expiresAt;
      log.info({ sub: token.identity.sub, token: token.tokenId }, "console: signed in");
    } catch (err) {
      const why = err instanceof TokenError ? err.toString() : explain(err);
      return page(
        reply,
        403,
        "The identity provider's token is not accepted here",
        `${why}. The console's access token is checked like any other: its issuer and audience must be configured under identity.issuers.`,
      );
    }
    reply.setCookie(
      SESSION_COOKIE,
      accessToken,
      cookieOptions("/", "strict", (expiresAt.getTime() - Date.now()) / 1000, secure),
    );
    return reply.header("cache-control", "no-store").redirect(`/console/${login.back}`);
  });

  app.post("/console/logout", { schema: { hide: true } }, async (request, reply) => {
    if (request.headers[CONSOLE_HEADER] !== "1")
      return reply
        .code(403)
        .send({ error: { code: "csrf", message: `send the header ${CONSOLE_HEADER}: 1` } });
    reply.clearCookie(SESSION_COOKIE, cookieOptions("/", "strict", 0, secure));
    return reply.code(204).send();
  });

  app.get(
    "/v1/me",
    {
      onRequest: authenticate(verifier),
      schema: {
        tags: ["console"],
        summary: "Who the caller is and what the API lets them do",
        security: bearerAuth,
        response: {
          200: {
            type: "object",
            required: ["identity", "rights", "expires_at"],
            properties: {
              identity: { $ref: "Identity#" },
              rights: {
                type: "object",
                required: ["admin", "approver", "auditor"],
                properties: {
                  admin: { type: "boolean" },
                  approver: { type: "boolean" },
                  auditor: { type: "boolean" },
                },
              },
              expires_at: { type: "string", format: "date-time" },
            },
          },
          ...errorResponses(401),
        },
      },
    },
    async (request) => {
      const token = tokenOf(request);
      return {
        identity: token.identity,
        rights: {
          admin: rights.isAdmin(token.identity),
          approver: rights.isApprover(token.identity),
          auditor: rights.isAuditor(token.identity),
        },
        expires_at: token.expiresAt.toISOString(),
      };
    },
  );

  // The app: index.html for /console/, its files under /console/assets/. Strict CSP: everything is ours.
  const csp =
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; " +
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";
  const assets = async (): Promise<ConsoleAssets | undefined> => options.assets?.();
  app.get("/console/", { schema: { hide: true } }, async (_request, reply) => {
    const app = await assets();
    const index = app?.file("index.html");
    if (!index)
      return page(reply, 503, "The console is not available", app?.problem ?? "This API serves no console.");
    return reply
      .type("text/html; charset=utf-8")
      .header("cache-control", "no-cache")
      .header("content-security-policy", csp)
      .header("x-content-type-options", "nosniff")
      .send(index.body);
  });
  app.get<{ Params: { "*": string } }>(
    "/console/assets/*",
    { schema: { hide: true } },
    async (request, reply) => {
      const asset = (await assets())?.file(`assets/${request.params["*"]}`);
      if (!asset) return reply.code(404).type("text/plain").send("no such console asset\n");
      return reply
        .type(asset.type)
        .header("cache-control", "no-cache")
        .header("etag", asset.etag)
        .header("x-content-type-options", "nosniff")
        .send(asset.body);
    },
  );
};
