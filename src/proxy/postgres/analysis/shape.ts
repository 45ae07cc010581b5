// The "shape" of a statement: its text with plain numeric and string literals replaced by `?`.
//
// Analysis does not depend on literal values (the fingerprint ignores them, and tables, columns, functions and
// statement kind are the same), so statements that differ only in literals — `… WHERE aid = 17` and
// `… WHERE aid = 42`, as pgbench and hand-written clients send them — can share one cached analysis instead of
// being parsed each time. The lexer is deliberately conservative: anything it does not fully understand (a
// backslash, an E'' / B'' / X'' / U&'' string, dollar quoting, a double-quoted identifier containing odd
// characters is fine, but an unterminated quote is not) makes it give up and return null, and the statement is
// analyzed by the parser as it is. Two statements with the same shape therefore have the same tokens apart from
// literal values.

const isDigit = (c: number) => c >= 48 && c <= 57;
/** Characters that continue an identifier or keyword (so a digit after them is not a number). */
const isIdentChar = (c: number) =>
  (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || isDigit(c) || c === 95 || c === 36 || c > 127;

export function literalShape(sql: string): string | null {
  let out = "";
  let last = 0;
  let replaced = false;
  const n = sql.length;
  let i = 0;
  while (i < n) {
    const c = sql.charCodeAt(i);
    if (c === 92) return null; // backslash anywhere: escape rules vary with settings
    if (c === 39) {
      // 'string' with '' escapes; a prefix letter (E'', B'', X'', N'', U&'') means special rules: give up.
      const prev = i > 0 ? sql.charCodeAt(i - 1) : 32;
      if (isIdentChar(prev) || prev === 38) return null;
      let j = i + 1;
      for (;;) {
        if (j >= n) return null;
        const d = sql.charCodeAt(j);
        if (d === 92) return null;
        if (d === 39) {
          if (j + 1 < n && sql.charCodeAt(j + 1) === 39) {
            j += 2;
            continue;
          }
          break;
        }
        j++;
      }
      out += `${sql.slice(last, i)}?`;
      last = j + 1;
      i = j + 1;
      replaced = true;
      continue;
    }
    if (c === 34) {
      // "quoted identifier": copied as is.
      const end = sql.indexOf('"', i + 1);
      if (end < 0) return null;
      i = end + 1;
      continue;
    }
    if (c === 36) {
      // $1 parameters are kept; $tag$ dollar quoting is not handled.
      let j = i + 1;
      while (j < n && isDigit(sql.charCodeAt(j))) j++;
      if (j === i + 1) return null;
      i = j;
      continue;
    }
    if (c === 45 && sql.charCodeAt(i + 1) === 45) {
      const end = sql.indexOf("\n", i);
      i = end < 0 ? n : end + 1;
      continue;
    }
    if (c === 47 && sql.charCodeAt(i + 1) === 42) return null; // block comments nest: leave them to the parser
    if (isDigit(c) || (c === 46 && isDigit(sql.charCodeAt(i + 1)))) {
      const prev = i > 0 ? sql.charCodeAt(i - 1) : 32;
      if (isIdentChar(prev)) {
        i++;
        continue;
      }
      let j = i;
      while (j < n && (isDigit(sql.charCodeAt(j)) || sql.charCodeAt(j) === 46)) j++;
      const e = sql.charCodeAt(j);
      if (e === 101 || e === 69) {
        j++;
        if (sql.charCodeAt(j) === 43 || sql.charCodeAt(j) === 45) j++;
        while (j < n && isDigit(sql.charCodeAt(j))) j++;
      }
      // 0x1F, 1_000 and the like, or a number running into a name: not a plain literal.
      if (j < n && isIdentChar(sql.charCodeAt(j))) return null;
      out += `${sql.slice(last, i)}?`;
      last = j;
      i = j;
      replaced = true;
      continue;
    }
    i++;
  }
  return replaced ? out + sql.slice(last) : null;
}
