// Statement analysis for the PostgreSQL gateway: SQL text → one policy `command` per statement
// (docs/policy-contract.md, "command for postgres"), with the real PostgreSQL 18 parser (libpg-query, wasm).
//
//   await initAnalyzer();                 // once, at start: loads the parser
//   const a = analyzeSql(sql, schema);    // synchronous, cached by the exact text; schema: the pinned search_path
//   if (!a.ok) → ErrorResponse (a.error, a.position); nothing is forwarded
//   for (const s of a.statements) decide(s.command) … s.text, s.masking are for the proxy only
//
// What the parser rejects is never analyzed further: `ok: false` with the parser's message and position. So is
// what must not reach the parser: text with a NUL character (the parser would silently stop there and analyze
// only the part before it), text that is not well-formed UTF-16, text longer than the configured limit, and
// statements nested so deeply that serializing their parse tree would overflow the stack inside the wasm
// module (see guard.ts). An empty string or one holding only whitespace, comments and semicolons is
// `ok: true` with no statements — PostgreSQL answers it with EmptyQueryResponse, and so should the proxy.
//
// How the fields are derived is described beside the code, in this folder: the walk over a parse tree in
// walk.ts, which dispatches to scope.ts (names and their qualification: unqualified names are reported in the
// schema the proxy pins the upstream session's search_path to, `public` by default, see ../upstream.ts), dml.ts
// (read vs write, masking) and utility.ts; statement kinds and categories in kinds.ts; the fingerprint in
// fingerprint.ts.
//
// Results are cached by query text and schema (bounded; least recently used entries go first) and shared: the
// objects returned are frozen — treat them as immutable.
import { hasSqlDetails, loadModule, parseSync } from "libpg-query";
import type { Reason } from "../../../decision/contract.js";
import { DYNAMIC_SQL, SIDE_EFFECTS } from "./builtins.js";
import { GenerationalCache } from "./cache.js";
import type { CopyCommand } from "./dml.js";
import { fingerprintOf } from "./fingerprint.js";
import { DEFAULT_MAX_DEPTH, depthExceededAt } from "./guard.js";
import type { Category } from "./kinds.js";
import { literalShape } from "./shape.js";
import { walkStatement } from "./walk.js";

export type { CopyCommand } from "./dml.js";
export type { Category } from "./kinds.js";

/**
 * The policy input's `command` for one statement: exactly the fields of the policy contract. (A type alias, not
 * an interface, so that it is assignable to `Record<string, unknown>`.)
 */
export type StatementCommand = {
  /** select, insert, update, delete, merge, copy, create_table, alter_table, drop, truncate, grant, … */
  statement: string;
  category: Category;
  /**
   * schema.table; unqualified names are reported in the session's schema (`public` by default), where its pinned
   * search_path resolves them (and an unqualified `pg_` name in pg_catalog too, see scope.ts).
   */
  tables: { read: string[]; write: string[] };
  /** schema.table.column when the column's relation is known from the text, else table.column or column. */
  columns: string[];
  /** Lower case, schema dropped. */
  functions: string[];
  /**
   * Functions called that change state (builtins.ts SIDE_EFFECTS by name; after catalog resolution also the
   * volatile user-defined functions, schema-qualified). A read that calls one has category `write`.
   */
  side_effects: string[];
  /** Functions called that run SQL given as a string or read tables named by an argument (builtins.ts). */
  dynamic_sql: string[];
  /** Views and materialized views read, schema-qualified, through views too (filled by catalog resolution). */
  views: string[];
  /** User-defined functions and procedures called, directly or by a view (filled by catalog resolution). */
  user_functions: UserFunction[];
  /** false only when an UPDATE or DELETE (also one inside a CTE, EXPLAIN ANALYZE, PREPARE …) has no WHERE. */
  has_where: boolean;
  /** COPY only. */
  copy?: CopyCommand;
  /** 16 hex digits, the same for the same statement with other literals (fingerprint.ts). */
  fingerprint: string;
  /** The highest $n used: the bind parameters the extended protocol must supply. */
  param_count: number;
};

/** A function the gateway cannot see into: not PostgreSQL's own (an OID at or above FirstNormalObjectId). */
export type UserFunction = {
  /** schema.name */
  name: string;
  volatility: "immutable" | "stable" | "volatile";
  language: string;
  /** function, procedure, aggregate or window */
  kind: string;
  security_definer: boolean;
};

/** Where column values go, for masking (see scope.ts and dml.ts); entries are written like `columns` entries. */
export interface Masking {
  /** Output as themselves (SELECT/RETURNING target lists, COPY table TO): maskable in the result. */
  bare: string[];
  /** Output through something that cannot be masked (an expression, UNION, COPY (query), …) or stored elsewhere. */
  computed: string[];
}

