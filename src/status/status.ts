// One status model for every part of the gateway, after OPA's plugin manager: each component reports a state
// and a message, and readiness is derived from all of them rather than from a hand-picked few (a full audit
// spool blocks every statement, so it must make the gateway unready just as a missing policy bundle does).
//
//   const status = new StatusRegistry();
//   const off = status.register("audit.spool", () => trail.spoolStatus());
//   status.snapshot()   // {state: "error", ready: false, components: {"audit.spool": {state: "error", …}}}
//   off();              // unregisters (a listener that closed, a sink that was removed)
//
// Component names, by convention: `engine`, `bundle:<source>`, `audit.spool`, `audit.sink:<name>`,
// `identity.verifier`, `postgres.analyzer`, `listener:<protocol>`, `lifecycle` (not_ready while draining).
//
// Reporters are called on every snapshot (each /readyz probe), so they must be synchronous and cheap: they map
// state the component already keeps, they do not go and measure anything.

/**
 * - `not_ready`: not able to do its job yet (starting, nothing loaded): the gateway is not ready.
 * - `ok`: working.
 * - `warn`: working, but something needs attention (a failing sink, a rejected candidate bundle, a spool
 *   filling up): the gateway stays ready.
 * - `error`: not able to do its job (the spool refuses records): the gateway is not ready.
 */
export type ComponentState = "not_ready" | "ok" | "warn" | "error";

export const COMPONENT_STATES: readonly ComponentState[] = ["not_ready", "ok", "warn", "error"];

export interface ComponentStatus {
  state: ComponentState;
  /** One readable sentence saying what is wrong (or what is in use); absent when there is nothing to say. */
  message?: string;
  /** Machine-readable particulars (revision, bytes used, last error, …). */
  details?: Record<string, unknown>;
}

export type StatusReporter = () => ComponentStatus;

export interface StatusSnapshot {
  /** The worst state of all components (`ok` when there are none). */
  state: ComponentState;
  /** No component is `not_ready` or `error`. */
  ready: boolean;
  components: Record<string, ComponentStatus>;
}

/** How bad a state is, for "the worst of all": warn < not_ready < error. */
const SEVERITY: Record<ComponentState, number> = { ok: 0, warn: 1, not_ready: 2, error: 3 };

/** Whether a component in this state keeps the gateway from being ready. */
export function blocksReadiness(state: ComponentState): boolean {
  return state === "not_ready" || state === "error";
}

export function worstState(states: Iterable<ComponentState>): ComponentState {
  let worst: ComponentState = "ok";
  for (const s of states) if (SEVERITY[s] > SEVERITY[worst]) worst = s;
  return worst;
}

/** A snapshot of the given components: the worst state and readiness. */
export function summarize(components: Record<string, ComponentStatus>): StatusSnapshot {
  const states = Object.values(components).map((c) => c.state);
  return { state: worstState(states), ready: !states.some(blocksReadiness), components };
}

/** The readable reasons a snapshot is not ready: the message of each component that blocks readiness. */
export function notReadyReasons(snapshot: StatusSnapshot): string[] {
  return Object.entries(snapshot.components)
    .filter(([, c]) => blocksReadiness(c.state))
    .map(([name, c]) => c.message ?? `${name} is ${c.state === "error" ? "failing" : "not ready"}`);
}

const NAME = /^[A-Za-z0-9_.:/@+-]{1,200}$/;

export class StatusRegistry {
  private readonly reporters = new Map<string, StatusReporter>();

  /**
   * Adds a component. Returns the function that removes it again. Two components with one name would hide
   * each other's state, so a second registration of a name throws.
   */
  register(name: string, reporter: StatusReporter): () => void {
    if (!NAME.test(name)) throw new Error(`status: invalid component name ${JSON.stringify(name)}`);
    if (this.reporters.has(name))
      throw new Error(`status: a component named "${name}" is already registered`);
    this.reporters.set(name, reporter);
    return () => {
      if (this.reporters.get(name) === reporter) this.reporters.delete(name);
    };
  }

  /** The registered names, in registration order. */
  names(): string[] {
    return [...this.reporters.keys()];
  }

  /** The status of one component, or undefined when none has that name. */
  get(name: string): ComponentStatus | undefined {
    const reporter = this.reporters.get(name);
    return reporter && report(name, reporter);
  }

  /** Every component's status now, the worst state, and readiness. */
  snapshot(): StatusSnapshot {
    const components: Record<string, ComponentStatus> = {};
    for (const [name, reporter] of this.reporters) components[name] = report(name, reporter);
    return summarize(components);
  }
}

/**
 * Calls a reporter. One that throws or answers nonsense is a bug in that component; it is reported as an
 * `error` of that component (fail closed: not ready) instead of breaking the whole snapshot.
 */
function report(name: string, reporter: StatusReporter): ComponentStatus {
  let s: ComponentStatus;
  try {
    s = reporter();
  } catch (err) {
    return {
      state: "error",
      message: `${name}: its status could not be read: ${err instanceof Error ? err.message : String(err)}`,
    };
  }
  if (!s || !COMPONENT_STATES.includes(s.state)) {
    return { state: "error", message: `${name}: reported an invalid status ${JSON.stringify(s)}` };
  }
  return s;
}
