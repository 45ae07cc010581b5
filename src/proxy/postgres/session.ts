// One proxied client session after authentication: client messages are decided and forwarded in order,
// upstream responses are streamed back (masked where the verdict says so) with backpressure both ways.
//
// Enforcement never fakes the server's state: to block a statement the proxy substitutes a statement that
// fails on the server (a call of a function that does not exist), so error-skip in the extended protocol and
// the failed-transaction state inside BEGIN … COMMIT are exactly PostgreSQL's own; the proxy only replaces the
// resulting ErrorResponse with the policy's (SQLSTATE 42501 and the reason).
import { randomBytes } from "node:crypto";
import type { Socket } from "node:net";
import type { MaskRule, Reason, Verdict } from "../../decision/contract.js";
import type { OpenSession } from "../../gateway/sessions.js";
import type {
  BatchOutcome,
  CommandPipeline,
  CommandRequest,
  SessionContext,
} from "../../pipeline/pipeline.js";
import { errorText } from "../../util/errors.js";
import type { Logger } from "../../util/log.js";
import { type Analysis, type AnalyzedStatement, analyzeSql } from "./analysis/index.js";
import type { Catalog } from "./catalog.js";
import { maskProblem, withheldError } from "./mask-check.js";
import { Masker, planFor, planForColumns } from "./masking.js";
import { ClientOutput } from "./output.js";
import type { ResolvedStatement, Resolver } from "./resolve.js";
import { type Columns, type Expectation, ExpectationQueue, type MaskContext } from "./responses.js";
import { ResultLog } from "./result-log.js";
import { type StatementTextMode, transcriptText } from "./transcript-text.js";
import {
  BackendType,
  decodeBind,
  decodeErrorFields,
  decodeExecute,
  decodeParse,
  decodeQuery,
  decodeRowDescription,
  decodeTarget,
  type Frame,
  FrameReader,
  type FrameSpan,
  FrontendType,
  newSpan,
  ProtocolError,
  type TxStatus,
  toClient,
  toServer,
} from "./wire.js";

/** The function name whose "does not exist" error marks a statement the proxy blocked on purpose. */
const BLOCK_MARKER = `pamgate_blocked_${randomBytes(6).toString("hex")}`;
const BLOCK_SQL = `SELECT ${BLOCK_MARKER}()`;

/** Pause reading from a side once this much is buffered and not yet processed. */
const HIGH_WATER = 4 * 1024 * 1024;

export interface SessionDeps {
  pipeline: CommandPipeline;
  catalog: Catalog;
  /** Completes each statement's command from the catalog (views, `*`, functions) before the decision. */
  resolver: Resolver;
  masker: Masker;
  log: Logger;
  maxFrame: number;
  /** What the session transcript keeps of each statement and its result (listeners.postgres.transcript). */
  transcript?: { statementText: StatementTextMode; maxRows: number; secrets: readonly string[] };
  /** Where unqualified names resolve: the schema the upstream session's search_path is pinned to (default public). */
  schema?: string;
}

/**
 * What a statement the analysis refused is answered with: the parser's syntax error (42601), or — for the limits
 * checked before the parser — statement_too_complex (54001, as PostgreSQL's "stack depth limit exceeded") or
 * program_limit_exceeded (54000), each with its own reason code.
 */
function unanalyzed(analysis: Extract<Analysis, { ok: false }>): { reason: Reason; sqlstate: string } {
  if (analysis.limit === "depth")
    return {
      reason: { code: "pg.statement_too_deep", message: `pamgate refused the statement: ${analysis.error}` },
      sqlstate: "54001",
    };
  if (analysis.limit === "length")
    return {
      reason: { code: "pg.statement_too_long", message: `pamgate refused the statement: ${analysis.error}` },
      sqlstate: "54000",
    };
  return {
    reason: { code: "pg.parse_error", message: `pamgate cannot parse the statement: ${analysis.error}` },
    sqlstate: "42601",
  };
}

interface PreparedStatement {
  text: string;
  analysis: ReturnType<typeof analyzeSql>;
  columns: Columns | null;
}

