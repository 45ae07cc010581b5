// A guard run before the PostgreSQL parser: an upper bound of the parse tree's depth, from one pass over the
// text, without parsing.
//
// Why: libpg-query serializes the parse tree recursively inside its wasm module. A tree a few thousand levels
// deep (`SELECT 1+1+…+1` with ~7,000 operators, ~1,700 nested sub-selects, ~9,000 UNIONs) overflows the stack
// *inside* wasm: the call fails with a RangeError, and the module is left with its stack pointer moved and its
// memory leaked — a few such statements later every parse on the gateway fails with "memory access out of
// bounds". So such a statement must never reach the parser; PostgreSQL itself rejects it too ("stack depth
// limit exceeded"), only at a somewhat higher depth.
//
// The estimate follows the grammar's shapes that create depth:
// - every `(`, `[` and CASE … END opens a level and costs OPEN units (a sub-select level is the most expensive
//   one for the serializer: ~4 times an operator level);
// - inside a level, every operator (a run of operator characters, `::`) and every operator keyword (NOT, IS,
//   LIKE, BETWEEN, IN, COLLATE, AT, …) can nest the expression one level deeper: +1;
// - `,` starts a sibling expression and AND/OR lists are flattened by the parser, so they reset the operator
//   count of the level (AND/OR to 1, their own node) — but UNION/INTERSECT/EXCEPT and JOIN chains are
//   left-deep across commas and ANDs, so they are counted separately and never reset within a level;
// - `;` ends a statement.
// The estimate at a point is the sum over the open levels; the largest value anywhere is compared with the
// limit. String literals (standard, E'', B'', X'', N'', U&''), quoted identifiers, dollar quotes, parameters
// and comments (nested /* */) are skipped exactly as PostgreSQL's scanner does, so a JSON or base64 literal with
// brackets and operators costs nothing, and nothing can hide an operator from the count.

/** Units a nesting level (parenthesis, bracket, CASE) costs. */
const OPEN = 4;

/**
 * The default limit: at most 1,000 chained operators or 250 nested levels. With V8's optimized wasm code the
 * parser fails at about 7,000 chained operators and 1,700 nested sub-selects (measured with libpg-query 18.1
 * after warm-up), so this leaves a margin of 7× for a deeper JavaScript stack at the call site; it also bounds
 * the work a short statement can cause (a 4 KB statement 2,000 levels deep takes ~50 ms to parse and walk).
 * Real statements, even generated ones, stay far below it.
 */
export const DEFAULT_MAX_DEPTH = 1000;

const CHAIN_WORDS = new Set([
  "not",
  "is",
  "isnull",
  "notnull",
  "like",
  "ilike",
  "similar",
  "between",
  "in",
  "collate",
  "at",
  "overlaps",
  "escape",
  "operator",
]);
const STRUCT_WORDS = new Set(["union", "intersect", "except", "join"]);
/** First letters (lower case char codes) of every keyword the estimate looks at. */
const KEYWORD_INITIALS = new Set(
  [...CHAIN_WORDS, ...STRUCT_WORDS, "and", "or", "case", "end", "when", "then", "else"].map((w) =>
    w.charCodeAt(0),
  ),
);

