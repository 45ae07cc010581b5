// The SSH gateway's view of an exec command line: every simple command it runs, with quotes removed, wrappers
// (sudo, env, nice, timeout, …) stripped, and the code hidden in `bash -c '…'`, eval, here-documents fed to a
// shell, xargs and find -exec parsed too — with a real bash parser (tree-sitter-bash, wasm).
//
//   const parser = await loadCommandLineParser();   // once: loads the grammar
//   const parsed = parser.parse(line);               // synchronous; throws CommandLineError
//
// It fails closed: what the gateway cannot tell statically — a program named by an expansion, a -c string that
// is not a literal, an option a wrapper may read its program from, a construct tree-sitter is known to get wrong
// — is an error naming what to change, never a guess. What it cannot see at all is left to policy: a shell
// started without a script (`… | sh`, `bash < file`) reads its commands from input the gateway never parses, and
// programs that run their arguments in ways not listed here (su -c, ssh, watch, flock, trap, source) are
// reported as themselves with their arguments.
//
// tree-sitter-bash's quirks this works around (each checked with the 0.25 grammar):
// - words after a redirection (`rm >/dev/null -rf /`, `rm <<EOF -rf /`) are put into the redirection node,
//   not into the command: they are taken back as arguments;
// - `$"…"` in an argument is split into a `$` token and a string: adjacent argument nodes are joined into one
//   word, as bash sees them;
// - nested backticks (`` `a \`b\`` ``) are one word inside the outer substitution: a backtick substitution
//   holding backslashes is unescaped and parsed again, as bash does;
// - in an unquoted here-document body, backticks and `$((…))` are not parsed (or parsed as a subshell): such a
//   body is rejected.
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { Language, type Node, Parser } from "web-tree-sitter";

export interface SimpleCommand {
  /** The program as written, after quote removal ("/usr/bin/rm", "rm"). */
  program: string;
  /**
   * Arguments after quote removal. An argument containing an expansion the gateway cannot resolve statically
   * ($VAR, $(…); globs are fine as literal text) is kept as its source text.
   */
  args: string[];
  /** Run under sudo (directly or via a wrapper chain like `nice sudo rm`). */
  sudo: boolean;
  /** Wrapper programs stripped before `program`, in order, as written: e.g. ["sudo","env","timeout"]. */
  wrappers: string[];
  /** Leading VAR=value assignments and env(1) assignments, names only (values can be secrets). */
  assigns: string[];
  /**
   * Where it came from: "line" (top level), "substitution" ($( ) / backticks / <( )), "shell -c" (recursion into
   * bash -c / sh -c / eval / a here-doc fed to a shell), "xargs"/"find -exec" (a program those run).
   */
  origin: "line" | "substitution" | "shell -c" | "xargs" | "find -exec";
}

export interface Redirect {
  /** The descriptor as written and the operator: ">", ">>", "<", "2>", "&>", "2>&", "<<", "<<<" … */
  op: string;
  /** The path (a descriptor number for `>&`/`<&`); "" for here-documents and here-strings. */
  target: string;
}

export interface ParsedLine {
  /** Every simple command anywhere in the line, in source order, with recursion results appended where they occur. */
  commands: SimpleCommand[];
  /** Every file redirect; here-documents appear as op "<<", here-strings as "<<<", with target "". */
  redirects: Redirect[];
  /** Any command runs under sudo. */
  sudo: boolean;
  /**
   * Constructs used, sorted unique, from: "pipeline","and","or","sequence","background","subshell","group",
   * "substitution","process_substitution","redirect","heredoc","function","control_flow","assignment","negation".
   */
  features: string[];
  /**
   * scp server side: `scp -t …` = "upload" (the client sends files to the target), `scp -f …` = "download"; with
   * the paths (args after options). null otherwise. Only when scp is the only command.
   */
  transfer: { direction: "upload" | "download"; paths: string[] } | null;
}

export class CommandLineError extends Error {
  override name = "CommandLineError";
  constructor(
    readonly code: "unparsable" | "dynamic_program" | "too_deep" | "too_large",
    message: string,
  ) {
    super(message);
  }
}

export interface CommandLineParser {
  /** Throws CommandLineError. */
  parse(line: string): ParsedLine;
}

type Origin = SimpleCommand["origin"];

/** A word after quote removal. */
interface Word {
  /** The value; the source text when dynamic. */
  text: string;
  /** Holds an expansion the gateway cannot resolve. */
  dynamic: boolean;
  /** Holds an unquoted expansion: the shell may split it into several words. */
  splits: boolean;
  /** Holds unquoted glob or brace characters: the shell may replace it with other words. */
  pattern: boolean;
  /** The static text before the first expansion (all of it when static). */
  prefix: string;
}

/** What a command reads on standard input, when the line says: the body of a here-document or here-string. */
type Stdin = { text: string } | { dynamic: true };

interface Ctx {
  origin: Origin;
  /** The commands of this context run under sudo (`sudo bash -c '…'`; not a substitution in sudo's arguments). */
  sudo: boolean;
  /** Recursion depth: shell -c, eval, here-documents, xargs, find -exec, re-parsed backticks. */
  depth: number;
  /** The text the current tree was parsed from. */
  src: string;
  /** Prefix of messages: where in the line the current text is ("" for the line itself). */
  where: string;
}

const DEFAULT_MAX_DEPTH = 4;
const DEFAULT_MAX_BYTES = 64 * 1024;
/**
 * Syntax nesting (tree levels) walked at most, by default (listeners.ssh.max_command_nesting). The walk is
 * recursive; real lines stay far below this, and it bounds both the JavaScript stack and the time a 64 KiB line of
 * `((((…` or `a && a && …` can cost.
 */
const MAX_NESTING = 500;

