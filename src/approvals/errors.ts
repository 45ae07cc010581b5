// The one error the approval workflow throws for a request it refuses. `code` is stable (the control plane maps
// it to an HTTP status and returns it); `message` says what was wrong in words a user can act on. Whenever an
// ApprovalError is thrown, nothing was written.

export type ApprovalErrorCode =
  | "not_found"
  | "not_pending"
  | "expired"
  | "self_approval"
  | "not_an_approver"
  | "already_voted"
  | "invalid";

export class ApprovalError extends Error {
  override readonly name = "ApprovalError";
  constructor(
    readonly code: ApprovalErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** The HTTP status each code corresponds to, for the control-plane API. */
export const APPROVAL_ERROR_STATUS: Readonly<Record<ApprovalErrorCode, number>> = {
  not_found: 404,
  not_pending: 409,
  expired: 409,
  self_approval: 403,
  not_an_approver: 403,
  already_voted: 409,
  invalid: 400,
};
