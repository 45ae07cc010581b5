// Tells people a new approval request is waiting: a POST of a Slack-compatible message ({text, blocks}, what
// a Slack incoming webhook, Mattermost and most chat bridges accept) to a configured URL. Delivery happens off
// the command path — notify() returns at once and never throws — and is retried with exponential backoff and
// jitter for a bounded number of attempts on network errors, timeouts, 408, 425, 429 and 5xx (a Retry-After is
// honoured up to the backoff cap). Any other answer is final. Every failure is logged; the URL is logged by
// origin only, since webhook URLs (Slack's included) carry their secret in the path.
import { Counter } from "prom-client";
import { describeChain } from "../approvals/rules.js";
import type { ApprovalRequest } from "../approvals/types.js";
import { registry } from "../metrics.js";
import { type Logger, silentLogger } from "../util/log.js";

export interface WebhookConfig {
  url: string;
  /** Sent with every delivery (e.g. an Authorization header for a non-Slack receiver). */
  headers?: Record<string, string>;
  /** Attempts per request, the first included. Default 5. */
  maxAttempts?: number;
  /** Delay before the first retry; doubled for each further one. Default 1000 ms. */
  initialDelayMs?: number;
  /** Cap on one delay. Default 30 s. */
  maxDelayMs?: number;
  /** Time limit of one attempt. Default 10 s. */
  timeoutMs?: number;
}

export const webhookDeliveries = new Counter({
  name: "pamgate_webhook_deliveries_total",
  help: "Approval webhook deliveries by outcome (delivered, failed after the last attempt or refused, abandoned at shutdown)",
  labelNames: ["outcome"] as const,
  registers: [registry],
});

/** Where an error came from, without the URL's path or query (which may be the secret). */
function redact(url: URL): string {
  return `${url.origin}/…`;
}

const RETRYABLE = new Set([408, 425, 429]);

type Attempt = { ok: true } | { ok: false; retryable: boolean; retryAfterMs: number; message: string };

export class WebhookNotifier {
  private readonly url: URL;
  private readonly headers: Record<string, string>;
  private readonly maxAttempts: number;
  private readonly initialDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly timeoutMs: number;
  private readonly log: Logger;
  private readonly inFlight = new Set<Promise<void>>();
  private readonly closing = new AbortController();

  constructor(config: WebhookConfig, options: { log?: Logger } = {}) {
    let url: URL;
    try {
      url = new URL(config.url);
    } catch {
      throw new Error("webhook: url is not a valid URL");
    }
    if (url.protocol !== "https:" && url.protocol !== "http:") {
      throw new Error(`webhook: url must be http(s), not ${url.protocol}`);
    }
    const maxAttempts = config.maxAttempts ?? 5;
    if (!Number.isInteger(maxAttempts) || maxAttempts < 1 || maxAttempts > 20) {
      throw new Error("webhook: maxAttempts must be an integer from 1 to 20");
    }
    this.url = url;
    this.headers = { ...config.headers };
    this.maxAttempts = maxAttempts;
    this.initialDelayMs = config.initialDelayMs ?? 1000;
    this.maxDelayMs = config.maxDelayMs ?? 30_000;
    this.timeoutMs = config.timeoutMs ?? 10_000;
    this.log = options.log ?? silentLogger;
  }

  /** Starts delivering the notice of a new request in the background. Never throws, never waits. */
  notify(request: ApprovalRequest): void {
    if (this.closing.signal.aborted) return;
    let payload: string;
    try {
      payload = JSON.stringify(slackMessage(request));
    } catch (err) {
      this.log.error(
        { approval_id: request.id, err: (err as Error).message },
        "webhook: cannot build the message",
      );
      return;
    }
    const delivery = this.deliver(request.id, payload).finally(() => this.inFlight.delete(delivery));
    this.inFlight.add(delivery);
  }

  /** Resolves when every delivery started so far has finished (delivered, failed or abandoned). */
  async idle(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.all([...this.inFlight]);
  }

  /** Abandons deliveries still retrying (logged) and accepts no more. */
  async close(): Promise<void> {
    this.closing.abort();
    await this.idle();
  }

  private async deliver(id: string, payload: string): Promise<void> {
    const target = redact(this.url);
    for (let attempt = 1; ; attempt++) {
      const result = await this.attempt(payload);
      if (result.ok) {
        webhookDeliveries.inc({ outcome: "delivered" });
        this.log.info({ approval_id: id, webhook: target, attempt }, "webhook: approval request announced");
        return;
      }
      if (this.closing.signal.aborted) return this.abandon(id, target, attempt);
      if (!result.retryable || attempt >= this.maxAttempts) {
        webhookDeliveries.inc({ outcome: "failed" });
        const why = result.retryable ? `${result.message} (after ${attempt} attempts)` : result.message;
        this.log.error(
          { approval_id: id, webhook: target, attempt, err: result.message },
          `webhook: giving up on announcing approval request ${id}: ${why}`,
        );
        return;
      }
      // Exponential backoff with jitter (half to all of it); a Retry-After asks for at least that long.
      const backoff = Math.min(this.maxDelayMs, this.initialDelayMs * 2 ** (attempt - 1));
      const delay = Math.min(
        this.maxDelayMs,
        Math.max(result.retryAfterMs, backoff * (0.5 + Math.random() / 2)),
      );
      this.log.warn(
        { approval_id: id, webhook: target, attempt, err: result.message, retry_in_ms: Math.round(delay) },
        "webhook: attempt failed; retrying",
      );
      if (!(await this.sleep(delay))) return this.abandon(id, target, attempt);
    }
  }