const SHELLS = new Set(["sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "rbash"]);
const FIND_EXEC = new Set(["-exec", "-execdir", "-ok", "-okdir"]);

/** Nodes that hold no command. */
const LEAVES = new Set([
  "word",
  "number",
  "raw_string",
  "string_content",
  "ansi_c_string",
  "variable_name",
  "special_variable_name",
  "heredoc_content",
  "heredoc_start",
  "heredoc_end",
  "comment",
  "file_descriptor",
  "test_operator",
  "extglob_pattern",
  "regex",
]);
const STATEMENTS = new Set([
  "command",
  "redirected_statement",
  "pipeline",
  "list",
  "subshell",
  "compound_statement",
  "function_definition",
  "if_statement",
  "while_statement",
  "for_statement",
  "c_style_for_statement",
  "case_statement",
  "negated_command",
  "test_command",
  "declaration_command",
  "unset_command",
  "variable_assignment",
  "variable_assignments",
]);
/** Nodes whose statements are separated by `;`, newlines and `&`. */
const SEQ_CONTAINERS = new Set([
  "program",
  "subshell",
  "compound_statement",
  "do_group",
  "if_statement",
  "elif_clause",
  "else_clause",
  "while_statement",
  "case_item",
  "command_substitution",
  "process_substitution",
]);
const CONTROL_FLOW = new Set([
  "if_statement",
  "while_statement",
  "for_statement",
  "c_style_for_statement",
  "case_statement",
]);
const REDIRECT_OPS = new Set([">", ">>", "<", "&>", "&>>", "<&", ">&", ">|", "<&-", ">&-"]);

// ---------------------------------------------------------------------------------------------------------------
// Loading

let shared: Promise<Parser> | undefined;

function sharedParser(): Promise<Parser> {
  if (!shared) {
    // One parser per process: parse() is synchronous, so calls never interleave.
    shared = (async () => {
      await Parser.init();
      const pkg = createRequire(import.meta.url).resolve("tree-sitter-bash/package.json");
      const language = await Language.load(join(dirname(pkg), "tree-sitter-bash.wasm"));
      const parser = new Parser();
      parser.setLanguage(language);
      return parser;
    })();
    // A failed load is retried by the next caller rather than cached.
    shared.catch(() => {
      shared = undefined;
    });
  }
  return shared;
}

/** Loads the wasm grammar once per process (the promise is memoized); fast after the first call. */
export async function loadCommandLineParser(options?: {
  /** Recursion into shell -c / eval / here-documents / xargs / find -exec; default 4. */
  maxDepth?: number;
  /** Longest line accepted, in UTF-8 bytes; default 64 KiB. */
  maxBytes?: number;
  /** Syntax nesting (subshells, $(…), groups, && chains) walked at most; default 500. */
  maxNesting?: number;
}): Promise<CommandLineParser> {
  const parser = await sharedParser();
  const maxDepth = options?.maxDepth ?? DEFAULT_MAX_DEPTH;
  const maxBytes = options?.maxBytes ?? DEFAULT_MAX_BYTES;
  const maxNesting = options?.maxNesting ?? MAX_NESTING;
  return { parse: (line) => new Run(parser, maxDepth, maxBytes, maxNesting).line(line) };
}

// ---------------------------------------------------------------------------------------------------------------
// Messages

function snippet(s: string): string {
  return JSON.stringify(s.length > 40 ? `${s.slice(0, 37)}…` : s);
}

/** "column 7", or "line 2, column 3" past the first line (1-based, in characters). */
function position(text: string, index: number): string {
  const nl = text.lastIndexOf("\n", index - 1);
  const column = index - nl;
  if (nl < 0) return `column ${column}`;
  let line = 1;
  for (let i = 0; i <= nl; i++) if (text.charCodeAt(i) === 0x0a) line++;
  return `line ${line}, column ${column}`;
}

function dynamicProgram(where: string, what: string): CommandLineError {
  return new CommandLineError("dynamic_program", `${where}${what}`);
}

function checkText(text: string, maxBytes: number, where: string): void {
  if (text.length * 3 > maxBytes) {
    const bytes = Buffer.byteLength(text, "utf8");
    if (bytes > maxBytes)
      throw new CommandLineError(
        "too_large",
        `${where}command line is ${bytes} bytes; the limit is ${maxBytes}`,
      );
  }
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if ((c < 0x20 && c !== 0x09 && c !== 0x0a) || (c >= 0x7f && c <= 0x9f)) {
      const what =
        c === 0 ? "NUL character" : `control character U+${c.toString(16).toUpperCase().padStart(4, "0")}`;
      throw new CommandLineError("unparsable", `${where}${what} at ${position(text, i)} is not allowed`);
    }
  }
}

/** The first ERROR or MISSING node, found by descending into the children that contain one. */
function syntaxError(root: Node, text: string, where: string): CommandLineError {
  let found: Node | null = root.isError ? root : null;
  let node = root;
  for (let level = 0; !found && level < MAX_NESTING; level++) {
    let next: Node | null = null;
    for (const c of node.children) {
      if (!c) continue;
      if (c.isError || c.isMissing) {
        found = c;
        break;
      }
      if (c.hasError) {
        next = c;
        break;
      }
    }
    if (!next) break;
    node = next;
  }
  if (!found) return new CommandLineError("unparsable", `${where}syntax error`);
  // An ERROR node can start with the blanks before the token the parser gave up at.
  let start = found.startIndex;
  while (start < found.endIndex && (text[start] === " " || text[start] === "\t" || text[start] === "\n"))
    start++;
  const at = position(text, start);
  if (found.isMissing)
    return new CommandLineError(
      "unparsable",
      `${where}syntax error: missing ${JSON.stringify(found.type)} at ${at}`,
    );
  // An ERROR node starts where the parser gave up; a quote there is one that never closes.
  const head = text.slice(start, start + 40);
  const quote = head.match(/^(?:\$?(['"])|(`))/);
  if (quote)
    return new CommandLineError(
      "unparsable",
      `${where}syntax error: unterminated ${quote[1] ?? quote[2]} quote at ${at}`,
    );
  return new CommandLineError(
    "unparsable",
    `${where}syntax error near ${snippet(head.split("\n")[0] ?? "")} at ${at}`,
  );
}

// ---------------------------------------------------------------------------------------------------------------
// Words

/** Backslash escapes in an unquoted word: `\x` is x, backslash-newline is nothing. */
function unescapeBare(s: string): string {
  return s.includes("\\") ? s.replace(/\\([\s\S])/g, (_, c: string) => (c === "\n" ? "" : c)) : s;
}

/** Inside double quotes only $ ` " \ and newline are escaped by a backslash. */
function unescapeDouble(s: string): string {
  return s.includes("\\") ? s.replace(/\\([$`"\\\n])/g, (_, c: string) => (c === "\n" ? "" : c)) : s;
}

const ANSI_C: Record<string, string> = {
  a: "\x07",
  b: "\b",
  e: "\x1b",
  E: "\x1b",
  f: "\f",
  n: "\n",
  r: "\r",
  t: "\t",
  v: "\v",
  "\\": "\\",
  "'": "'",
  '"': '"',
  "?": "?",
};

/** The body of $'…'. */
function decodeAnsiC(s: string): string {
  if (!s.includes("\\")) return s;
  return s.replace(
    /\\(?:([0-7]{1,3})|x([0-9a-fA-F]{1,2})|u([0-9a-fA-F]{1,4})|U([0-9a-fA-F]{1,8})|c([\s\S])|([\s\S]))/g,
    (all, oct?: string, hex?: string, u?: string, U?: string, ctl?: string, other?: string) => {
      const code = oct
        ? Number.parseInt(oct, 8)
        : hex || u || U
          ? Number.parseInt((hex ?? u ?? U) as string, 16)
          : -1;
      if (code >= 0) return code <= 0x10ffff ? String.fromCodePoint(code) : "";
      if (ctl) return String.fromCharCode(ctl.toUpperCase().charCodeAt(0) & 0x1f);
      return ANSI_C[other as string] ?? all;
    },
  );
}

/** Unquoted glob characters or a brace expansion ({a,b}, {1..3}) in a word's source. */
function hasPattern(raw: string): boolean {
  if (!/[*?[{]/.test(raw)) return false;
  const bare = raw.replace(/\\[\s\S]/g, "_");
  return /[*?]|\[[^\]]*\]|\{[^}]*(?:,|\.\.)[^}]*\}/.test(bare);
}

/** Accumulates one word from its parts. */
class WordBuilder {
  text = "";
  dynamic = false;
  splits = false;
  pattern = false;
  prefix: string | null = null;
  /** The unquoted source, quoted parts as "_": glob and brace characters can span parts (`r{m,}`). */
  private bare = "";

  add(node: Node, quoted: boolean): void {
    const type = node.type;
    if (type !== "word" && type !== "concatenation" && type !== "translated_string") this.bare += "_";
    switch (type) {
      case "word": {
        const raw = node.text;
        this.bare += quoted ? "_" : raw;
        this.text += unescapeBare(raw);
        return;
      }
      case "number":
        this.text += node.text;
        return;
      case "raw_string":
        this.text += node.text.slice(1, -1);
        return;
      case "ansi_c_string":
        this.text += decodeAnsiC(node.text.slice(2, -1));
        return;
      case "string":
        this.string(node);
        return;
      case "translated_string":
      case "concatenation":
        this.parts(node.children, quoted);
        return;
      case "brace_expression":
      case "extglob_pattern":
        this.pattern = true;
        this.text += node.text;
        return;
      default:
        // A literal token tree-sitter split off ("$" of `a$`); anything named is an expansion (or a construct
        // treated as one: unknown means not static).
        if (!node.isNamed && node.childCount === 0) this.text += node.text;
        else this.expansion(quoted);
    }
  }

  /** Parts of one word, in order; `$` before a string is the $"…" of a translated string. */
  parts(nodes: (Node | null)[], quoted: boolean): void {
    for (let i = 0; i < nodes.length; i++) {
      const n = nodes[i];
      if (!n) continue;
      if (n.type === "$" && nodes[i + 1]?.type === "string") continue;
      this.add(n, quoted);
    }
  }

  private string(node: Node): void {
    const kids = node.children;
    let dynamic = false;
    for (const k of kids) if (k?.isNamed && k.type !== "string_content") dynamic = true;
    if (!dynamic) {
      this.text += unescapeDouble(node.text.slice(1, -1));
      return;
    }
    // Only the prefix matters past the first expansion (an env assignment's name).
    for (const k of kids) {
      if (!k || k.type === '"') continue;
      if (k.isNamed && k.type !== "string_content") {
        this.expansion(true);
        return;
      }
      this.text += k.type === "string_content" ? unescapeDouble(k.text) : k.text;
    }
  }

  private expansion(quoted: boolean): void {
    if (!this.dynamic) this.prefix = this.text;
    this.dynamic = true;
    if (!quoted) this.splits = true;
  }

  finish(source: string): Word {
    return {
      text: this.dynamic ? source : this.text,
      dynamic: this.dynamic,
      splits: this.splits,
      pattern: this.pattern || hasPattern(this.bare),
      prefix: this.prefix ?? this.text,
    };
  }
}

function wordOf(nodes: Node[], src: string): Word {
  const b = new WordBuilder();
  b.parts(nodes, false);
  const first = nodes[0];
  const last = nodes[nodes.length - 1];
  return b.finish(first && last ? src.slice(first.startIndex, last.endIndex) : "");
}

function staticWord(text: string): Word {
  return { text, dynamic: false, splits: false, pattern: false, prefix: text };
}

function basename(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

/** `NAME=…` as env(1) and sudo read it: the name, or null. */
function assignmentName(w: Word): string | null {
  const eq = w.prefix.indexOf("=");
  return eq > 0 ? w.prefix.slice(0, eq) : null;
}

function unescapeBackticks(s: string): string {
  return s.replace(/\\([$`\\])/g, "$1");
}

// ---------------------------------------------------------------------------------------------------------------
// Wrappers: programs that run the program named by their arguments

/** Where the wrapped program is: argv[next], or `implied` (with argv[next…] its arguments). */
interface Step {
  next: number;
  argv?: Word[];
  implied?: string;
  sudo?: boolean;
  assigns?: string[];
}
/** null: the wrapper runs no program here (`env` alone, `command -v x`, `sudo -l`); it is the program. */
type Wrapper = (argv: Word[], at: number, name: string, where: string) => Step | null;

interface OptionSpec {
  /** Short options that take an argument, attached or as the next word. */
  arg: string;
  /** Short options without an argument. */
  flag: string;
  /** Short options whose argument can only be attached (xargs -e[EOF]). */
  optional?: string;
  /** Long options: the key recorded as seen, and 0 no argument, 1 an argument, 2 only an attached `=value`. */
  long: Record<string, readonly [string, 0 | 1 | 2]>;
}

interface Scan {
  /** The first operand. */
  next: number;
  /** Options seen (short letters, or the long option's key) with their argument. */
  seen: Map<string, Word | null>;
}

/**
 * Reads options getopt-style from argv[at], stopping at `--` or the first operand (these programs all stop
 * there: "+" getopt strings). An option the spec does not know fails: its argument could be the program.
 */
function scanOptions(argv: Word[], at: number, spec: OptionSpec, name: string, where: string): Scan {
  const seen = new Map<string, Word | null>();
  let i = at;
  for (; i < argv.length; i++) {
    const w = argv[i] as Word;
    if (w.dynamic)
      throw dynamicProgram(
        where,
        `${name}: ${snippet(w.text)} is not a static word; cannot tell which program runs`,
      );
    const t = w.text;
    if (t === "--") return { next: i + 1, seen };
    if (t.length < 2 || t[0] !== "-") break;
    if (t[1] === "-") {
      const eq = t.indexOf("=");
      const key = eq < 0 ? t.slice(2) : t.slice(2, eq);
      const long = Object.hasOwn(spec.long, key) ? spec.long[key] : undefined;
      if (!long) throw unknownOption(t, name, where);
      let value: Word | null = eq < 0 ? null : staticWord(t.slice(eq + 1));
      if (long[1] === 1 && eq < 0) {
        i++;
        value = optionArgument(argv[i], name, where);
      }
      seen.set(long[0], value);
      continue;
    }
    for (let j = 1; j < t.length; j++) {
      const c = t[j] as string;
      if (spec.arg.includes(c)) {
        let value: Word | null;
        if (j + 1 < t.length) value = staticWord(t.slice(j + 1));
        else {
          i++;
          value = optionArgument(argv[i], name, where);
        }
        seen.set(c, value);
        break;
      }
      if (spec.optional?.includes(c)) {
        seen.set(c, j + 1 < t.length ? staticWord(t.slice(j + 1)) : null);
        break;
      }
      if (!spec.flag.includes(c)) throw unknownOption(`-${c}`, name, where);
      seen.set(c, null);
    }
  }
  return { next: Math.min(i, argv.length), seen };
}

function unknownOption(option: string, name: string, where: string): CommandLineError {
  return dynamicProgram(where, `${name}: unknown option ${snippet(option)}; cannot tell which program runs`);
}

/** An option's argument may be dynamic, unless word splitting could turn it into more words (the program). */
function optionArgument(w: Word | undefined, name: string, where: string): Word | null {
  if (w?.splits)
    throw dynamicProgram(
      where,
      `${name}: unquoted expansion ${snippet(w.text)} before the program; quote it or write it literally`,
    );
  return w ?? null;
}

function wrapperSpec(spec: OptionSpec, stop = ""): Wrapper {
  return (argv, at, name, where) => {
    const { next, seen } = scanOptions(argv, at, spec, name, where);
    for (const c of stop) if (seen.has(c)) return null;
    return next < argv.length ? { next } : null;
  };
}

const SUDO: OptionSpec = {
  arg: "aCcDgpRrTtUu",
  flag: "ABbEeHiKklNnPSsVv",
  optional: "h",
  long: {
    askpass: ["A", 0],
    background: ["b", 0],
    bell: ["B", 0],
    "close-from": ["C", 1],
    chdir: ["D", 1],
    "preserve-env": ["E", 2],
    edit: ["e", 0],
    group: ["g", 1],
    "set-home": ["H", 0],
    help: ["h", 0],
    host: ["host", 1],
    login: ["i", 0],
    "remove-timestamp": ["K", 0],
    "reset-timestamp": ["k", 0],
    list: ["l", 0],
    "no-update": ["N", 0],
    "non-interactive": ["n", 0],
    "preserve-groups": ["P", 0],
    prompt: ["p", 1],
    chroot: ["R", 1],
    role: ["r", 1],
    stdin: ["S", 0],
    shell: ["s", 0],
    type: ["t", 1],
    "command-timeout": ["T", 1],
    "other-user": ["U", 1],
    user: ["u", 1],
    "login-class": ["c", 1],
    version: ["V", 0],
    validate: ["v", 0],
  },
};

/** sudo and doas: options, then NAME=value (sudo), then the command; -e edits, -i/-s alone start a shell. */
function sudoLike(spec: OptionSpec, stop: string): Wrapper {
  return (argv, at, name, where) => {
    const { next, seen } = scanOptions(argv, at, spec, name, where);
    for (const c of stop) if (seen.has(c)) return null;
    let i = next;
    const assigns: string[] = [];
    for (let w = argv[i]; w; w = argv[++i]) {
      const n = assignmentName(w);
      if (n === null) break;
      optionArgument(w, name, where);
      assigns.push(n);
    }
    if (seen.has("e")) return { next: i, implied: "sudoedit", sudo: true, assigns };
    if (i < argv.length) return { next: i, sudo: true, assigns };
    // `sudo -i` / `sudo -s` with no command: a root shell reading the commands from standard input.
    return seen.has("i") || seen.has("s") ? { next: i, implied: "sh", sudo: true, assigns } : null;
  };
}

const ENV: OptionSpec = {
  arg: "uCSa",
  flag: "i0v",
  long: {
    "ignore-environment": ["i", 0],
    null: ["0", 0],
    unset: ["u", 1],
    chdir: ["C", 1],
    "split-string": ["S", 1],
    argv0: ["a", 1],
    debug: ["v", 0],
    "block-signal": ["block-signal", 2],
    "default-signal": ["default-signal", 2],
    "ignore-signal": ["ignore-signal", 2],
    "list-signal-handling": ["list", 0],
    help: ["help", 0],
    version: ["version", 0],
  },
};

const env: Wrapper = (argv, at, name, where) => {
  // `env -` is `env -i`.
  let start = at;
  while (argv[start]?.text === "-" && !argv[start]?.dynamic) start++;
  const { next, seen } = scanOptions(argv, start, ENV, name, where);
  if (seen.has("help") || seen.has("version") || seen.has("list")) return null;
  const split = seen.get("S");
  if (split) {
    // -S splits its string into more arguments (options, assignments, the command): with plain words only.
    if (split.dynamic || /['"\\$#]/.test(split.text))
      throw dynamicProgram(where, `${name} -S: only plain words are supported in the split string`);
    const words = split.text.split(/[ \t\n]+/).filter((s) => s !== "");
    const expanded = [staticWord(name), ...words.map(staticWord), ...argv.slice(next)];
    const step = env(expanded, 1, name, where);
    return step && { ...step, argv: expanded };
  }
  let i = next;
  const assigns: string[] = [];
  for (let w = argv[i]; w; w = argv[++i]) {
    const n = assignmentName(w);
    if (n === null) break;
    optionArgument(w, name, where);
    assigns.push(n);
  }
  return i < argv.length ? { next: i, assigns } : null;
};

/** nice: -n N, -nN, --adjustment=N, and the old -N / --N. */
const nice: Wrapper = (argv, at, name, where) => {
  let i = at;
  for (; i < argv.length; i++) {
    const w = argv[i] as Word;
    if (w.dynamic)
      throw dynamicProgram(
        where,
        `${name}: ${snippet(w.text)} is not a static word; cannot tell which program runs`,
      );
    const t = w.text;
    if (t === "--") {
      i++;
      break;
    }
    if (t === "-n" || t === "--adjustment") {
      i++;
      optionArgument(argv[i], name, where);
    } else if (t === "--help" || t === "--version") return null;
    else if (!/^(?:-[+-]?\d+|-n.+|--adjustment=.*)$/.test(t)) {
      if (t.length > 1 && t[0] === "-") throw unknownOption(t, name, where);
      break;
    }
  }
  return i < argv.length ? { next: i } : null;
};

/** Options, then one operand (a duration, a priority) before the program. */
function withOperand(spec: OptionSpec, stop: string, optionalOperand?: RegExp): Wrapper {
  return (argv, at, name, where) => {
    const { next, seen } = scanOptions(argv, at, spec, name, where);
    for (const c of stop) if (seen.has(c)) return null;
    const operand = argv[next];
    if (!operand) return null;
    if (optionalOperand && !operand.dynamic && !optionalOperand.test(operand.text)) return { next };
    optionArgument(operand, name, where);
    return next + 1 < argv.length ? { next: next + 1 } : null;
  };
}

const HELP = { help: ["help", 0], version: ["version", 0] } as const;

const WRAPPERS = new Map<string, Wrapper>([
  ["sudo", sudoLike(SUDO, "lVvKh")],
  ["doas", sudoLike({ arg: "uC", flag: "nsL", long: {} }, "CL")],
  ["env", env],
  ["nice", nice],
  [
    "timeout",
    withOperand(
      {
        arg: "sk",
        flag: "v",
        long: {
          signal: ["s", 1],
          "kill-after": ["k", 1],
          "preserve-status": ["preserve-status", 0],
          foreground: ["foreground", 0],
          verbose: ["v", 0],
          ...HELP,
        },
      },
      "",
    ),
  ],
  ["nohup", wrapperSpec({ arg: "", flag: "", long: HELP }, "")],
  [
    "time",
    wrapperSpec({
      arg: "fo",
      flag: "apqvV",
      long: {
        format: ["f", 1],
        output: ["o", 1],
        append: ["a", 0],
        verbose: ["v", 0],
        portability: ["p", 0],
        quiet: ["q", 0],
        ...HELP,
      },
    }),
  ],
  // `command -v x` / `-V` looks x up; it runs nothing.
  ["command", wrapperSpec({ arg: "", flag: "pvV", long: {} }, "vV")],
  ["builtin", wrapperSpec({ arg: "", flag: "", long: {} })],
  ["exec", wrapperSpec({ arg: "a", flag: "cl", long: {} })],
  [
    "stdbuf",
    wrapperSpec({
      arg: "ioe",
      flag: "",
      long: { input: ["i", 1], output: ["o", 1], error: ["e", 1], ...HELP },
    }),
  ],
  // -p/-P/-u change running processes: no program.
  [
    "ionice",
    wrapperSpec(
      {
        arg: "cnpPu",
        flag: "tV",
        long: {
          class: ["c", 1],
          classdata: ["n", 1],
          pid: ["p", 1],
          pgid: ["P", 1],
          uid: ["u", 1],
          ignore: ["t", 0],
          ...HELP,
        },
      },
      "pPuV",
    ),
  ],
  [
    "setsid",
    wrapperSpec({ arg: "", flag: "cfwV", long: { ctty: ["c", 0], fork: ["f", 0], wait: ["w", 0], ...HELP } }),
  ],
  // chrt [options] [priority] command; -p works on a pid, -m lists: no program.
  [
    "chrt",
    withOperand(
      {
        arg: "TPD",
        flag: "abdefimoprRvV",
        long: {
          all: ["a", 0],
          batch: ["b", 0],
          deadline: ["d", 0],
          ext: ["e", 0],
          fifo: ["f", 0],
          idle: ["i", 0],
          max: ["m", 0],
          other: ["o", 0],
          pid: ["p", 0],
          rr: ["r", 0],
          "reset-on-fork": ["R", 0],
          verbose: ["v", 0],
          "sched-runtime": ["T", 1],
          "sched-period": ["P", 1],
          "sched-deadline": ["D", 1],
          ...HELP,
        },
      },
      "pmV",
      /^\d+$/,
    ),
  ],
]);

const XARGS: OptionSpec = {
  arg: "adEILnPs",
  flag: "0oprtx",
  optional: "eil",
  long: {
    null: ["0", 0],
    "arg-file": ["a", 1],
    delimiter: ["d", 1],
    eof: ["e", 2],
    replace: ["i", 2],
    "max-lines": ["l", 2],
    "max-args": ["n", 1],
    "max-procs": ["P", 1],
    "max-chars": ["s", 1],
    "process-slot-var": ["process-slot-var", 1],
    interactive: ["p", 0],
    "open-tty": ["o", 0],
    "no-run-if-empty": ["r", 0],
    verbose: ["t", 0],
    exit: ["x", 0],
    "show-limits": ["show-limits", 0],
    ...HELP,
  },
};

// ---------------------------------------------------------------------------------------------------------------
// The walk

const NO_NODES: Node[] = [];

/** One parse() call: the results, shared by the line and every recursion into it. */
class Run {
  private readonly commands: SimpleCommand[] = [];
  private readonly redirects: Redirect[] = [];
  private readonly features = new Set<string>();

  constructor(
    private readonly parser: Parser,
    private readonly maxDepth: number,
    private readonly maxBytes: number,
    private readonly maxNesting: number = MAX_NESTING,
  ) {}

  line(line: string): ParsedLine {
    if (typeof line !== "string") throw new CommandLineError("unparsable", "command line is not a string");
    this.source(line, { origin: "line", sudo: false, depth: 0, src: line, where: "" });
    const commands = this.commands;
    return {
      commands,
      redirects: this.redirects,
      sudo: commands.some((c) => c.sudo),
      features: [...this.features].sort(),
      transfer: commands.length === 1 ? scpTransfer(commands[0] as SimpleCommand) : null,
    };
  }

  /** Parses and walks one script: the line, a -c string, an eval string, a here-document body. */
  private source(text: string, ctx: Ctx): void {
    if (ctx.depth > this.maxDepth)
      throw new CommandLineError(
        "too_deep",
        `${ctx.where}nested shell -c / eval / here-document / xargs / find -exec goes deeper than ${this.maxDepth} levels`,
      );
    checkText(text, this.maxBytes, ctx.where);
    const tree = this.parser.parse(text);
    if (!tree) throw new CommandLineError("unparsable", `${ctx.where}the parser gave no result`);
    try {
      const root = tree.rootNode;
      if (root.hasError) throw syntaxError(root, text, ctx.where);
      this.walk(root, ctx.src === text ? ctx : { ...ctx, src: text }, 0);
    } finally {
      tree.delete();
    }
  }

  private nested(ctx: Ctx, origin: Origin, where: string): Ctx {
    const depth = ctx.depth + 1;
    if (depth > this.maxDepth)
      throw new CommandLineError(
        "too_deep",
        `${ctx.where}nested shell -c / eval / here-document / xargs / find -exec goes deeper than ${this.maxDepth} levels`,
      );
    return { ...ctx, origin, depth, where: `${ctx.where}${where}` };
  }

  private walk(node: Node, ctx: Ctx, level: number): void {
    if (level > this.maxNesting)
      throw new CommandLineError(
        "too_deep",
        `${ctx.where}the command line nests deeper than ${this.maxNesting} levels`,
      );
    const type = node.type;
    if (LEAVES.has(type)) return;
    switch (type) {
      case "command":
        this.command(node, NO_NODES, ctx, level);
        return;
      case "redirected_statement":
        this.redirected(node, ctx, level);
        return;
      case "declaration_command":
      case "unset_command":
        this.declaration(node, ctx, level);
        return;
      case "command_substitution":
        this.substitution(node, ctx, level);
        return;
      case "file_redirect":
        this.fileRedirect(node, ctx, level);
        return;
      case "heredoc_redirect":
        this.heredoc(node, ctx, level);
        return;
      case "herestring_redirect":
        this.features.add("heredoc");
        this.redirects.push({ op: "<<<", target: "" });
        break;
      case "function_definition":
        this.features.add("function");
        // The body's braces are the function's, not a group.
        for (const c of node.children) {
          if (c?.type === "compound_statement") this.children(c, ctx, level + 1);
          else if (c) this.walk(c, ctx, level + 1);
        }
        return;
      case "process_substitution":
        this.features.add("process_substitution");
        this.children(node, { ...ctx, origin: "substitution" }, level);
        return;
      case "pipeline":
        this.features.add("pipeline");
        break;
      case "subshell":
        this.features.add("subshell");
        break;
      case "compound_statement":
        // `(( … ))` is arithmetic, not a group.
        if (node.firstChild?.type !== "((") this.features.add("group");
        break;
      case "negated_command":
        this.features.add("negation");
        break;
      case "variable_assignment":
        this.features.add("assignment");
        break;
      default:
        if (CONTROL_FLOW.has(type)) this.features.add("control_flow");
    }
    this.children(node, ctx, level);
  }

  private children(node: Node, ctx: Ctx, level: number): void {
    const seq = SEQ_CONTAINERS.has(node.type);
    const list = node.type === "list";
    let afterStatement = false;
    for (const c of node.children) {
      if (!c) continue;
      const t = c.type;
      if (seq) {
        // Statements one after the other (`;` or a newline between them) are a sequence; `&` runs in background.
        if (STATEMENTS.has(t)) {
          if (afterStatement) this.features.add("sequence");
          afterStatement = true;
        } else if (t === "&") {
          this.features.add("background");
          afterStatement = false;
        } else if (t !== ";" && t !== "comment") afterStatement = false;
      } else if (list) {
        if (t === "&&") this.features.add("and");
        else if (t === "||") this.features.add("or");
      }
      this.walk(c, ctx, level + 1);
    }
  }

  /**
   * A simple command. `extra` are the redirections of an enclosing redirected_statement: they belong to this
   * command, and words tree-sitter put into them are its arguments.
   */
  private command(node: Node, extra: Node[], ctx: Ctx, level: number): void {
    const parts = extra.length ? [...node.children, ...extra] : node.children;
    oneLine(parts, ctx);
    const groups: Node[][] = [];
    const assigns: string[] = [];
    let stdin: Stdin | null = null;
    let lastEnd = -1;
    for (const c of parts) {
      if (!c) continue;
      switch (c.type) {
        case "variable_assignment":
          assigns.push(assignedName(c));
          break;
        case "comment":
          break;
        case "file_redirect": {
          const { op, destinations } = redirectParts(c);
          // Words after the first destination are the command's (`rm >/dev/null -rf /`).
          for (let i = 1; i < destinations.length; i++) groups.push([destinations[i] as Node]);
          if (op === "<" || op === "0<" || op === "<&" || op === "0<&") stdin = null;
          break;
        }
        case "heredoc_redirect":
          stdin = heredocInput(c);
          for (let i = 0; i < c.childCount; i++)
            if (c.fieldNameForChild(i) === "argument") groups.push([c.child(i) as Node]);
          break;
        case "herestring_redirect":
          stdin = herestringInput(c, ctx.src);
          break;
        default: {
          const nodes = c.type === "command_name" ? (c.children.filter(Boolean) as Node[]) : [c];
          // Nodes without a blank between them are one word (tree-sitter splits `$"…"`).
          const last = groups[groups.length - 1];
          if (last && c.startIndex === lastEnd && c.type !== "command_name") last.push(...nodes);
          else groups.push(nodes);
          lastEnd = c.endIndex;
          continue;
        }
      }
      lastEnd = -1;
    }
    const nameStart = groups[0]?.[0]?.startIndex ?? Number.POSITIVE_INFINITY;
    // Substitutions in assignments and redirections before the program run first.
    for (const c of parts) if (c && c.startIndex < nameStart) this.walk(c, ctx, level + 1);
    if (groups.length) {
      const argv = groups.map((g) => wordOf(g, ctx.src));
      this.exec(argv, assigns, stdin, ctx, nameStart);
    }
    for (const c of parts)
      if (c && c.startIndex >= nameStart && c.type !== "command_name") this.walk(c, ctx, level + 1);
  }

  private redirected(node: Node, ctx: Ctx, level: number): void {
    const kids = node.children.filter(Boolean) as Node[];
    const body = kids.find((k) => !k.type.endsWith("_redirect"));
    const redirects = kids.filter((k) => k !== body);
    if (body?.type === "command") {
      this.command(body, redirects, ctx, level + 1);
      return;
    }
    for (const r of redirects) {
      const extra =
        r.type === "file_redirect"
          ? redirectParts(r).destinations.length > 1
          : r.type === "heredoc_redirect" && r.childrenForFieldName("argument").length > 0;
      if (extra)
        throw new CommandLineError(
          "unparsable",
          `${ctx.where}words after a redirection of a compound command at ${position(ctx.src, r.startIndex)}`,
        );
    }
    for (const k of kids) this.walk(k, ctx, level + 1);
  }

  /** export / declare / local / readonly / typeset / unset: reported as the builtin, assignments by name. */
  private declaration(node: Node, ctx: Ctx, level: number): void {
    const kids = node.children.filter(Boolean) as Node[];
    oneLine(kids, ctx);
    const args: string[] = [];
    const assigns: string[] = [];
    for (let i = 1; i < kids.length; i++) {
      const k = kids[i] as Node;
      if (k.type === "variable_assignment") assigns.push(assignedName(k));
      else if (k.type !== "comment") args.push(wordOf([k], ctx.src).text);
    }
    this.commands.push({
      program: kids[0]?.text ?? "",
      args,
      sudo: ctx.sudo,
      wrappers: [],
      assigns,
      origin: ctx.origin,
    });
    for (const k of kids) this.walk(k, ctx, level + 1);
  }

  private substitution(node: Node, ctx: Ctx, level: number): void {
    this.features.add("substitution");
    const text = node.text;
    if (text.startsWith("`") && /\\[$`\\]/.test(text)) {
      // Inside backticks bash removes the backslash before $ ` \ and parses the result: tree-sitter does not, and
      // would miss `` `a \`b\`` ``'s inner substitution.
      const inner = this.nested(ctx, "substitution", "in a `…` substitution: ");
      this.source(unescapeBackticks(text.slice(1, -1)), inner);
      return;
    }
    this.children(node, { ...ctx, origin: "substitution" }, level);
  }

  private fileRedirect(node: Node, ctx: Ctx, level: number): void {
    this.features.add("redirect");
    const { op, destinations } = redirectParts(node);
    const target = destinations[0];
    this.redirects.push({ op, target: target ? wordOf([target], ctx.src).text : "" });
    for (const d of destinations) this.walk(d, ctx, level + 1);
  }

  private heredoc(node: Node, ctx: Ctx, level: number): void {
    this.features.add("heredoc");
    this.redirects.push({ op: "<<", target: "" });
    let quoted = false;
    for (const c of node.children) {
      if (!c) continue;
      switch (c.type) {
        case "heredoc_start":
          quoted = /['"\\]/.test(c.text);
          break;
        case "heredoc_body":
          if (!quoted) this.heredocBody(c, ctx, level + 1);
          break;
        case "&&":
          this.features.add("and");
          break;
        case "||":
          this.features.add("or");
          break;
        default:
          // The rest of the line after `<<EOF` (`| sh`, `&& rm x`, arguments) is in this node too.
          this.walk(c, ctx, level + 1);
      }
    }
  }

  /** An unquoted here-document body: its substitutions run. */
  private heredocBody(body: Node, ctx: Ctx, level: number): void {
    const text = body.text;
    const kids = body.children.filter(Boolean) as Node[];
    // tree-sitter parses $(…) in a body but leaves backticks as text and reads $((…)) as a subshell.
    for (let i = text.search(/`|\$\(/); i >= 0; ) {
      const at = body.startIndex + i;
      const sub = kids.find(
        (k) => k.type === "command_substitution" && k.startIndex <= at && at < k.endIndex,
      );
      if (!sub || sub.text.startsWith("$(("))
        throw new CommandLineError(
          "unparsable",
          `${ctx.where}here-document body at ${position(ctx.src, at)}: only $(…) substitutions are supported in an unquoted body; quote the delimiter (<<'EOF') to keep it literal`,
        );
      const next = text.slice(sub.endIndex - body.startIndex).search(/`|\$\(/);
      i = next < 0 ? -1 : sub.endIndex - body.startIndex + next;
    }
    for (const k of kids) this.walk(k, ctx, level);
  }

  /**
   * Resolves the wrappers of one command's words, records it, and follows what it runs: a shell's -c string or
   * standard input, eval's arguments, the program xargs or find -exec starts.
   */
  private exec(argv: Word[], assigns: string[], stdin: Stdin | null, ctx: Ctx, at: number): void {
    const wrappers: string[] = [];
    let sudo = ctx.sudo;
    let i = 0;
    let implied: string | undefined;
    for (;;) {
      const w = argv[i] as Word;
      if (w.dynamic || w.pattern) {
        const via = wrappers.length ? `the program ${wrappers[wrappers.length - 1]} runs` : "the program";
        const why = w.dynamic ? "is not a static word" : "contains glob or brace characters";
        throw dynamicProgram(
          ctx.where,
          `${via} (${snippet(w.text)} at ${position(ctx.src, at)}) ${why}; the gateway cannot tell which program runs`,
        );
      }
      const name = basename(w.text);
      const wrapper = WRAPPERS.get(name);
      const step = wrapper ? wrapper(argv, i + 1, name, ctx.where) : null;
      if (!step || (step.next >= (step.argv ?? argv).length && !step.implied)) break;
      wrappers.push(w.text);
      if (step.sudo) sudo = true;
      if (step.assigns) assigns.push(...step.assigns);
      if (step.argv) argv = step.argv;
      i = step.next;
      if (step.implied) {
        implied = step.implied;
        break;
      }
    }
    const program = implied ?? (argv[i] as Word).text;
    const args = argv.slice(implied ? i : i + 1);
    const base = implied ?? basename(program);
    if (base === "sudo" || base === "doas" || base === "sudoedit") sudo = true;
    this.commands.push({
      program,
      args: args.map((a) => a.text),
      sudo,
      wrappers,
      assigns,
      origin: ctx.origin,
    });

    const inner = sudo === ctx.sudo ? ctx : { ...ctx, sudo };
    if (SHELLS.has(base)) this.shell(base, args, stdin, inner);
    else if (base === "eval") this.eval(args, inner);
    else if (base === "xargs") this.xargs(args, inner);
    else if (base === "find") this.find(args, inner);
  }

  /** `bash [options] -c STRING …`, or a shell reading its script from a here-document or here-string. */
  private shell(name: string, args: Word[], stdin: Stdin | null, ctx: Ctx): void {
    let c = false;
    let s = false;
    let i = 0;
    for (; i < args.length; i++) {
      const w = args[i] as Word;
      // After -c a dynamic word is the command string, reported below.
      if (w.dynamic && c) break;
      if (w.dynamic)
        throw dynamicProgram(
          ctx.where,
          `${name}: option ${snippet(w.text)} is not a static word; cannot tell what it runs`,
        );
      const t = w.text;
      if (t === "--" || t === "-") {
        i++;
        break;
      }
      if (t.length < 2 || (t[0] !== "-" && t[0] !== "+")) break;
      if (t.startsWith("--")) {
        if (t === "--rcfile" || t === "--init-file") i++;
        continue;
      }
      for (const o of t.slice(1)) {
        if (o === "c") c = true;
        else if (o === "s") s = true;
        // -o option / -O shopt take the next word.
        else if (o === "o" || o === "O") optionArgument(args[++i], name, ctx.where);
      }
    }
    if (c) {
      const script = args[i];
      if (!script) return;
      if (script.dynamic)
        throw dynamicProgram(
          ctx.where,
          `${name} -c: the command string ${snippet(script.text)} is not static`,
        );
      this.source(script.text, this.nested(ctx, "shell -c", `in the ${name} -c string: `));
    } else if (stdin && (i >= args.length || s)) {
      if (!("text" in stdin))
        throw dynamicProgram(
          ctx.where,
          `${name} reads a here-document or here-string with expansions; quote the delimiter (<<'EOF') or the string so the gateway can read the script`,
        );
      this.source(stdin.text, this.nested(ctx, "shell -c", `in the script fed to ${name}: `));
    }
  }

  private eval(args: Word[], ctx: Ctx): void {
    const words = args[0]?.text === "--" && !args[0].dynamic ? args.slice(1) : args;
    if (!words.length) return;
    const dynamic = words.find((w) => w.dynamic);
    if (dynamic) throw dynamicProgram(ctx.where, `eval: argument ${snippet(dynamic.text)} is not static`);
    this.source(words.map((w) => w.text).join(" "), this.nested(ctx, "shell -c", "in the eval string: "));
  }

  private xargs(args: Word[], ctx: Ctx): void {
    const { next, seen } = scanOptions(args, 0, XARGS, "xargs", ctx.where);
    if (seen.has("help") || seen.has("version")) return;
    const inner = this.nested(ctx, "xargs", "in the program xargs runs: ");
    // Without a program xargs runs echo.
    const argv = next < args.length ? args.slice(next) : [staticWord("echo")];
    this.exec(argv, [], null, inner, 0);
  }

  private find(args: Word[], ctx: Ctx): void {
    for (let i = 0; i < args.length; i++) {
      const w = args[i] as Word;
      if (w.dynamic || !FIND_EXEC.has(w.text)) continue;
      // Up to `;`, or `+` right after `{}`.
      let j = i + 1;
      for (; j < args.length; j++) {
        const a = args[j] as Word;
        if (a.dynamic) continue;
        if (a.text === ";" || (a.text === "+" && j > i + 1 && args[j - 1]?.text === "{}")) break;
      }
      // `-exec {} \;` runs each file found: no program the gateway can name.
      const program = args[i + 1];
      if (program && j > i + 1 && program.text.includes("{}"))
        throw dynamicProgram(
          ctx.where,
          `find ${w.text}: the program is the file found (${snippet(program.text)})`,
        );
      if (j > i + 1)
        this.exec(args.slice(i + 1, j), [], null, this.nested(ctx, "find -exec", `in find ${w.text}: `), 0);
      i = j;
    }
  }
}

function assignedName(assignment: Node): string {
  const name = assignment.childForFieldName("name");
  // a[i]=x assigns a.
  return (name?.type === "subscript" ? name.childForFieldName("name") : name)?.text ?? "";
}

/**
 * Refuses a simple command whose parts tree-sitter took across a line break. tree-sitter-bash 0.25 misreads a
 * pipeline of three or more commands followed by a line with && or || (`a | b | c` newline `rm -rf / && d`): the
 * first words of the second line become arguments of `c`, so `rm` would never be reported as a program (found by
 * test/unit/fuzz-ssh-command-line.test.ts). Bash never continues a simple command over an unescaped line break —
 * only over backslash-newline — so such a break between the parts of one command (its words, assignments and
 * redirections, and the words inside a redirection, up to a here-document's body) means the tree is wrong.
 */
function oneLine(parts: readonly (Node | null)[], ctx: Ctx): void {
  let prevEnd = -1;
  for (const n of parts) {
    if (!n) continue;
    if (n.type === "heredoc_body") return; // the body starts on the next line by definition
    if (prevEnd >= 0 && n.startIndex > prevEnd) {
      for (let i = prevEnd; i < n.startIndex; i++) {
        if (ctx.src.charCodeAt(i) === 0x0a && ctx.src.charCodeAt(i - 1) !== 0x5c)
          throw new CommandLineError(
            "unparsable",
            `${ctx.where}a line break at ${position(ctx.src, i)} is read as part of the command before it, which the gateway's parser gets wrong here; end that command with ';' before the line break`,
          );
      }
    }
    if (n.type.endsWith("_redirect")) oneLine(n.children, ctx);
    prevEnd = n.endIndex;
  }
}

function redirectParts(node: Node): { op: string; destinations: Node[] } {
  let fd = "";
  let op = "";
  const destinations: Node[] = [];
  for (const c of node.children) {
    if (!c || c.type === "comment") continue;
    if (c.type === "file_descriptor") fd = c.text;
    else if (!op && REDIRECT_OPS.has(c.type)) op = c.type;
    else destinations.push(c);
  }
  return { op: fd + op, destinations };
}

/** A here-document body as a script: literal with a quoted delimiter, or when it holds no expansion. */
function heredocInput(node: Node): Stdin {
  let quoted = false;
  let strip = false;
  let body: Node | null = null;
  for (const c of node.children) {
    if (!c) continue;
    if (c.type === "<<-") strip = true;
    else if (c.type === "heredoc_start") quoted = /['"\\]/.test(c.text);
    else if (c.type === "heredoc_body") body = c;
  }
  let text = body?.text ?? "";
  if (!quoted) {
    if (/[$`]/.test(text)) return { dynamic: true };
    text = text.replace(/\\([$`\\\n])/g, (_, c: string) => (c === "\n" ? "" : c));
  }
  return { text: strip ? text.replace(/^\t+/gm, "") : text };
}

function herestringInput(node: Node, src: string): Stdin {
  const value = node.children.filter((c): c is Node => c !== null && c.type !== "<<<");
  const w = wordOf(value, src);
  return w.dynamic ? { dynamic: true } : { text: `${w.text}\n` };
}

/** The server side of scp: `scp -t` receives (an upload), `scp -f` sends (a download). */
function scpTransfer(c: SimpleCommand): ParsedLine["transfer"] {
  if (basename(c.program) !== "scp") return null;
  let to = false;
  let from = false;
  const paths: string[] = [];
  let options = true;
  for (let i = 0; i < c.args.length; i++) {
    const a = c.args[i] as string;
    if (options && a === "--") options = false;
    else if (options && a.length > 1 && a[0] === "-") {
      for (const o of a.slice(1)) {
        if (o === "t") to = true;
        else if (o === "f") from = true;
        // Client options with an argument, in case a client passes them on.
        else if ("cFiJloPSX".includes(o)) i++;
      }
    } else {
      options = false;
      paths.push(a);
    }
  }
  if (to === from) return null;
  return { direction: to ? "upload" : "download", paths };
}