export class ProxySession {
  private readonly clientIn: FrameReader;
  private readonly upstreamIn: FrameReader;
  private readonly expect = new ExpectationQueue();
  private readonly statements = new Map<string, PreparedStatement>();
  private readonly portals = new Map<string, { statement: string; columns: Columns | null }>();
  private tx: TxStatus = "I";
  private injected = 0;
  private clientBusy = false;
  private backlogPaused = false;
  private upstreamBusy = false;
  /**
   * Durability `write`: the records of the statements forwarded last are in the OS but not yet on disk. Nothing
   * from the server is passed to the client until they are (results of earlier statements wait too: one fdatasync
   * round at most), so no client sees a result whose record a power loss could take.
   */
  private heldFor: Promise<void> | null = null;
  /** The upstream socket was paused because too much piled up while held. */
  private heldPaused = false;
  /** The plan for DataRows of the result set being streamed (simple protocol) or the current Execute. */
  private resultPlan: ReturnType<typeof planFor> | null = null;
  private copyOutPlan: ReturnType<typeof planFor> | null = null;
  /** A schema change was let through and has not completed (until ReadyForQuery): the catalog cache is stale. */
  private ddlRunning = false;
  private closed = false;
  private readonly abort = new AbortController();
  /** The upstream frame being handled (reused: no object per frame). */
  private readonly upstreamSpan = newSpan();
  private readonly out = new ClientOutput((buf) => this.toClient(buf));
  private readonly ctx: SessionContext;
  /** Each statement's result, for the transcript. */
  private readonly results: ResultLog;

  constructor(
    private readonly client: Socket,
    private readonly upstream: Socket,
    private readonly session: OpenSession,
    private readonly deps: SessionDeps,
  ) {
    this.ctx = session.ctx;
    this.results = new ResultLog((entry) => session.transcript(entry), {
      maxRows: deps.transcript?.maxRows ?? 20,
      secrets: deps.transcript?.secrets,
    });
    this.clientIn = new FrameReader(deps.maxFrame);
    this.clientIn.startup = false;
    this.upstreamIn = new FrameReader(1 << 30);
    this.upstreamIn.startup = false;
  }

  /** Starts proxying; `pending` holds client bytes already read past the authentication phase. */
  start(pending?: Buffer): void {
    this.client.on("data", (c: Buffer) => this.onClientData(c));
    this.upstream.on("data", (c: Buffer) => this.onUpstreamData(c));
    this.client.on("drain", () => this.upstream.resume());
    this.upstream.on("drain", () => this.client.resume());
    const end = (why: string) => () => this.close(why);
    this.client.on("close", end("client closed the connection"));
    // The database going away is told to the client as PostgreSQL would (FATAL, connection failure), not as a
    // bare close the client can only guess about.
    let upstreamError = "";
    const lost = () =>
      this.fatal(
        "08006",
        `pamgate lost its connection to resource "${this.ctx.resource.name}"${upstreamError ? `: ${upstreamError}` : " (the database closed it)"}; reconnect to continue`,
      );
    this.upstream.on("close", lost);
    this.client.on("error", (err) => this.close(`client error: ${err.message}`));
    this.upstream.on("error", (err) => {
      upstreamError = err.message;
      lost();
    });
    if (pending && pending.length > 0) this.onClientData(pending);
  }

  close(why: string): void {
    if (this.closed) return;
    this.closed = true;
    this.abort.abort();
    this.session.end(why);
    this.client.destroy();
    this.upstream.destroy();
  }

  /**
   * Ends the session because the gateway stops (after its drain timeout): FATAL 57P01 admin_shutdown, what
   * PostgreSQL itself sends when its server shuts down, so clients and poolers know to reconnect elsewhere.
   * Frames are only ever queued whole, so the error never lands inside another message.
   */
  shutdown(message = "pamgate is shutting down"): void {
    while (this.client.writableCorked > 0) this.client.uncork();
    this.fatal("57P01", message);
  }

  // --- client → upstream ------------------------------------------------------------------------------------------

  private onClientData(chunk: Buffer): void {
    this.clientIn.push(chunk);
    // While a statement waits (for the audit record, an approval), stop reading once enough has piled up.
    if (this.clientIn.bufferedBytes > HIGH_WATER && !this.backlogPaused) {
      this.backlogPaused = true;
      this.client.pause();
    }
    if (!this.clientBusy) void this.pumpClient();
  }

