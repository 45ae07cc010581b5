// PostgreSQL's `pg_node_tree` text (a view's stored query, pg_rewrite.ev_action) read into plain objects, and
// what the gateway needs from a view's query: where each output column comes from.
//
// The format is outfuncs.c's: a node is `{TYPE :field value :field value …}`, a list `( … )`, NULL `<>`, and
// every other token a word (backslash escapes the next character; strings in lists are double-quoted). A
// field's value is one token, node or list, except a few (`:constvalue 4 [ 1 0 0 0 ]`) that are a run of words:
// those are kept as an array of words. The reader never fails silently: anything it cannot read throws, and the
// caller treats the view as opaque.

export type TreeValue = string | null | TreeNode | TreeValue[];
export interface TreeNode {
  type: string;
  fields: Record<string, TreeValue>;
}

const DELIM = new Set(["(", ")", "{", "}"]);

function tokenize(text: string): string[] {
  const tokens: string[] = [];
  let i = 0;
  const n = text.length;
  while (i < n) {
    const c = text[i] as string;
    if (c === " " || c === "\n" || c === "\t" || c === "\r") {
      i++;
    } else if (DELIM.has(c)) {
      tokens.push(c);
      i++;
    } else if (c === '"') {
      let s = "";
      i++;
      while (i < n && text[i] !== '"') {
        if (text[i] === "\\") i++;
        s += text[i] ?? "";
        i++;
      }
      if (i >= n) throw new Error("unterminated string in node tree");
      i++;
      tokens.push(`"${s}`); // a leading quote marks a string token
    } else {
      let s = "";
      while (i < n) {
        const d = text[i] as string;
        if (d === "\\") {
          s += text[i + 1] ?? "";
          i += 2;
          continue;
        }
        if (d === " " || d === "\n" || d === "\t" || d === "\r" || DELIM.has(d)) break;
        s += d;
        i++;
      }
      tokens.push(s);
    }
  }
  return tokens;
}

/** Reads a node tree; throws on anything malformed. */
export function readNodeTree(text: string): TreeValue {
  const tokens = tokenize(text);
  let pos = 0;
  const word = (t: string): string => (t.startsWith('"') ? t.slice(1) : t);
  const value = (): TreeValue => {
    const t = tokens[pos++];
    if (t === undefined) throw new Error("node tree ends early");
    if (t === "{") {
      const type = tokens[pos++];
      if (!type || DELIM.has(type)) throw new Error("node without a type");
      const fields: Record<string, TreeValue> = {};
      while (tokens[pos] !== "}") {
        const f = tokens[pos++];
        if (f === undefined) throw new Error(`node ${type} is not closed`);
        if (!f.startsWith(":")) throw new Error(`expected a field of ${type}, found "${f}"`);
        // a run of words (constvalue's bytes) up to the next field
        const first = value();
        const more: TreeValue[] = [];
        while (tokens[pos] !== undefined && tokens[pos] !== "}" && !tokens[pos]?.startsWith(":"))
          more.push(value());
        fields[f.slice(1)] = more.length > 0 ? [first, ...more] : first;
      }
      pos++;
      return { type, fields };
    }
    if (t === "(") {
      const list: TreeValue[] = [];
      while (tokens[pos] !== ")") {
        if (tokens[pos] === undefined) throw new Error("list is not closed");
        list.push(value());
      }
      pos++;
      return list;
    }
    if (t === ")" || t === "}") throw new Error(`unexpected "${t}"`);
    if (t === "<>") return null;
    return word(t);
  };
  const v = value();
  if (pos !== tokens.length) throw new Error("text after the node tree");
  return v;
}

/** A column of a relation: its table OID and attribute number. */
export type ColumnRef = readonly [oid: number, attnum: number];

/** One output column of a view's query. */
export interface ViewOutput {
  /** Output as a plain column (through sub-selects too): that column, as PostgreSQL attributes it. */
  origin: ColumnRef | null;
  /**
   * For a computed column, the table columns its expression reads; null when they cannot be told (a sub-select,
   * a join alias, a set operation …): then it may be made of anything the view reads.
   */
  sources: ColumnRef[] | null;
}

const isNode = (v: TreeValue | undefined, type?: string): v is TreeNode =>
  typeof v === "object" && v !== null && !Array.isArray(v) && (type === undefined || v.type === type);

/**
 * The output columns of a view (by attribute number, 1-based: index 0 is column 1) from its `_RETURN` rule's
 * ev_action. Throws when the text is not one SELECT query.
 */
export function viewOutputs(evAction: string): ViewOutput[] {
  const tree = readNodeTree(evAction);
  const query = Array.isArray(tree) && tree.length === 1 ? tree[0] : tree;
  if (!isNode(query, "QUERY")) throw new Error("ev_action is not one query");
  const rtable = Array.isArray(query.fields.rtable) ? query.fields.rtable : [];
  const outs: ViewOutput[] = [];
  const targets = Array.isArray(query.fields.targetList) ? query.fields.targetList : [];
  for (const te of targets) {
    if (!isNode(te, "TARGETENTRY")) throw new Error("target list entry is not a TARGETENTRY");
    if (te.fields.resjunk === "true") continue;
    const tbl = Number(te.fields.resorigtbl);
    const col = Number(te.fields.resorigcol);
    const expr = te.fields.expr;
    if (tbl > 0 && col > 0 && isNode(expr, "VAR")) {
      outs.push({ origin: [tbl, col], sources: [[tbl, col]] });
      continue;
    }
    outs.push({ origin: null, sources: varSources(expr, rtable) });
  }
  return outs;
}

/** The table columns the VARs of an expression read, or null when one of them cannot be traced to a table. */
function varSources(expr: TreeValue | undefined, rtable: TreeValue[]): ColumnRef[] | null {
  const out: ColumnRef[] = [];
  let unknown = false;
  const visit = (v: TreeValue | undefined): void => {
    if (unknown || v === null || v === undefined || typeof v === "string") return;
    if (Array.isArray(v)) {
      for (const x of v) visit(x);
      return;
    }
    if (v.type === "SUBLINK" || v.type === "QUERY") {
      unknown = true; // a sub-select reads what its own range table says: not traced
      return;
    }
    if (v.type === "VAR") {
      const rte = rtable[Number(v.fields.varno) - 1];
      const attno = Number(v.fields.varattno);
      if (v.fields.varlevelsup !== "0" || !isNode(rte) || rte.fields.rtekind !== "0" || !(attno > 0)) {
        unknown = true; // a join alias, sub-select, function, whole-row reference …
        return;
      }
      out.push([Number(rte.fields.relid), attno]);
      return;
    }
    for (const k in v.fields) visit(v.fields[k]);
  };
  visit(expr);
  return unknown ? null : out;
}