/** One statement: the policy's `command`, plus what only the proxy needs (never put into the policy input). */
export interface AnalyzedStatement {
  command: StatementCommand;
  /**
   * The statement's own text as sent, sliced by the parser's statement location and length: from its first
   * token (comments before it are not included) to the end of the string or the character before its `;`.
   */
  text: string;
  masking: Masking;
  /**
   * Functions as called, each the name's parts as written (["public", "f"], or ["f"] unqualified): what catalog
   * resolution looks up.
   */
  calls: string[][];
  /** Operators as written (["="], ["public", "==="]): a user-defined operator calls its function. */
  operators: string[][];
  /**
   * Set when the proxy must refuse the statement whatever the policy says, because running it would make this
   * analysis wrong for later statements (pg.search_path_change: it would change what unqualified names mean).
   */
  refusal?: Reason;
}

export type Analysis =
  | { ok: true; statements: AnalyzedStatement[] }
  | {
      ok: false;
      /** The parser's message with the position, e.g. `syntax error at or near "SELEC" (position 1)`. */
      error: string;
      /** 1-based character position in the query text (ErrorResponse field P), when there is one. */
      position?: number;
      /**
       * Set when the text was refused for a limit, not by the parser: `depth` (nested deeper than maxDepth),
       * `length` (longer than maxQueryLength). The proxy gives these their own reason codes.
       */
      limit?: "depth" | "length";
    };

export interface AnalyzerOptions {
  /** Longer query text is rejected without parsing. Default 1 MiB (1,048,576 characters). */
  maxQueryLength?: number;
  /** The bound of the nesting-depth estimate (guard.ts). Default 1,000. */
  maxDepth?: number;
  /** Cache bound: entries. Default 10,000. */
  cacheEntries?: number;
  /** Cache bound: characters of query text held. Default 16 Mi (texts over half of it are not cached). */
  cacheChars?: number;
}

const DEFAULTS = {
  maxQueryLength: 1024 * 1024,
  maxDepth: DEFAULT_MAX_DEPTH,
  cacheEntries: 10_000,
  cacheChars: 16 * 1024 * 1024,
};

/** The schema unqualified relation names resolve in when the caller names none. */
export const DEFAULT_SCHEMA = "public";

let options = { ...DEFAULTS };
/** Analyses of single statements by their literal shape, with the length of what precedes and follows them. */
type ShapeEntry = { stmt: AnalyzedStatement; lead: number; trail: number };
/** What is kept for one schema: an analysis depends on the schema unqualified names resolve in. */
interface SchemaCaches {
  texts: GenerationalCache<Analysis>;
  shapes: GenerationalCache<ShapeEntry>;
  refusal: Reason;
}
/**
 * By schema: one pair of bounded caches for each schema analyzed with (in the gateway: each resource's configured
 * schema, so a handful), so that no analysis is ever answered for another schema.
 */
let caches = new Map<string, SchemaCaches>();
let loaded = false;
/** Set when the parser failed in a way that may have corrupted the wasm module: every analysis fails closed. */
let broken: string | null = null;

/** Loads the parser (idempotent) and applies options; call once before `analyzeSql`. Clears the cache. */
export async function initAnalyzer(opts: AnalyzerOptions = {}): Promise<void> {
  await loadModule();
  loaded = true;
  options = { ...DEFAULTS, ...stripUndefined(opts) };
  caches = new Map();
}

function cachesFor(schema: string): SchemaCaches {
  const known = caches.get(schema);
  if (known) return known;
  if (schema.length === 0 || schema.includes("\0"))
    throw new Error(`analyzeSql: not a schema name: ${schema}`);
  const made: SchemaCaches = {
    texts: new GenerationalCache<Analysis>(options.cacheEntries, options.cacheChars),
    shapes: new GenerationalCache<ShapeEntry>(options.cacheEntries, options.cacheChars),
    refusal: searchPathRefusal(schema),
  };
  caches.set(schema, made);
  return made;
}

function stripUndefined(o: AnalyzerOptions): Partial<typeof DEFAULTS> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
}

/** Cache size, for metrics. */
export function analyzerCacheStats(): { entries: number; chars: number } {
  let entries = 0;
  let chars = 0;
  for (const c of caches.values()) {
    entries += c.texts.size;
    chars += c.texts.chars;
  }
  return { entries, chars };
}

/** Non-null after an internal parser failure: the reason. The gateway should be restarted. */
export function analyzerFailure(): string | null {
  return broken;
}

/**
 * Analyzes a query string (simple protocol: one or more statements; extended protocol: one). Synchronous; the
 * result is cached by the exact text (per schema) and must not be modified.
 *
 * @param schema where unqualified relation names resolve: the one schema the session's search_path is pinned
 *   to (the resource's `upstream.search_path`, see ../upstream.ts). Default `public`.
 */
