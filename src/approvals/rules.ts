// The approval rules that need no database: who counts as "the requester", who may vote, what a grant is keyed
// on, and what a well-formed request looks like. Kept pure so they can be read (and tested) on their own.
import { type Identity, PROTOCOLS } from "../decision/contract.js";
import { ApprovalError } from "./errors.js";
import type { NewApprovalRequest } from "./types.js";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Approval ids are UUIDs. Anything else is answered "not found" before it reaches SQL, where PostgreSQL would
 * fail with an "invalid input syntax for type uuid" error instead.
 */
export function parseApprovalId(id: unknown): string {
  if (typeof id !== "string" || !UUID.test(id)) {
    const shown = typeof id === "string" ? JSON.stringify(id.slice(0, 80)) : typeof id;
    throw new ApprovalError("not_found", `no approval request with id ${shown} (approval ids are UUIDs)`);
  }
  return id.toLowerCase();
}

/**
 * The delegation chain as subjects, original requester first. The contract says a token without `act` has a
 * chain of one (itself); an empty `actors` is read the same way.
 */
export function actorChain(identity: Identity): string[] {
  return identity.actors.length > 0 ? identity.actors.map((a) => a.sub) : [identity.sub];
}

/** Everyone who took part in presenting an identity: its subject and every actor of its chain. */
function parties(identity: Identity): Set<string> {
  return new Set([identity.sub, ...identity.actors.map((a) => a.sub)]);
}

/**
 * Throws unless `approver` may vote on a request made by `requester` under a rule naming `groups`.
 *
 * Nobody in the requester's chain may vote — not the person, not an agent acting for them — and neither may an
 * approver token that itself passed through one of them (an agent of the requester presenting "bob" would
 * otherwise vote for its own request). Subjects are compared without their issuer, which errs on refusing.
 * Client ids are not compared: people routinely share a public client such as a CLI.
 */
export function checkVoter(requester: Identity, groups: readonly string[], approver: Identity): void {
  const requesterParties = parties(requester);
  const overlap = [...parties(approver)].filter((p) => requesterParties.has(p));
  if (overlap.length > 0) {
    const who = overlap.includes(approver.sub)
      ? approver.sub
      : `${approver.sub} (through ${overlap.join(", ")})`;
    throw new ApprovalError(
      "self_approval",
      `${who} took part in the request (requested by ${describeChain(requester)}) and cannot vote on it`,
    );
  }
  if (!approver.groups.some((g) => groups.includes(g))) {
    throw new ApprovalError(
      "not_an_approver",
      `${approver.sub} is not in any approver group of this request (${groups.join(", ")})`,
    );
  }
}

export function describeChain(identity: Identity): string {
  const chain = actorChain(identity);
  return chain.length === 1
    ? identity.sub
    : `${chain.at(-1)} on behalf of ${chain.slice(0, -1).join(" via ")}`;
}

export function validateIdentity(identity: unknown, role: string): asserts identity is Identity {
  const id = identity as Partial<Identity> | null;
  const ok =
    typeof id === "object" &&
    id !== null &&
    nonEmpty(id.sub) &&
    typeof id.iss === "string" &&
    Array.isArray(id.groups) &&
    id.groups.every((g) => typeof g === "string") &&
    Array.isArray(id.actors) &&
    id.actors.every((a) => typeof a === "object" && a !== null && nonEmpty(a.sub));
  if (!ok)
    throw new ApprovalError("invalid", `the ${role} identity is malformed (needs sub, iss, groups, actors)`);
}

export function validateNewRequest(input: NewApprovalRequest): void {
  if (typeof input !== "object" || input === null) throw invalid("the request is not an object");
  validateIdentity(input.requester, "requester");
  if (!nonEmpty(input.resource)) throw invalid("resource must be a non-empty string");
  if (!(PROTOCOLS as readonly string[]).includes(input.protocol))
    throw invalid(`unknown protocol ${JSON.stringify(input.protocol)}`);
  if (typeof input.command?.text !== "string") throw invalid("command.text must be a string");
  if (!nonEmpty(input.command.fingerprint)) throw invalid("command.fingerprint must be a non-empty string");
  if (!Array.isArray(input.reasons)) throw invalid("reasons must be an array");
  const rule = input.rule;
  if (!rule || !Array.isArray(rule.groups) || rule.groups.length === 0 || !rule.groups.every(nonEmpty)) {
    throw invalid("rule.groups must name at least one approver group");
  }
  if (!Number.isInteger(rule.min_approvals) || rule.min_approvals < 1) {
    throw invalid("rule.min_approvals must be an integer of at least 1");
  }
  if (!Number.isInteger(rule.ttl_s) || rule.ttl_s < 1) throw invalid("rule.ttl_s must be a positive integer");
  if (!nonEmpty(input.decisionId) || !nonEmpty(input.sessionId)) {
    throw invalid("decisionId and sessionId must be non-empty strings");
  }
}

function nonEmpty(value: unknown): value is string {
  return typeof value === "string" && value.length > 0;
}

function invalid(message: string): ApprovalError {
  return new ApprovalError("invalid", message);
}
