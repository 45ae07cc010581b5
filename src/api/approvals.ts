// /v1/approvals: list, read, approve and deny approval requests. The approver is always the caller's verified
// identity — there is no field to vote "as" someone else. Every rule that can refuse a vote (self-approval, the
// request's approver groups, already voted, no longer pending, expired) is the ApprovalService's, checked under
// the request's row lock; a refusal is an ApprovalError, which leaves the request exactly as it was and is
// answered with its code and status.
import type { FastifyPluginAsync } from "fastify";
import type { ApprovalService } from "../approvals/service.js";
import type { ApprovalRequest, ApprovalStatus } from "../approvals/types.js";
import type { Identity } from "../decision/contract.js";
import type { TokenVerifier } from "../identity/verifier.js";
import { authenticate, identityOf, type Rights } from "./auth.js";
import { ApiError } from "./errors.js";
import { bearerAuth, errorResponses, UUID_PATTERN } from "./schemas.js";

export interface ApprovalRoutesOptions {
  verifier: TokenVerifier;
  approvals: ApprovalService;
  rights: Rights;
}

/** How many of the newest requests a non-admin's list looks through for the ones they may see. */
export const LIST_SCAN_LIMIT = 5000;
const SCAN_PAGE = 500;

interface ListQuery {
  status?: ApprovalStatus;
  limit: number;
  offset: number;
}

const idParams = {
  type: "object",
  required: ["id"],
  additionalProperties: false,
  properties: { id: { type: "string", pattern: UUID_PATTERN, description: "The approval request id." } },
} as const;

const voteBody = {
  type: "object",
  additionalProperties: false,
  description: "Optional; the body may also be left out.",
  properties: {
    comment: { type: "string", maxLength: 2000, description: "Why, for the record and the requester." },
  },
} as const;

export const approvalRoutes: FastifyPluginAsync<ApprovalRoutesOptions> = async (app, options) => {
  const { approvals, rights } = options;
  app.addHook("onRequest", authenticate(options.verifier));

  app.get<{ Querystring: ListQuery }>(
    "/v1/approvals",
    {
      schema: {
        tags: ["approvals"],
        summary: "List approval requests, newest first",
        description:
          "Admin-group members see every request. Anyone else sees their own requests (as requester or in its " +
          `actor chain) and those they could approve; for them the ${LIST_SCAN_LIMIT} newest requests are searched.`,
        security: bearerAuth,
        querystring: {
          type: "object",
          additionalProperties: false,
          properties: {
            status: { type: "string", enum: ["pending", "approved", "denied", "expired"] },
            limit: { type: "integer", minimum: 1, maximum: 1000, default: 100 },
            offset: { type: "integer", minimum: 0, default: 0 },
          },
        },
        response: {
          200: {
            type: "object",
            required: ["approvals", "next_offset"],
            properties: {
              approvals: { type: "array", items: { $ref: "Approval#" } },
              next_offset: {
                type: ["integer", "null"],
                description: "The offset of the next page, or null when this was the last.",
              },
            },
          },
          ...errorResponses(400, 401),
        },
      },
    },
    async (request) => {
      const identity = identityOf(request);
      const { status, limit, offset } = request.query;
      if (rights.isAdmin(identity)) {
        const page = await approvals.list({ status, limit, offset });
        return { approvals: page, next_offset: page.length === limit ? offset + limit : null };
      }
      const visible = await listVisible(
        approvals,
        status,
        (r) => rights.canSee(identity, r),
        limit + 1,
        offset,
      );
      return {
        approvals: visible.slice(0, limit),
        next_offset: visible.length > limit ? offset + limit : null,
      };
    },
  );

  app.get<{ Params: { id: string } }>(
    "/v1/approvals/:id",
    {
      schema: {
        tags: ["approvals"],
        summary: "One approval request with its votes",
        security: bearerAuth,
        params: idParams,
        response: { 200: { $ref: "ApprovalWithVotes#" }, ...errorResponses(400, 401, 403, 404) },
      },
    },
    async (request) => {
      const identity = identityOf(request);
      const found = await approvals.get(request.params.id);
      if (!rights.canSee(identity, found)) throw cannotSee(identity);
      return found;
    },
  );

  for (const vote of ["approve", "deny"] as const) {
    app.post<{ Params: { id: string }; Body: { comment?: string } }>(
      `/v1/approvals/:id/${vote}`,
      {
        schema: {
          tags: ["approvals"],
          summary: vote === "approve" ? "Approve a pending request" : "Deny a pending request",
          description:
            vote === "approve"
              ? "Records the caller's approval. With rule.min_approvals distinct approvals the request is " +
                "approved and becomes a grant for rule.ttl_s. Refused (state unchanged): your own request " +
                "(403 self_approval), not in the request's groups (403 not_an_approver), voted before " +
                "(409 already_voted), already decided (409 not_pending), past its deadline (409 expired)."
              : "Denies the request: one deny is enough. Refused like approve.",
          security: bearerAuth,
          params: idParams,
          body: voteBody,
          response: {
            200: { $ref: "ApprovalWithVotes#" },
            ...errorResponses(400, 401, 403, 404, 409, 413, 415),
          },
        },
        // The body is optional: no body is the same as {}.
        preValidation: async (request) => {
          if (request.body === undefined || request.body === null) request.body = {};
        },
      },
      async (request) => {
        const identity = identityOf(request);
        rights.assertApprover(identity);
        const comment = request.body.comment;
        return vote === "approve"
          ? approvals.approve(request.params.id, identity, { comment })
          : approvals.deny(request.params.id, identity, { comment });
      },
    );
  }
};

function cannotSee(identity: Identity): ApiError {
  return new ApiError(
    403,
    "forbidden",
    `${identity.sub} may read only their own approval requests and those they can approve`,
  );
}

/**
 * The requests `visible` accepts, newest first, paged by `offset`/`limit` over the visible ones. The service
 * filters by status only, so this pages through its list; an id seen twice (the list shifting while new
 * requests arrive) is kept once.
 */
async function listVisible(
  approvals: ApprovalService,
  status: ApprovalStatus | undefined,
  visible: (r: ApprovalRequest) => boolean,
  limit: number,
  offset: number,
): Promise<ApprovalRequest[]> {
  const out: ApprovalRequest[] = [];
  const seen = new Set<string>();
  let skipped = 0;
  for (let scanned = 0; scanned < LIST_SCAN_LIMIT; scanned += SCAN_PAGE) {
    const batch = await approvals.list({ status, limit: SCAN_PAGE, offset: scanned });
    for (const r of batch) {
      if (seen.has(r.id) || !visible(r)) continue;
      seen.add(r.id);
      if (skipped < offset) {
        skipped++;
        continue;
      }
      out.push(r);
      if (out.length === limit) return out;
    }
    if (batch.length < SCAN_PAGE) break;
  }
  return out;
}