  private async pumpClient(): Promise<void> {
    this.clientBusy = true;
    try {
      for (;;) {
        if (this.closed) return;
        const frame = this.clientIn.next();
        if (!frame) break;
        await this.onClientFrame(frame);
      }
    } catch (err) {
      if (err instanceof ProtocolError) {
        this.fatal(err.sqlstate, err.message);
      } else {
        this.deps.log.error({ session: this.ctx.id, err: errorText(err) }, "session failed");
        this.fatal("XX000", `pamgate internal error: ${errorText(err)}`);
      }
    } finally {
      this.clientBusy = false;
      if (this.backlogPaused && !this.closed && this.clientIn.bufferedBytes <= HIGH_WATER) {
        this.backlogPaused = false;
        this.client.resume();
      }
    }
  }

  private toUpstream(buf: Buffer): void {
    if (!this.upstream.write(buf)) this.client.pause();
  }

  private async onClientFrame(frame: Frame): Promise<void> {
    switch (frame.type) {
      case FrontendType.query:
        return this.onQuery(frame);
      case FrontendType.parse:
        return this.onParse(frame);
      case FrontendType.bind: {
        const { portal, statement } = decodeBind(frame);
        this.portals.set(portal, { statement, columns: null });
        this.expect.push({ kind: "bind" });
        return this.toUpstream(frame.raw);
      }
      case FrontendType.describe: {
        const { target, name } = decodeTarget(frame);
        this.expect.push(
          target === "S"
            ? { kind: "describe-statement", statement: name }
            : { kind: "describe-portal", portal: name, swallow: false, mask: null },
        );
        return this.toUpstream(frame.raw);
      }
      case FrontendType.execute:
        return this.onExecute(frame);
      case FrontendType.close: {
        const { target, name } = decodeTarget(frame);
        if (target === "S") this.statements.delete(name);
        else this.portals.delete(name);
        this.expect.push({ kind: "close" });
        return this.toUpstream(frame.raw);
      }
      case FrontendType.sync:
        this.expect.push({ kind: "sync" });
        return this.toUpstream(frame.raw);
      case FrontendType.flush:
      case FrontendType.copyData:
      case FrontendType.copyDone:
      case FrontendType.copyFail:
        return this.toUpstream(frame.raw);
      case FrontendType.terminate:
        this.upstream.end(frame.raw);
        this.close("client terminated the session");
        return;
      case FrontendType.functionCall:
        // The fast-path function call bypasses SQL (and so the parser and policy): never allowed.
        return this.blockSimple([
          {
            code: "pg.function_call_protocol",
            message:
              "the fast-path function call protocol is not allowed through pamgate; call the function in SQL",
          },
        ]);
      default:
        throw new ProtocolError(
          `unknown or unexpected message type '${String.fromCharCode(frame.type)}' (0x${frame.type.toString(16)})`,
        );
    }
  }

  private async onQuery(frame: Frame): Promise<void> {
    const sql = decodeQuery(frame);
    const analysis = analyzeSql(sql, this.deps.schema);
    if (!analysis.ok) {
      const refused = unanalyzed(analysis);
      return this.blockSimple([refused.reason], refused.sqlstate);
    }
    const d = await this.decideAll(analysis.statements);
    if ("blocked" in d) return this.blockSimple(d.blocked, d.sqlstate, d.fatal);
    this.results.expect(d.ids);
    this.expect.push({ kind: "query", mask: d.mask });
    this.toUpstream(frame.raw);
  }

