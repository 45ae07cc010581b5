// The component status model (as OPA's plugin manager): every part of a running gateway reports one state.
export type ComponentState = "not_ready" | "ok" | "warn" | "error";

export interface ComponentStatus {
  state: ComponentState;
  message?: string;
  details?: Record<string, unknown>;
}
