// From verified JWT claims to the policy's `identity` (docs/identity.md, docs/policy-contract.md). Pure: no I/O,
// no clock, so the mapping can be tested — and reasoned about — on its own.
//
// Delegation (RFC 8693 §4.1): the token's `sub` is the principal, the original requester. The outermost `act`
// is the current actor — the party presenting the token — and each nested `act` is the actor before it. So
//
//   { sub: "alice", act: { sub: "ci-bot", client_id: "ci-bot", act: { sub: "agent-x" } } }
//
// reads "ci-bot, acting for agent-x, acting for alice", and the actor chain, original requester first, is
// [alice, agent-x, ci-bot].
import type { Actor, Identity } from "../decision/contract.js";
import { DEFAULT_GROUPS_CLAIM, type IssuerConfig } from "./config.js";
import { TokenError } from "./errors.js";

export const DEFAULT_MAX_DELEGATION_DEPTH = 10;

export interface ClaimsOptions {
  /** Most nested `act` claims accepted (default 10); one more is delegation_too_deep. */
  maxDelegationDepth?: number;
}

type Claims = Record<string, unknown>;

function isObject(value: unknown): value is Claims {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return `a ${typeof value}`;
}

/**
 * The value of a claim named by `path`: the claim with exactly that name if there is one (URL-style claim
 * names contain dots), otherwise the dotted path walked through nested objects.
 */
export function claimAt(claims: Claims, path: string): unknown {
  if (Object.hasOwn(claims, path)) return claims[path];
  let current: unknown = claims;
  for (const part of path.split(".")) {
    if (!isObject(current) || !Object.hasOwn(current, part)) return undefined;
    current = current[part];
  }
  return current;
}

/** The groups from the configured claim, always an array of strings: absent → [], one string → [it]. */
export function groupsFromClaims(claims: Claims, groupsClaim = DEFAULT_GROUPS_CLAIM): string[] {
  const value = claimAt(claims, groupsClaim);
  if (value === undefined || value === null) return [];
  if (typeof value === "string") return [value];
  if (Array.isArray(value) && value.every((g) => typeof g === "string")) return [...new Set(value)];
  throw new TokenError(
    "malformed",
    `groups claim "${groupsClaim}" is ${describe(value)}${Array.isArray(value) ? " with non-string members" : ""}; expected an array of strings`,
  );
}

function optionalString(claims: Claims, name: string, where: string): string | undefined {
  const value = claims[name];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "string")
    throw new TokenError("malformed", `${where} claim "${name}" is ${describe(value)}, expected a string`);
  return value;
}

function requiredString(claims: Claims, name: string, where: string): string {
  const value = claims[name];
  if (typeof value !== "string" || value === "")
    throw new TokenError(
      "malformed",
      value === undefined
        ? `${where} has no "${name}" claim`
        : `${where} claim "${name}" must be a non-empty string`,
    );
  return value;
}

/** `client_id`, else `azp`, else null. */
function clientIdOf(claims: Claims, where: string): string | null {
  return optionalString(claims, "client_id", where) ?? optionalString(claims, "azp", where) ?? null;
}

/** The `act` claims from the outermost (the current actor) inwards (earlier actors). */
function actChain(claims: Claims, maxDepth: number): Claims[] {
  const chain: Claims[] = [];
  let act = claims.act;
  while (act !== undefined) {
    if (chain.length === maxDepth)
      throw new TokenError(
        "delegation_too_deep",
        `the act (delegation) chain is nested deeper than ${maxDepth} actors`,
      );
    const depth = chain.length + 1;
    if (!isObject(act))
      throw new TokenError(
        "malformed",
        `act claim at depth ${depth} is ${describe(act)}, expected an object`,
      );
    chain.push(act);
    act = act.act;
  }
  return chain;
}

function actorFrom(act: Claims, depth: number): Actor {
  const where = `act claim at depth ${depth}`;
  const actor: Actor = { sub: requiredString(act, "sub", where) };
  const iss = optionalString(act, "iss", where);
  if (iss !== undefined) actor.iss = iss;
  const clientId = clientIdOf(act, where);
  if (clientId !== null) actor.client_id = clientId;
  return actor;
}

/**
 * Maps verified claims to the policy identity. Throws TokenError ("malformed" or "delegation_too_deep") when a
 * claim has the wrong shape. Signature, issuer, audience and time checks are the verifier's job.
 */
export function identityFromClaims(
  claims: Claims,
  issuerConfig: Pick<IssuerConfig, "groupsClaim">,
  options: ClaimsOptions = {},
): Identity {
  const maxDepth = options.maxDelegationDepth ?? DEFAULT_MAX_DELEGATION_DEPTH;
  const sub = requiredString(claims, "sub", "token");
  const iss = requiredString(claims, "iss", "token");
  const email = optionalString(claims, "email", "token") ?? null;
  const clientId = clientIdOf(claims, "token");
  const groups = groupsFromClaims(claims, issuerConfig.groupsClaim ?? DEFAULT_GROUPS_CLAIM);

  const acts = actChain(claims, maxDepth);
  let actors: Actor[];
  if (acts.length === 0) {
    actors = [{ sub, client_id: clientId }];
  } else {
    // acts[0] is the current actor, acts[n-1] the first one to act for the principal.
    const delegates = acts.map((act, i) => actorFrom(act, i + 1)).reverse();
    actors = [{ sub }, ...delegates];
  }

  return { sub, iss, email, groups, client_id: clientId, actors };
}