  /**
   * Decides every statement of one message, all or nothing (see CommandPipeline.decideBatch): one blocked
   * statement blocks the message and nothing of it runs; the masks of all statements apply to its results. Each
   * statement's mask is checked for enforceability (maskProblem) before anything is recorded.
   */
  private async decideAll(
    analyzed: readonly AnalyzedStatement[],
  ): Promise<
    { mask: MaskContext | null; ids: string[] } | { blocked: Reason[]; sqlstate: string; fatal: boolean }
  > {
    let copyPlan: MaskContext["copyPlan"];
    const statements = await this.resolveAll(analyzed);
    const reqs = statements.map(
      (stmt): CommandRequest => ({
        command: stmt.command,
        text: stmt.text,
        logText: transcriptText(stmt, this.deps.transcript?.statementText, this.deps.transcript?.secrets),
        fingerprint: stmt.command.fingerprint,
        memoKey: stmt.command,
        refusal: stmt.refusal,
        checkMask: async (masks) => {
          const problem = maskProblem(stmt, masks);
          if (!problem && stmt.command.statement === "copy") copyPlan = await this.copyPlanFor(stmt, masks);
          return problem;
        },
      }),
    );
    const batch = await this.deps.pipeline.decideBatch(this.ctx, reqs, {
      signal: this.abort.signal,
      onHold: (id, verdict) => this.tellHeld(id, verdict),
      holdsResults: true,
    });
    if (batch.durable) this.holdResultsUntil(batch.durable);
    this.transcribe(statements, batch);
    if (batch.action !== "block" && statements.some((st) => st.command.category === "ddl"))
      this.ddlRunning = true;
    if (batch.action === "block")
      return { blocked: batch.reasons, sqlstate: batch.fatal ? "28000" : "42501", fatal: batch.fatal };
    const masks = batch.outcomes.flatMap((o) => o.mask);
    const ids = batch.outcomes.map((o) => o.decision.decision_id);
    return { mask: masks.length > 0 ? { masks, plan: null, copyPlan } : null, ids };
  }

  /**
   * Completes each statement from the catalog (resolve.ts). Fails closed: a catalog that cannot be read refuses the
   * statement (pg.catalog_unavailable), and so does a statement that reads objects after a schema change in the
   * same message or one still running in this session, since the catalog it would be resolved against is about to
   * change (pg.catalog_changed).
   */
  private async resolveAll(statements: readonly AnalyzedStatement[]): Promise<ResolvedStatement[]> {
    const out: ResolvedStatement[] = [];
    let schemaChanging = this.ddlRunning;
    for (const stmt of statements) {
      const refuse = (reason: Reason) => out.push({ ...stmt, refusal: stmt.refusal ?? reason });
      if (
        schemaChanging &&
        (stmt.command.tables.read.length > 0 || stmt.calls.length > 0 || stmt.operators.length > 0)
      ) {
        refuse({
          code: "pg.catalog_changed",
          message:
            "this statement reads objects after a schema change in the same message (or one still running), which pamgate cannot check against the changed catalog; send the schema change on its own first",
        });
      } else {
        try {
          out.push(await this.deps.resolver.resolve(stmt));
        } catch (err) {
          refuse({
            code: "pg.catalog_unavailable",
            message: `pamgate could not read the database catalog to check the objects this statement uses (${errorText(err)}); try again`,
          });
        }
      }
      if (stmt.command.category === "ddl") schemaChanging = true;
    }
    return out;
  }

  /** Tells the user, in a NOTICE, that the statement waits for an approval and who can give it. */
  private tellHeld(id: string, verdict: Verdict): void {
    const why = verdict.reasons.map((r) => r.message).join("; ");
    const who = verdict.approval
      ? ` by ${verdict.approval.min_approvals} of [${verdict.approval.groups.join(", ")}]`
      : "";
    this.client.write(
      toClient.noticeResponse({
        code: "01000",
        message: `pamgate: waiting for approval ${id}${who}: ${why}`,
        hint: `an approver runs: pamgate approvals approve ${id}`,
      }),
    );
  }

  private transcribe(statements: readonly AnalyzedStatement[], batch: BatchOutcome): void {
    batch.outcomes.forEach((out, i) => {
      const stmt = statements[i] as AnalyzedStatement;
      this.session.transcript({
        event: "statement",
        decision_id: out.decision.decision_id,
        action: out.action,
        statement: stmt.command.statement,
        text: transcriptText(stmt, this.deps.transcript?.statementText, this.deps.transcript?.secrets),
        fingerprint: stmt.command.fingerprint,
        reasons: out.reasons.map((r) => r.code),
        approval_id: out.approvalId,
      });
    });
  }

  private onParse(frame: Frame): void {
    const { name, query } = decodeParse(frame);
    const analysis = analyzeSql(query, this.deps.schema);
    this.statements.set(name, { text: query, analysis, columns: null });
    if (!analysis.ok) {
      const refused = unanalyzed(analysis);
      this.blockExtended([refused.reason], refused.sqlstate);
      return;
    }
    this.expect.push({ kind: "parse" });
    this.toUpstream(frame.raw);
  }

