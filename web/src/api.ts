// The typed client of the control-plane API. The session is an HttpOnly cookie the app never sees: every call is
// same-origin with `credentials: "same-origin"` and the console header (the server refuses a cookie-authenticated
// non-GET request without it: the CSRF defence). A 401 from any call sends the browser to the sign-in page, which
// brings it back to the same hash route.

export const CONSOLE_HEADER = "x-pamgate-console";

export interface Actor {
  sub: string;
  iss?: string;
  client_id?: string | null;
}

export interface Identity {
  sub: string;
  iss: string;
  email: string | null;
  groups: string[];
  client_id: string | null;
  actors: Actor[];
}

export interface Me {
  identity: Identity;
  rights: { admin: boolean; approver: boolean; auditor?: boolean };
  expires_at: string;
}

export type ApprovalStatus = "pending" | "approved" | "denied" | "expired";
export type Protocol = "postgres" | "ssh" | "kubernetes";
export type Action = "allow" | "mask" | "block" | "approve";

export interface Reason {
  code: string;
  message?: string;
}

export interface Approval {
  id: string;
  status: ApprovalStatus;
  requester: Identity;
  resource: string;
  protocol: Protocol | string;
  command: { text: string; fingerprint: string };
  reasons: Reason[];
  rule: { groups: string[]; min_approvals: number; ttl_s: number };
  decision_id: string;
  session_id: string;
  created_at: string;
  expires_at: string;
  decided_at: string | null;
  grant_expires_at: string | null;
  approvals: number;
}

export interface Vote {
  approver: Identity;
  vote: "approve" | "deny";
  comment: string | null;
  created_at: string;
}

export interface ApprovalWithVotes extends Approval {
  votes: Vote[];
}

export interface ApprovalPage {
  approvals: Approval[];
  next_offset: number | null;
}

export interface DecisionRow {
  decision_id: string;
  timestamp: string;
  protocol: string;
  resource: string;
  action: string;
  verdict?: string;
  identity: { sub: string; chain: string[] };
  command: string;
  command_kind?: string;
  reasons: Reason[];
  session_id: string | null;
  approval_id: string | null;
  revision: string | null;
  where: { spool_id: string; seq: number };
}

export interface DecisionPage {
  decisions: DecisionRow[];
  next_cursor: string | null;
  source: "spool" | "postgres" | string;
  scanned: number;
}

/** The search parameters of GET /v1/audit/decisions (all optional). */
export const DECISION_FILTERS = [
  "identity",
  "resource",
  "protocol",
  "action",
  "reason",
  "since",
  "until",
  "q",
  "session",
] as const;
export type DecisionFilter = (typeof DECISION_FILTERS)[number];
export type DecisionQuery = Partial<Record<DecisionFilter, string>> & { limit?: number; before?: string };

/** One transcript entry: `t` seconds from the start, `event`, and the adapter's fields. */
export type TranscriptEntry = { t?: number; event?: string } & Record<string, unknown>;

export interface Transcript {
  format: string;
  header: Record<string, unknown>;
  entries: TranscriptEntry[];
  complete: boolean;
  missing_parts: number[];
}

export type MarkerTuple = [seconds: number, label: string];

export interface Terminal {
  /** `<session>/<n>` */
  id: string;
  header: { width?: number; height?: number; timestamp?: number; command?: string; title?: string } & Record<
    string,
    unknown
  >;
  /** Seconds; null when unknown. */
  duration: number | null;
  complete: boolean;
  missing_parts: number[];
  events: number;
  /** [seconds, label]: an exec's command line at 0, then the recording's own markers (a shell's typed lines). */
  markers: MarkerTuple[];
}

export interface SessionDetail {
  session_id: string;
  transcript: Transcript | null;
  terminals: Terminal[];
  /** The session's decisions (absent from an older server: treated as none). */
  decisions?: DecisionRow[];
}

export type ComponentState = "not_ready" | "ok" | "warn" | "error";

export interface ComponentStatus {
  state: ComponentState;
  message?: string;
  details?: Record<string, unknown>;
}