  /** One POST. */
  private async attempt(payload: string): Promise<Attempt> {
    const signal = AbortSignal.any([this.closing.signal, AbortSignal.timeout(this.timeoutMs)]);
    let response: Response;
    try {
      response = await fetch(this.url, {
        method: "POST",
        headers: { ...this.headers, "content-type": "application/json; charset=utf-8" },
        body: payload,
        signal,
        redirect: "error",
      });
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      const why =
        (err as Error).name === "TimeoutError"
          ? `no answer within ${this.timeoutMs} ms`
          : (cause?.code ?? cause?.message ?? (err as Error).message);
      return { ok: false, retryable: true, retryAfterMs: 0, message: `POST failed: ${why}` };
    }
    await response.arrayBuffer().catch(() => undefined); // drain, so the connection can be reused
    if (response.ok) return { ok: true };
    const message = `the receiver answered ${response.status} ${response.statusText}`.trim();
    const retryable = response.status >= 500 || RETRYABLE.has(response.status);
    const retryAfter = Number(response.headers.get("retry-after"));
    return {
      ok: false,
      retryable,
      retryAfterMs: Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter * 1000 : 0,
      message: retryable ? message : `${message} (not retried)`,
    };
  }

  /** Waits `ms`; false when the notifier was closed meanwhile. */
  private sleep(ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      if (this.closing.signal.aborted) return resolve(false);
      const onAbort = () => {
        clearTimeout(timer);
        resolve(false);
      };
      const timer = setTimeout(() => {
        this.closing.signal.removeEventListener("abort", onAbort);
        resolve(true);
      }, ms);
      this.closing.signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  private abandon(id: string, target: string, attempt: number): void {
    webhookDeliveries.inc({ outcome: "abandoned" });
    this.log.warn({ approval_id: id, webhook: target, attempt }, "webhook: delivery abandoned at shutdown");
  }
}

// Slack's limits: 3000 characters in a section's text, 2000 in a field, 150 in a header.
const SECTION_MAX = 3000;
const FIELD_MAX = 2000;

function cut(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** Slack mrkdwn treats &, < and > as control characters; everything user-supplied is escaped. */
function esc(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

/** A code block that the command itself cannot close early. */
function codeBlock(text: string, max: number): string {
  const body = esc(text).replace(/```/g, "`\u200b``");
  return `\`\`\`${cut(body, max - 6)}\`\`\``;
}

/** The message announcing a new approval request: Slack Block Kit, with `text` as the notification fallback. */
export function slackMessage(request: ApprovalRequest): { text: string; blocks: unknown[] } {
  const who = describeChain(request.requester);
  const email = request.requester.email ? ` (${request.requester.email})` : "";
  const { groups, min_approvals: needed, ttl_s: ttl } = request.rule;
  const firstLine = request.command.text.split("\n", 1)[0] ?? "";
  const text = cut(
    `Approval needed: ${who} wants to run \`${cut(firstLine, 120)}\` on ${request.resource} (${request.protocol}). ` +
      `Approve with: pamgate approvals approve ${request.id}`,
    FIELD_MAX,
  );
  const reasons = request.reasons.map((r) => `• [${esc(r.code)}] ${esc(r.message)}`).join("\n");
  return {
    text: esc(text),
    blocks: [
      { type: "header", text: { type: "plain_text", text: "Approval needed", emoji: false } },
      {
        type: "section",
        fields: [
          { type: "mrkdwn", text: cut(`*Requester*\n${esc(who + email)}`, FIELD_MAX) },
          {
            type: "mrkdwn",
            text: cut(`*Resource*\n${esc(request.resource)} (${request.protocol})`, FIELD_MAX),
          },
          {
            type: "mrkdwn",
            text: cut(
              `*Approvers*\n${esc(groups.join(", "))}: ${needed} approval${needed === 1 ? "" : "s"} needed`,
              FIELD_MAX,
            ),
          },
          {
            type: "mrkdwn",
            text: `*Decide before*\n${request.expires_at.toISOString()}\n(grant lasts ${ttl} s)`,
          },
        ],
      },
      { type: "section", text: { type: "mrkdwn", text: codeBlock(request.command.text, SECTION_MAX) } },
      ...(reasons ? [{ type: "section", text: { type: "mrkdwn", text: cut(reasons, SECTION_MAX) } }] : []),
      {
        type: "context",
        elements: [
          {
            type: "mrkdwn",
            text:
              `Approve: \`pamgate approvals approve ${request.id}\` · ` +
              `Deny: \`pamgate approvals deny ${request.id} --comment "…"\``,
          },
        ],
      },
    ],
  };
}