  private async onExecute(frame: Frame): Promise<void> {
    const { portal } = decodeExecute(frame);
    const p = this.portals.get(portal);
    const stmt = p ? this.statements.get(p.statement) : undefined;
    if (!stmt?.analysis.ok) {
      return this.blockExtended([
        {
          code: "pg.unknown_portal",
          message: `portal "${portal}" was not prepared through pamgate, so it cannot be checked`,
        },
      ]);
    }
    const d = await this.decideAll(stmt.analysis.statements);
    if ("blocked" in d) return this.blockExtended(d.blocked, d.sqlstate, d.fatal);
    this.results.expect(d.ids);
    const mask = d.mask;
    if (mask) {
      // Learn the portal's columns (with the client's result formats) right before it runs, unseen by the client.
      this.expect.push({ kind: "describe-portal", portal, swallow: true, mask });
      this.toUpstream(toServer.describePortal(portal));
      this.expect.push({ kind: "execute", mask });
    } else {
      this.expect.push({ kind: "execute", mask: null });
    }
    this.toUpstream(frame.raw);
  }

  private async copyPlanFor(
    stmt: AnalyzedStatement,
    masks: readonly MaskRule[],
  ): Promise<MaskContext["copyPlan"]> {
    const copy = stmt.command.copy as { direction?: string; table?: string; columns?: string[] } | undefined;
    if (copy?.direction !== "to" || !copy.table) return undefined;
    const all = await this.deps.catalog.tableColumns(copy.table);
    const columns = copy.columns?.length ? copy.columns.map((c) => `${copy.table}.${c}`) : all;
    return planForColumns(columns, masks);
  }

  /** Blocks a simple-protocol message: the server runs a failing statement, the client sees the policy's error. */
  private blockSimple(reasons: Reason[], sqlstate = "42501", fatal = false): void {
    if (fatal) {
      this.fatal(sqlstate, reasons.map((r) => r.message).join("; "));
      return;
    }
    this.expect.push({ kind: "blocked", reasons, sqlstate, simple: true });
    this.toUpstream(toServer.query(BLOCK_SQL));
  }

  /** Blocks an extended-protocol message: a failing Parse takes its place, then the server skips to Sync. */
  private blockExtended(reasons: Reason[], sqlstate = "42501", fatal = false): void {
    if (fatal) {
      this.fatal(sqlstate, reasons.map((r) => r.message).join("; "));
      return;
    }
    this.expect.push({ kind: "blocked", reasons, sqlstate, simple: false });
    this.toUpstream(toServer.parse(`pamgate_blocked_${++this.injected}`, BLOCK_SQL));
  }

  private fatal(sqlstate: string, message: string): void {
    if (this.closed) return;
    this.client.end(toClient.errorResponse({ severity: "FATAL", code: sqlstate, message }));
    this.close(message);
  }

  /** Holds what the server sends until `durable` settles; ends the session if the record cannot be made durable. */
  private holdResultsUntil(durable: Promise<void>): void {
    this.heldFor = durable;
    durable.then(
      () => {
        if (this.heldFor !== durable) return; // a later statement's record holds them now
        this.heldFor = null;
        if (this.heldPaused) {
          this.heldPaused = false;
          this.upstream.resume();
        }
        if (!this.upstreamBusy) void this.pumpUpstream();
      },
      (err: unknown) =>
        this.fatal(
          "58030",
          `pamgate: the audit record of this statement could not be written to disk (${errorText(err)}), so its result is withheld and the session ends; reconnect once the audit trail is available`,
        ),
    );
  }

  // --- upstream → client ------------------------------------------------------------------------------------------
  //
  // A large result is mostly DataRows (or CopyData): those take a fast path that neither builds a Frame nor writes
  // per frame. Every other frame goes through onUpstreamFrame, which tracks expectations; what it returns
  // unchanged is queued in place all the same. `out` coalesces everything into few socket writes (see output.ts).

  private onUpstreamData(chunk: Buffer): void {
    this.upstreamIn.push(chunk);
    if (this.heldFor) {
      if (this.upstreamIn.bufferedBytes > HIGH_WATER && !this.heldPaused) {
        this.heldPaused = true;
        this.upstream.pause();
      }
      return;
    }
    if (!this.upstreamBusy) void this.pumpUpstream();
  }