export interface StatusSnapshot {
  state: ComponentState;
  ready: boolean;
  components: Record<string, ComponentStatus>;
}

export interface BundleStatus {
  revision: string | null;
  loaded_at: string | null;
  source: string | null;
  last_error: { message: string; at: string } | null;
  activations: number;
}

/** An answer the API refused, or a call that never got one (status 0). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

let leaving = false;

/** Where the sign-in page is, bringing the user back to the current route afterwards. */
export function loginUrl(): string {
  return `/console/login?return=${encodeURIComponent(location.hash || "#/approvals")}`;
}

/** Sends the browser to the sign-in page (once). */
export function signIn(): void {
  if (leaving) return;
  leaving = true;
  location.assign(loginUrl());
}

/** A promise that never settles: the page is being left, nothing should render an error meanwhile. */
function never<T>(): Promise<T> {
  return new Promise<T>(() => {});
}

async function errorOf(res: Response): Promise<ApiError> {
  let code = `http_${res.status}`;
  let message = `${res.status} ${res.statusText || "error"}`.trim();
  try {
    const body = (await res.json()) as { error?: { code?: unknown; message?: unknown } };
    if (body?.error) {
      if (typeof body.error.code === "string") code = body.error.code;
      if (typeof body.error.message === "string") message = body.error.message;
    }
  } catch {
    // not JSON (a proxy's error page): the status line will do
  }
  return new ApiError(res.status, code, message);
}

export async function request<T>(method: "GET" | "POST", path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { accept: "application/json", [CONSOLE_HEADER]: "1" };
  if (body !== undefined) headers["content-type"] = "application/json";
  let res: Response;
  try {
    res = await fetch(path, {
      method,
      credentials: "same-origin",
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    throw new ApiError(0, "network", `The gateway could not be reached (${(err as Error).message}).`);
  }
  if (res.status === 401) {
    signIn();
    return never<T>();
  }
  if (!res.ok) throw await errorOf(res);
  if (res.status === 204) return undefined as T;
  return (await res.json()) as T;
}

const enc = encodeURIComponent;

function query(params: Record<string, string | number | undefined | null>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params))
    if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : "";
}

export const api = {
  me: () => request<Me>("GET", "/v1/me"),

  approvals: (params: { status?: ApprovalStatus; limit?: number; offset?: number } = {}) =>
    request<ApprovalPage>("GET", `/v1/approvals${query({ limit: 100, ...params })}`),

  approval: (id: string) => request<ApprovalWithVotes>("GET", `/v1/approvals/${enc(id)}`),

  vote: (id: string, vote: "approve" | "deny", comment: string) =>
    request<ApprovalWithVotes>(
      "POST",
      `/v1/approvals/${enc(id)}/${vote}`,
      comment.trim() ? { comment: comment.trim() } : {},
    ),

  decisions: (params: DecisionQuery) =>
    request<DecisionPage>("GET", `/v1/audit/decisions${query({ limit: 100, ...params })}`),

  session: (id: string) => request<SessionDetail>("GET", `/v1/sessions/${enc(id)}`),

  status: () => request<StatusSnapshot>("GET", "/v1/status"),

  bundle: () => request<BundleStatus>("GET", "/v1/status/bundle"),

  /** Ends the console session (clears the cookie). */
  logout: async (): Promise<void> => {
    const res = await fetch("/console/logout", {
      method: "POST",
      credentials: "same-origin",
      headers: { [CONSOLE_HEADER]: "1" },
    });
    if (!res.ok && res.status !== 401) throw await errorOf(res);
  },
};

/** Paths of the session's downloads (same-origin: the cookie goes with them). */
export const sessionUrls = {
  cast: (id: string, terminal: number | string, download = false) =>
    `/v1/sessions/${enc(id)}/cast${query({ terminal, download: download ? 1 : undefined })}`,
  transcript: (id: string) => `/v1/sessions/${enc(id)}/transcript.jsonl`,
};

/** A readable message for anything a call threw. */
export function messageOf(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