export function analyzeSql(sql: string, schema: string = DEFAULT_SCHEMA): Analysis {
  const { texts: cache, shapes, refusal } = cachesFor(schema);
  const hit = cache.get(sql);
  if (hit !== undefined) return hit;
  if (!loaded) throw new Error("analyzeSql: call initAnalyzer() first");
  // A single statement that differs from one analyzed before only in literal values reuses that analysis,
  // with its own text (see shape.ts).
  const shape = broken ? null : literalShape(sql);
  if (shape !== null) {
    const same = shapes.get(shape);
    if (same) {
      const text = sql.slice(same.lead, sql.length - same.trail);
      const statement = Object.freeze({ ...same.stmt, text });
      const analysis: Analysis = Object.freeze({
        ok: true as const,
        statements: Object.freeze([statement]) as AnalyzedStatement[],
      });
      cache.set(sql, analysis);
      return analysis;
    }
  }
  const analysis = deepFreeze(analyzeUncached(sql, schema, refusal));
  // an analysis made unreliable by a parser failure is not kept
  if (!broken) {
    cache.set(sql, analysis);
    const only = analysis.ok && analysis.statements.length === 1 ? analysis.statements[0] : undefined;
    if (shape !== null && only && shapeSafe(only)) {
      // What surrounds the statement (whitespace, comments, the `;`) holds no literal, so it is the same
      // length in every statement of this shape.
      const lead = sql.indexOf(only.text);
      shapes.set(shape, { stmt: only, lead, trail: sql.length - lead - only.text.length });
    }
  }
  return analysis;
}

/**
 * Statement kinds whose literals are only values, never structure (unlike COPY's PROGRAM 'command' or a
 * utility statement's file name), so their analysis and fingerprint are the same for every literal value.
 */
const SHAPE_SAFE = new Set(["select", "insert", "update", "delete"]);

/**
 * Whether every statement of this one's literal shape has the same analysis. Not when a literal decides what the
 * statement does: set_config('work_mem', …) and set_config('search_path', …) share a shape.
 */
function shapeSafe(s: AnalyzedStatement): boolean {
  return (
    SHAPE_SAFE.has(s.command.statement) && !s.command.copy && !s.command.functions.includes("set_config")
  );
}

/** The reason a statement that would change search_path is refused with (AnalyzedStatement.refusal). */
function searchPathRefusal(schema: string): Reason {
  return {
    code: "pg.search_path_change",
    message: `pamgate pins search_path to ${schema} so that policy sees the tables the server reads; schema-qualify names in other schemas instead of changing search_path`,
  };
}

function fail(error: string, position?: number, limit?: "depth" | "length"): Analysis {
  const out: Analysis = position === undefined ? { ok: false, error } : { ok: false, error, position };
  if (limit) out.limit = limit;
  return out;
}

function analyzeUncached(sql: string, schema: string, refusal: Reason): Analysis {
  if (broken) return fail(broken);
  if (sql.length === 0) return { ok: true, statements: [] };
  if (sql.length > options.maxQueryLength) {
    return fail(
      `the statement text is too long to analyze: ${sql.length} characters, the limit is ${options.maxQueryLength}`,
      undefined,
      "length",
    );
  }
  const nul = sql.indexOf("\0");
  if (nul >= 0) {
    const position = codePointPosition(sql, nul);
    return fail(`the statement text contains a NUL character (position ${position})`, position);
  }
  if (!isWellFormed(sql)) return fail("the statement text is not valid Unicode (a lone surrogate)");
  const deep = depthExceededAt(sql, options.maxDepth);
  if (deep >= 0) {
    const position = codePointPosition(sql, deep);
    return fail(
      `the statement is nested too deeply to analyze safely (position ${position}); split or simplify it`,
      position,
      "depth",
    );
  }

  let tree: { stmts?: Array<{ stmt?: Record<string, unknown>; stmt_location?: number; stmt_len?: number }> };
  try {
    tree = parseSync(sql) as typeof tree;
  } catch (err) {
    return parserError(err);
  }

  const raw = tree.stmts ?? [];
  const texts = statementTexts(sql, raw);
  const statements: AnalyzedStatement[] = [];
  for (let i = 0; i < raw.length; i++) {
    const stmt = raw[i]?.stmt;
    const text = texts[i] as string;
    if (!stmt) continue;
    let w: ReturnType<typeof walkStatement>;
    try {
      w = walkStatement(stmt, schema);
    } catch (err) {
      if (err instanceof RangeError)
        return fail("the statement is nested too deeply to analyze", undefined, "depth");
      throw err;
    }
    let fingerprint: string;
    try {
      fingerprint = fingerprintOf(stmt);
    } catch (err) {
      if (err instanceof RangeError)
        return fail("the statement is nested too deeply to analyze", undefined, "depth");
      throw err;
    }
    const sideEffects = w.functions.filter((f) => SIDE_EFFECTS.has(f));
    const command: StatementCommand = {
      statement: w.statement,
      category: w.category === "read" && sideEffects.length > 0 ? "write" : w.category,
      tables: { read: w.read, write: w.write },
      columns: w.columns,
      functions: w.functions,
      side_effects: sideEffects,
      dynamic_sql: w.functions.filter((f) => DYNAMIC_SQL.has(f)),
      views: [],
      user_functions: [],
      has_where: w.hasWhere,
      fingerprint,
      param_count: w.paramCount,
    };
    if (w.copy) command.copy = w.copy;
    const analyzed: AnalyzedStatement = {
      command,
      text,
      masking: { bare: w.bare, computed: w.computed },
      calls: w.calls,
      operators: w.operators,
    };
    if (w.changesSearchPath) analyzed.refusal = refusal;
    statements.push(analyzed);
  }
  return { ok: true, statements };
}

