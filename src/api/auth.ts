// Who is calling, and what they may do. Authentication is the gateway's own token verification: the same
// TokenVerifier, issuers and checks as the protocol listeners, so a token refused there is refused here with
// the same code — and counted in pamgate_token_rejections_total the same way. Rights come from groups:
//
//   - admin groups may list and read every request;
//   - anyone else reads their own requests (they are the requester or in its actor chain) and those they could
//     approve;
//   - approving or denying needs membership of one of the configured approver groups (when configured) *and*
//     of one of the request's own rule.groups, and never your own request — the last two are the
//     ApprovalService's rules, enforced inside its transaction.
import type { FastifyRequest, onRequestAsyncHookHandler } from "fastify";
import { actorChain } from "../approvals/rules.js";
import type { ApprovalRequest } from "../approvals/types.js";
import type { Identity } from "../decision/contract.js";
import { TokenError } from "../identity/errors.js";
import type { TokenVerifier, VerifiedToken } from "../identity/verifier.js";
import { metrics } from "../metrics.js";
import { ApiError } from "./errors.js";

const verified = new WeakMap<FastifyRequest, VerifiedToken>();

/** The web console's session cookie: the access token its OIDC login obtained (src/api/console.ts). */
export const SESSION_COOKIE = "pamgate_session";
/**
 * The header a cookie-authenticated request that changes anything must carry. A cross-site form cannot set a
 * header, and a cross-site fetch that sets one needs a CORS preflight this API never grants — so with the
 * SameSite=Strict cookie it is the console's CSRF defence.
 */
export const CONSOLE_HEADER = "x-pamgate-console";

/** The console session cookie's value, if the request has one (cookies are parsed by @fastify/cookie). */
export function sessionCookie(request: FastifyRequest): string | undefined {
  return request.cookies?.[SESSION_COOKIE] || undefined;
}

/**
 * A route-level onRequest hook: verifies the bearer token — or, without an Authorization header, the console's
 * session cookie — or fails the request with the TokenError (401).
 */
export function authenticate(verifier: TokenVerifier): onRequestAsyncHookHandler {
  return async (request) => {
    const header = request.headers.authorization;
    const cookie = header === undefined ? sessionCookie(request) : undefined;
    if (cookie !== undefined) {
      if (request.method !== "GET" && request.method !== "HEAD" && request.headers[CONSOLE_HEADER] !== "1") {
        throw new ApiError(
          403,
          "csrf",
          `a request authenticated by the console's cookie must send the header ${CONSOLE_HEADER}: 1`,
        );
      }
      verified.set(request, await verifier.verify(cookie));
      return;
    }
    if (header === undefined || header.trim() === "") {
      metrics.tokenRejections.inc({ reason: "malformed" });
      throw new TokenError(
        "malformed",
        "no access token: send the header Authorization: Bearer <access token> (or sign in to the console at /console/)",
      );
    }
    const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
    if (!match?.[1]) {
      metrics.tokenRejections.inc({ reason: "malformed" });
      throw new TokenError(
        "malformed",
        `the Authorization header must be "Bearer <access token>" (got the ${JSON.stringify(header.split(/\s/, 1)[0]?.slice(0, 20))} scheme)`,
      );
    }
    // verify() counts its own rejections and never logs the token.
    verified.set(request, await verifier.verify(match[1]));
  };
}

/** The verified token of an authenticated request. */
export function tokenOf(request: FastifyRequest): VerifiedToken {
  const token = verified.get(request);
  if (!token) throw new Error(`route ${request.url} reads the identity but is not authenticated`);
  return token;
}

export function identityOf(request: FastifyRequest): Identity {
  return tokenOf(request).identity;
}

function intersects(a: readonly string[], b: readonly string[]): boolean {
  return a.some((g) => b.includes(g));
}

export interface RightsOptions {
  adminGroups: readonly string[];
  approverGroups?: readonly string[];
  /** Who may search decisions and replay sessions; default the admin groups. */
  auditGroups?: readonly string[];
}

export class Rights {
  private adminGroups: readonly string[] = [];
  private approverGroups: readonly string[] | null = null;
  private auditGroups: readonly string[] = [];

  constructor(options: RightsOptions) {
    this.update(options);
  }

  /** Replaces the groups (a configuration reload); the next request is judged by the new ones. */
  update(options: RightsOptions): void {
    this.adminGroups = [...options.adminGroups];
    this.auditGroups = [...(options.auditGroups ?? options.adminGroups)];
    // An empty list would lock every approver out; it is read as "not configured".
    this.approverGroups =
      options.approverGroups && options.approverGroups.length > 0 ? [...options.approverGroups] : null;
  }

  isAdmin(identity: Identity): boolean {
    return intersects(identity.groups, this.adminGroups);
  }

  /** May search the audit trail and replay sessions. */
  isAuditor(identity: Identity): boolean {
    return intersects(identity.groups, this.auditGroups);
  }

  /** Throws 403 not_an_auditor unless the identity may read the audit trail. */
  assertAuditor(identity: Identity): void {
    if (this.isAuditor(identity)) return;
    throw new ApiError(
      403,
      "not_an_auditor",
      `${identity.sub} is not in any group that may read the audit trail (${this.auditGroups.join(", ") || "none configured: set listeners.api.audit_groups or approvals.admin_groups"})`,
    );
  }

  /** Whether the identity passes the gateway-wide approver gate (always, when no approver groups are set). */
  isApprover(identity: Identity): boolean {
    return this.approverGroups === null || intersects(identity.groups, this.approverGroups);
  }

  /** Throws 403 not_an_approver unless the identity may approve anything through the API at all. */
  assertApprover(identity: Identity): void {
    if (this.isApprover(identity)) return;
    throw new ApiError(
      403,
      "not_an_approver",
      `${identity.sub} is not in any approver group of this gateway (${(this.approverGroups ?? []).join(", ")})`,
    );
  }

  /** The requester, or anyone in the request's actor chain. */
  isInvolved(identity: Identity, request: ApprovalRequest): boolean {
    const parties = new Set([request.requester.sub, ...actorChain(request.requester)]);
    return parties.has(identity.sub);
  }

  /** In an approver group of the gateway and of the request's rule (self-approval aside). */
  couldApprove(identity: Identity, request: ApprovalRequest): boolean {
    return this.isApprover(identity) && intersects(identity.groups, request.rule.groups);
  }

  canSee(identity: Identity, request: ApprovalRequest): boolean {
    return (
      this.isAdmin(identity) || this.isInvolved(identity, request) || this.couldApprove(identity, request)
    );
  }
}