  private async pumpUpstream(): Promise<void> {
    this.upstreamBusy = true;
    this.client.cork();
    const span = this.upstreamSpan;
    try {
      while (!this.closed && !this.heldFor && this.upstreamIn.nextSpan(span)) {
        if (span.type === BackendType.dataRow) this.forwardDataRow(span);
        else if (span.type === BackendType.copyData) this.forwardCopyData(span);
        else {
          const waiting = this.forwardOther(span);
          if (waiting) await waiting;
        }
      }
    } catch (err) {
      this.out.flush(); // what came before the failure still reaches the client, ahead of the error
      this.deps.log.error({ session: this.ctx.id, err: errorText(err) }, "response processing failed");
      this.fatal("XX000", `pamgate could not process the server's response: ${errorText(err)}`);
    } finally {
      if (this.closed) this.out.discard();
      else this.out.flush();
      this.client.uncork();
      this.upstreamBusy = false;
    }
  }

  /** Writes one buffer to the client; a full socket pauses the upstream until it drains. */
  private toClient(buf: Buffer): void {
    if (!this.client.write(buf)) this.upstream.pause();
  }

  /** A DataRow: masked into the output slab under the current plan, else queued as it is. */
  private forwardDataRow(span: FrameSpan): void {
    const plan = this.resultPlan;
    if (plan) {
      const slab = this.out.reserve(Masker.dataRowRoom(span.end - span.start, plan));
      const n = this.deps.masker.maskDataRowInto(
        span.buf,
        span.start,
        span.end,
        plan,
        slab,
        this.out.slabOffset,
      );
      if (n >= 0) {
        if (this.results.wantsRow) this.results.dataRow(slab, this.out.slabOffset, this.out.slabOffset + n);
        this.out.commit(n);
        return;
      }
    }
    if (this.results.wantsRow) this.results.dataRow(span.buf, span.start, span.end);
    this.out.add(span.buf, span.start, span.end);
  }

  /** COPY … TO STDOUT data: masked into the output slab when the COPY is masked, else queued as it is. */
  private forwardCopyData(span: FrameSpan): void {
    const plan = this.copyOutPlan;
    if (!plan) {
      this.out.add(span.buf, span.start, span.end);
      return;
    }
    const slab = this.out.reserve(Masker.copyDataRoom(span.buf, span.start, span.end, plan));
    this.out.commit(
      this.deps.masker.maskCopyTextInto(span.buf, span.start, span.end, plan, slab, this.out.slabOffset),
    );
  }

  /**
   * Any other frame: expectation tracking decides whether it passes, is replaced, or is swallowed. Returns a
   * promise only when the frame needs the catalog first (a masked RowDescription).
   */
  private forwardOther(span: FrameSpan): Promise<void> | undefined {
    const { buf, start, end } = span; // copied: the span is reused for the next frame
    const frame: Frame = { type: span.type, raw: buf.subarray(start, end), body: 5 };
    const result = this.onUpstreamFrame(frame);
    if (!(result instanceof Promise)) {
      this.queueFrame(buf, start, end, frame.raw, result);
      return undefined;
    }
    // Send what came before while waiting, so nothing written meanwhile (a notice, a fatal error) overtakes it.
    this.out.flush();
    return result.then((r) => this.queueFrame(buf, start, end, frame.raw, r));
  }

  /** Queues what onUpstreamFrame returned for the frame `raw` = `buf[start, end)`. */
  private queueFrame(buf: Buffer, start: number, end: number, raw: Buffer, result: Buffer | null): void {
    // Unchanged, the frame joins the stretch of the chunk it was read from.
    if (result === raw) this.out.add(buf, start, end);
    else if (result) this.out.addBuffer(result);
  }