/** A parser exception: its message and position, or — for anything but a SQL error — a failed-closed analyzer. */
function parserError(err: unknown): Analysis {
  if (hasSqlDetails(err)) {
    const position = (err.sqlDetails?.cursorPosition ?? 0) + 1;
    return fail(`${err.message} (position ${position})`, position);
  }
  if (err instanceof Error && err.name === "SqlError") return fail(err.message);
  // A RangeError or a wasm RuntimeError from inside the module leaves its stack pointer and memory in an unknown
  // state: no later result could be trusted.
  broken = `the SQL parser failed internally (${err instanceof Error ? err.message : String(err)}); pamgate must be restarted`;
  return fail(broken);
}

/**
 * Each statement's own text. stmt_location/stmt_len are UTF-8 byte offsets; stmt_len 0 means "to the end". For
 * ASCII text (the common case) they are string indices.
 */
function statementTexts(sql: string, raw: Array<{ stmt_location?: number; stmt_len?: number }>): string[] {
  const ascii = Buffer.byteLength(sql, "utf8") === sql.length;
  const offsets: number[] = [];
  for (const r of raw) {
    const start = r.stmt_location ?? 0;
    offsets.push(start, r.stmt_len ? start + r.stmt_len : -1);
  }
  const chars = ascii ? offsets : byteOffsetsToIndices(sql, offsets);
  const texts: string[] = [];
  for (let i = 0; i < raw.length; i++) {
    const end = chars[2 * i + 1] as number;
    texts.push(sql.slice(chars[2 * i] as number, end < 0 ? sql.length : end));
  }
  return texts;
}

/** UTF-8 byte offsets (-1 kept as is) → UTF-16 string indices, in one pass. */
function byteOffsetsToIndices(sql: string, offsets: number[]): number[] {
  const wanted = [...new Set(offsets.filter((o) => o >= 0))].sort((a, b) => a - b);
  const map = new Map<number, number>();
  let bytes = 0;
  let w = 0;
  for (let i = 0; i <= sql.length && w < wanted.length; ) {
    while (w < wanted.length && (wanted[w] as number) <= bytes) map.set(wanted[w++] as number, i);
    if (i === sql.length) break;
    const c = sql.charCodeAt(i);
    if (c < 0x80) {
      bytes += 1;
      i += 1;
    } else if (c < 0x800) {
      bytes += 2;
      i += 1;
    } else if (c >= 0xd800 && c <= 0xdbff) {
      bytes += 4;
      i += 2;
    } else {
      bytes += 3;
      i += 1;
    }
  }
  return offsets.map((o) => (o < 0 ? -1 : (map.get(o) ?? sql.length)));
}

/** The 1-based character (code point) position of a string index, as PostgreSQL counts positions. */
function codePointPosition(sql: string, index: number): number {
  let pos = 1;
  for (let i = 0; i < index; i++) {
    const c = sql.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) i++;
    pos++;
  }
  return pos;
}

function isWellFormed(s: string): boolean {
  const f = (s as { isWellFormed?: () => boolean }).isWellFormed;
  if (f) return f.call(s);
  return !/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(s);
}

/** Freezes an analysis and everything in it (plain objects and arrays only). */
function deepFreeze<T>(o: T): T {
  if (typeof o !== "object" || o === null || Object.isFrozen(o)) return o;
  Object.freeze(o);
  if (Array.isArray(o)) {
    for (const v of o) if (typeof v === "object") deepFreeze(v);
  } else {
    for (const k in o) {
      const v = (o as Record<string, unknown>)[k];
      if (typeof v === "object") deepFreeze(v);
    }
  }
  return o;
}