function isIdentStart(c: number): boolean {
  return (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || c === 95 || c >= 128;
}

function isIdentCont(c: number): boolean {
  return isIdentStart(c) || (c >= 48 && c <= 57) || c === 36;
}

/** ~ ! @ # ^ & | ` ? + - * / % < > = */
function isOpChar(c: number): boolean {
  switch (c) {
    case 126:
    case 33:
    case 64:
    case 35:
    case 94:
    case 38:
    case 124:
    case 96:
    case 63:
    case 43:
    case 45:
    case 42:
    case 47:
    case 37:
    case 60:
    case 62:
    case 61:
      return true;
    default:
      return false;
  }
}

/** The index after a quoted token whose opening quote is at i-1; `backslash` for E'' strings. */
function skipQuoted(sql: string, i: number, quote: number, backslash: boolean): number {
  const n = sql.length;
  while (i < n) {
    const c = sql.charCodeAt(i);
    if (backslash && c === 92) {
      i += 2;
      continue;
    }
    if (c === quote) {
      if (sql.charCodeAt(i + 1) === quote) {
        i += 2;
        continue;
      }
      return i + 1;
    }
    i++;
  }
  return n;
}

/**
 * The 0-based index at which the estimated parse-tree depth of `sql` exceeds `limit`, or -1 when it never does.
 * (Unterminated strings or comments end the scan: the parser rejects them with its own error.)
 */
export function depthExceededAt(sql: string, limit: number = DEFAULT_MAX_DEPTH): number {
  const n = sql.length;
  // Per open level: the operator count since the last reset, the UNION/JOIN count, whether CASE opened it.
  const expr: number[] = [0];
  const chain: number[] = [0];
  const isCase: boolean[] = [false];
  let top = 0;
  let sum = 0;
  let i = 0;

  while (i < n) {
    const c = sql.charCodeAt(i);
    if (c <= 32) {
      i++;
      continue;
    }
    const next = sql.charCodeAt(i + 1);
    // -- comment to the end of the line
    if (c === 45 && next === 45) {
      i += 2;
      while (i < n) {
        const d = sql.charCodeAt(i);
        if (d === 10 || d === 13) break;
        i++;
      }
      continue;
    }
    // /* comment */, nested
    if (c === 47 && next === 42) {
      let nest = 1;
      i += 2;
      while (i < n && nest > 0) {
        const d = sql.charCodeAt(i);
        if (d === 47 && sql.charCodeAt(i + 1) === 42) {
          nest++;
          i += 2;
        } else if (d === 42 && sql.charCodeAt(i + 1) === 47) {
          nest--;
          i += 2;
        } else i++;
      }
      continue;
    }
    if (c === 39 || c === 34) {
      i = skipQuoted(sql, i + 1, c, false);
      continue;
    }
    if (c === 36) {
      // $1 parameter, or a $tag$ … $tag$ dollar quote (the tag cannot start with a digit)
      if (next >= 48 && next <= 57) {
        i += 2;
        while (i < n && sql.charCodeAt(i) >= 48 && sql.charCodeAt(i) <= 57) i++;
        continue;
      }
      let j = i + 1;
      while (j < n && isIdentCont(sql.charCodeAt(j)) && sql.charCodeAt(j) !== 36) j++;
      if (sql.charCodeAt(j) === 36) {
        const tag = sql.slice(i, j + 1);
        const end = sql.indexOf(tag, j + 1);
        if (end < 0) return -1;
        i = end + tag.length;
        continue;
      }
      i++;
      continue;
    }
    if (isIdentStart(c)) {
      const lower = c | 32;
      // String constants with a one-letter prefix: E'…' (backslash escapes), B'…', X'…', N'…'; U&'…', U&"…".
      if (next === 39) {
        if (lower === 101) {
          i = skipQuoted(sql, i + 2, 39, true);
          continue;
        }
        if (lower === 98 || lower === 120 || lower === 110) {
          i = skipQuoted(sql, i + 2, 39, false);
          continue;
        }
      }
      if (lower === 117 && next === 38) {
        const q = sql.charCodeAt(i + 2);
        if (q === 39 || q === 34) {
          i = skipQuoted(sql, i + 3, q, false);
          continue;
        }
      }
      const start = i;
      i++;
      while (i < n && isIdentCont(sql.charCodeAt(i))) i++;
      const len = i - start;
      if (len < 2 || len > 9 || !KEYWORD_INITIALS.has(lower)) continue;
      const word = sql.slice(start, i).toLowerCase();
      if (CHAIN_WORDS.has(word)) {
        expr[top] = (expr[top] as number) + 1;
        if (++sum > limit) return start;
      } else if (STRUCT_WORDS.has(word)) {
        chain[top] = (chain[top] as number) + 1;
        if (++sum > limit) return start;
      } else if (word === "and" || word === "or") {
        sum += 1 - (expr[top] as number);
        expr[top] = 1;
      } else if (word === "case") {
        top++;
        expr[top] = 0;
        chain[top] = 0;
        isCase[top] = true;
        sum += OPEN;
        if (sum > limit) return start;
      } else if (word === "end") {
        if (top > 0 && isCase[top]) {
          sum -= OPEN + (expr[top] as number) + (chain[top] as number);
          top--;
        }
      } else if ((word === "when" || word === "then" || word === "else") && isCase[top]) {
        sum -= expr[top] as number;
        expr[top] = 0;
      }
      continue;
    }
    if ((c >= 48 && c <= 57) || (c === 46 && next >= 48 && next <= 57)) {
      // a number: digits, '.', exponent, 0x/0o/0b prefixes, '_' separators
      i++;
      while (i < n) {
        const d = sql.charCodeAt(i);
        if (!(isIdentCont(d) || d === 46)) break;
        i++;
      }
      continue;
    }
    switch (c) {
      case 40: // (
      case 91: // [
        top++;
        expr[top] = 0;
        chain[top] = 0;
        isCase[top] = false;
        sum += OPEN;
        if (sum > limit) return i;
        i++;
        continue;
      case 41: // )
      case 93: // ]
        // (a CASE left open inside the parentheses is a syntax error: it closes with them)
        while (top > 0) {
          const kase = isCase[top];
          sum -= OPEN + (expr[top] as number) + (chain[top] as number);
          top--;
          if (!kase) break;
        }
        i++;
        continue;
      case 44: // ,
        sum -= expr[top] as number;
        expr[top] = 0;
        i++;
        continue;
      case 59: // ;
        top = 0;
        expr[0] = 0;
        chain[0] = 0;
        sum = 0;
        i++;
        continue;
      case 58: // : and ::
        i += next === 58 ? 2 : 1;
        expr[top] = (expr[top] as number) + 1;
        if (++sum > limit) return i - 1;
        continue;
    }
    if (isOpChar(c)) {
      const start = i;
      i++;
      while (i < n) {
        const d = sql.charCodeAt(i);
        if (!isOpChar(d)) break;
        const e = sql.charCodeAt(i + 1);
        if ((d === 45 && e === 45) || (d === 47 && e === 42)) break;
        i++;
      }
      expr[top] = (expr[top] as number) + 1;
      if (++sum > limit) return start;
      continue;
    }
    i++;
  }
  return -1;
}