  /** Returns what to send to the client for one upstream frame (null: nothing; `frame.raw`: the frame as is). */
  private onUpstreamFrame(frame: Frame): Buffer | null | Promise<Buffer | null> {
    const head = this.expect.peek();
    switch (frame.type) {
      case BackendType.notice:
      case BackendType.notification:
      case BackendType.parameterStatus:
        return frame.raw;
      case BackendType.readyForQuery:
        this.tx = String.fromCharCode(frame.raw[5] as number) as TxStatus;
        this.results.sync();
        if (this.ddlRunning) {
          this.ddlRunning = false;
          this.deps.catalog.invalidate();
        }
        this.resultPlan = null;
        this.copyOutPlan = null;
        this.out.release();
        if (head && (head.kind === "sync" || head.kind === "query" || head.kind === "blocked"))
          this.expect.shift();
        return frame.raw;
      case BackendType.errorResponse:
        return this.onError(frame, head);
      case BackendType.parseComplete:
      case BackendType.bindComplete:
      case BackendType.closeComplete:
        this.expect.shift();
        return frame.raw;
      case BackendType.parameterDescription:
        return frame.raw;
      case BackendType.rowDescription:
        return this.onRowDescription(frame, head);
      case BackendType.noData:
        if (head?.kind === "describe-statement" || head?.kind === "describe-portal") {
          this.expect.shift();
          if (head.kind === "describe-portal" && head.swallow) return null;
        }
        return frame.raw;
      case BackendType.commandComplete:
      case BackendType.emptyQuery:
      case BackendType.portalSuspended:
        this.results.complete(
          frame.type === BackendType.commandComplete
            ? frame.raw.toString("utf8", 5, frame.raw.length - 1)
            : frame.type === BackendType.emptyQuery
              ? ""
              : "(portal suspended)",
        );
        this.resultPlan = null;
        this.copyOutPlan = null;
        if (head?.kind === "execute") this.expect.shift();
        return frame.raw;
      case BackendType.copyOut:
        if ((head?.kind === "query" || head?.kind === "execute") && head.mask?.copyPlan) {
          this.copyOutPlan = head.mask.copyPlan;
        }
        return frame.raw;
      default:
        return frame.raw;
    }
  }

  private onError(frame: Frame, head: Expectation | undefined): Buffer {
    this.resultPlan = null;
    this.copyOutPlan = null;
    if (head?.kind === "blocked" && decodeErrorFields(frame).M?.includes(BLOCK_MARKER)) {
      if (!head.simple) {
        this.expect.shift();
        this.expect.skipToSync();
      }
      // simple: the blocked expectation stays until its ReadyForQuery.
      return toClient.errorResponse({
        code: head.sqlstate,
        message: head.reasons.map((r) => r.message).join("; "),
        detail: `pamgate policy: ${head.reasons.map((r) => r.code).join(", ")}`,
      });
    }
    // The error of a masked statement may quote a masked value (a failed cast): it is withheld.
    const masked = head?.kind === "query" || head?.kind === "execute" ? head.mask : null;
    // An error answering Sync itself (the implicit transaction's COMMIT failed, e.g. a deferred constraint) is
    // followed by ReadyForQuery and starts no skip: the Sync keeps its expectation. Shifting it dropped the
    // expectations of the messages pipelined after it, and a masked Query among them was passed unmasked.
    if (head && head.kind !== "query" && head.kind !== "blocked" && head.kind !== "sync") {
      this.expect.shift();
      this.expect.skipToSync();
    }
    const server = decodeErrorFields(frame);
    const sent = masked ? withheldError(server) : null;
    this.results.error(sent?.code ?? server.C ?? "", sent?.message ?? server.M ?? "");
    return sent ? toClient.errorResponse(sent) : frame.raw;
  }

  private onRowDescription(
    frame: Frame,
    head: Expectation | undefined,
  ): Buffer | null | Promise<Buffer | null> {
    const describeOf = head?.kind === "describe-statement" || head?.kind === "describe-portal";
    if (describeOf) this.expect.shift();
    if (head?.kind !== "describe-statement") this.results.rowDescription(decodeRowDescription(frame));
    if (head?.kind === "describe-statement") {
      const s = this.statements.get(head.statement);
      if (s) s.columns = decodeRowDescription(frame);
      return frame.raw;
    }
    const mask = head?.kind === "describe-portal" || head?.kind === "query" ? head.mask : null;
    if (!mask) return frame.raw;
    return this.planMask(frame, mask).then(() => {
      if (head?.kind === "query") this.resultPlan = mask.plan;
      if (head?.kind === "describe-portal") {
        // The following Execute streams DataRows under this plan.
        this.resultPlan = mask.plan;
        if (head.swallow) return null;
      }
      return frame.raw;
    });
  }

  private async planMask(frame: Frame, mask: MaskContext): Promise<void> {
    const fields = decodeRowDescription(frame);
    const origins = await this.deps.catalog.origins(fields);
    mask.plan = planFor(fields, origins, mask.masks);
  }

  get transactionStatus(): TxStatus {
    return this.tx;
  }
}
