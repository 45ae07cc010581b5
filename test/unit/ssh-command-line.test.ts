// SSH exec command lines (src/proxy/ssh/command-line.ts): a table of lines, each with the exact commands the
// parser must report (program, args, sudo, wrappers, assigns, origin), and where it matters the redirects,
// features and scp transfer; then the errors (each with its code and a message naming the problem), the limits,
// and a loop of random shell-ish lines that must only ever fail with CommandLineError and leave the parser
// healthy.
// biome-ignore-all lint/suspicious/noTemplateCurlyInString: shell lines, not templates
import t from "tap";
import {
  CommandLineError,
  type CommandLineParser,
  loadCommandLineParser,
  type ParsedLine,
  type Redirect,
  type SimpleCommand,
} from "../../src/proxy/ssh/command-line.js";

const parser = await loadCommandLineParser();

/** A command; sudo, wrappers, assigns and origin default to the plain top-level case. */
function c(program: string, args: string[] = [], more: Partial<SimpleCommand> = {}): SimpleCommand {
  return { program, args, sudo: false, wrappers: [], assigns: [], origin: "line", ...more };
}
const sub = (program: string, args: string[] = [], more: Partial<SimpleCommand> = {}) =>
  c(program, args, { origin: "substitution", ...more });
const sh = (program: string, args: string[] = [], more: Partial<SimpleCommand> = {}) =>
  c(program, args, { origin: "shell -c", ...more });

interface Expect {
  commands: SimpleCommand[];
  redirects?: Redirect[];
  features?: string[];
  sudo?: boolean;
  transfer?: ParsedLine["transfer"];
}

const CASES: Array<[string, Expect]> = [
  // --- lists, pipelines, grouping -----------------------------------------------------------------------
  ["ls -la /var/log", { commands: [c("ls", ["-la", "/var/log"])], features: [], redirects: [], sudo: false }],
  [
    "sudo systemctl restart app && journalctl -u app | tail -n 50",
    {
      commands: [
        c("systemctl", ["restart", "app"], { sudo: true, wrappers: ["sudo"] }),
        c("journalctl", ["-u", "app"]),
        c("tail", ["-n", "50"]),
      ],
      features: ["and", "pipeline"],
      sudo: true,
    },
  ],
  ["a | b |& c", { commands: [c("a"), c("b"), c("c")], features: ["pipeline"] }],
  ["a; b\nc", { commands: [c("a"), c("b"), c("c")], features: ["sequence"] }],
  ["a || b", { commands: [c("a"), c("b")], features: ["or"] }],
  ["ls;", { commands: [c("ls")], features: [] }],
  ["sleep 9 & echo x", { commands: [c("sleep", ["9"]), c("echo", ["x"])], features: ["background"] }],
  ["a && b &", { commands: [c("a"), c("b")], features: ["and", "background"] }],
  ["(cd /tmp; ls)", { commands: [c("cd", ["/tmp"]), c("ls")], features: ["sequence", "subshell"] }],
  ["{ a; b; } || c", { commands: [c("a"), c("b"), c("c")], features: ["group", "or", "sequence"] }],
  ["! grep -q x f", { commands: [c("grep", ["-q", "x", "f"])], features: ["negation"] }],
  ["ls # rm -rf / $(id)", { commands: [c("ls")], features: [] }],
  // --- substitutions ------------------------------------------------------------------------------------
  ["echo $(whoami)", { commands: [c("echo", ["$(whoami)"]), sub("whoami")], features: ["substitution"] }],
  ["echo `id -u`", { commands: [c("echo", ["`id -u`"]), sub("id", ["-u"])], features: ["substitution"] }],
  [
    'echo "x$(ls `pwd` $(id -u))y"',
    {
      commands: [
        c("echo", ['"x$(ls `pwd` $(id -u))y"']),
        sub("ls", ["`pwd`", "$(id -u)"]),
        sub("pwd"),
        sub("id", ["-u"]),
      ],
      features: ["substitution"],
    },
  ],
  [
    // nested backticks: bash unescapes \` and parses again
    "echo `echo \\`id\\``",
    {
      commands: [c("echo", ["`echo \\`id\\``"]), sub("echo", ["`id`"]), sub("id")],
      features: ["substitution"],
    },
  ],
  [
    "sudo rm $(cat list)",
    { commands: [c("rm", ["$(cat list)"], { sudo: true, wrappers: ["sudo"] }), sub("cat", ["list"])] },
  ],
  [
    "diff <(ls a) >(cat)",
    {
      commands: [c("diff", ["<(ls a)", ">(cat)"]), sub("ls", ["a"]), sub("cat")],
      features: ["process_substitution"],
    },
  ],
  [
    "x=$(id) y",
    { commands: [sub("id"), c("y", [], { assigns: ["x"] })], features: ["assignment", "substitution"] },
  ],
  ["echo ${x:-$(rm y)}", { commands: [c("echo", ["${x:-$(rm y)}"]), sub("rm", ["y"])] }],
  // --- redirections and here-documents ------------------------------------------------------------------
  [
    "cmd 2>&1 >>out &>all <in 3>x >|f",
    {
      commands: [c("cmd")],
      redirects: [
        { op: "2>&", target: "1" },
        { op: ">>", target: "out" },
        { op: "&>", target: "all" },
        { op: "<", target: "in" },
        { op: "3>", target: "x" },
        { op: ">|", target: "f" },
      ],
      features: ["redirect"],
    },
  ],
  [
    // words after a redirection are still the command's arguments
    'rm >/dev/null -rf "/" 2>/dev/null x',
    {
      commands: [c("rm", ["-rf", "/", "x"])],
      redirects: [
        { op: ">", target: "/dev/null" },
        { op: "2>", target: "/dev/null" },
      ],
    },
  ],
  [">out cmd arg", { commands: [c("cmd", ["arg"])], redirects: [{ op: ">", target: "out" }] }],
  [
    'echo x > "$(mktemp)"',
    { commands: [c("echo", ["x"]), sub("mktemp")], redirects: [{ op: ">", target: '"$(mktemp)"' }] },
  ],
  [
    "cat <<EOF\nhello $x\nEOF",
    { commands: [c("cat")], redirects: [{ op: "<<", target: "" }], features: ["heredoc"] },
  ],
  [
    "cat <<EOF | sh\nhi $(id)\nEOF\necho done",
    {
      commands: [c("cat"), c("sh"), sub("id"), c("echo", ["done"])],
      features: ["heredoc", "pipeline", "sequence", "substitution"],
    },
  ],
  ["rm <<EOF -rf /\nx\nEOF", { commands: [c("rm", ["-rf", "/"])] }],
  ["cat <<EOF && rm x\nbody\nEOF", { commands: [c("cat"), c("rm", ["x"])], features: ["and", "heredoc"] }],
  // --- here-documents and here-strings fed to a shell ---------------------------------------------------
  [
    "bash <<'EOF'\nrm -rf /\nEOF",
    {
      commands: [c("bash"), sh("rm", ["-rf", "/"])],
      redirects: [{ op: "<<", target: "" }],
      features: ["heredoc"],
    },
  ],
  [
    "sudo bash <<EOF\nsystemctl stop app; rm -rf /srv\nEOF",
    {
      commands: [
        c("bash", [], { sudo: true, wrappers: ["sudo"] }),
        sh("systemctl", ["stop", "app"], { sudo: true }),
        sh("rm", ["-rf", "/srv"], { sudo: true }),
      ],
      features: ["heredoc", "sequence"],
    },
  ],
  ["sh -s <<-'X'\n\tid\n\tX", { commands: [c("sh", ["-s"]), sh("id")] }],
  [
    "sh <<< 'rm -rf /'",
    { commands: [c("sh"), sh("rm", ["-rf", "/"])], redirects: [{ op: "<<<", target: "" }] },
  ],
  // a shell with a script file reads the here-document as data, not code
  ["bash deploy.sh <<'EOF'\nrm -rf /\nEOF", { commands: [c("bash", ["deploy.sh"])] }],
  [
    "sudo -s <<'EOF'\nid\nEOF",
    { commands: [c("sh", [], { sudo: true, wrappers: ["sudo"] }), sh("id", [], { sudo: true })] },
  ],
  // --- assignments --------------------------------------------------------------------------------------
  [
    "FOO=1 BAR=secret cmd x",
    { commands: [c("cmd", ["x"], { assigns: ["FOO", "BAR"] })], features: ["assignment"] },
  ],
  ["a=1 b=2", { commands: [], features: ["assignment"] }],
  [
    "export PATH=/x:$PATH TERM; unset A",
    {
      commands: [c("export", ["TERM"], { assigns: ["PATH"] }), c("unset", ["A"])],
      features: ["assignment", "sequence"],
    },
  ],
  // --- wrappers -----------------------------------------------------------------------------------------
  [
    "sudo -u root -g adm -E -H -n -k -- rm x",
    { commands: [c("rm", ["x"], { sudo: true, wrappers: ["sudo"] })] },
  ],
  [
    "sudo --user=deploy --preserve-env=A,B rm x",
    { commands: [c("rm", ["x"], { sudo: true, wrappers: ["sudo"] })] },
  ],
  [
    'sudo -u "$USER" FOO=1 rm x',
    { commands: [c("rm", ["x"], { sudo: true, wrappers: ["sudo"], assigns: ["FOO"] })] },
  ],
  ["sudo -i", { commands: [c("sh", [], { sudo: true, wrappers: ["sudo"] })] }],
  [
    "sudo -i systemctl status",
    { commands: [c("systemctl", ["status"], { sudo: true, wrappers: ["sudo"] })] },
  ],
  ["sudo -e /etc/hosts", { commands: [c("sudoedit", ["/etc/hosts"], { sudo: true, wrappers: ["sudo"] })] }],
  ["sudo -l", { commands: [c("sudo", ["-l"], { sudo: true })] }],
  ["sudo", { commands: [c("sudo", [], { sudo: true })] }],
  ["doas -u root rm x", { commands: [c("rm", ["x"], { sudo: true, wrappers: ["doas"] })] }],
  [
    "/usr/bin/sudo /bin/rm x",
    { commands: [c("/bin/rm", ["x"], { sudo: true, wrappers: ["/usr/bin/sudo"] })] },
  ],
  [
    "env -i -u HOME -C /tmp A=1 B=2 -- x",
    { commands: [c("--", ["x"], { wrappers: ["env"], assigns: ["A", "B"] })] },
  ],
  ["env -i A=1 cmd", { commands: [c("cmd", [], { wrappers: ["env"], assigns: ["A"] })] }],
  ["env - PATH=/bin cmd", { commands: [c("cmd", [], { wrappers: ["env"], assigns: ["PATH"] })] }],
  ["env", { commands: [c("env")] }],
  ["env A=1", { commands: [c("env", ["A=1"])] }],
  ["env -S 'sudo rm' x", { commands: [c("rm", ["x"], { sudo: true, wrappers: ["env", "sudo"] })] }],
  [
    "nice -n 5 cmd; nice -5 cmd; nice --adjustment=3 cmd",
    { commands: [1, 2, 3].map(() => c("cmd", [], { wrappers: ["nice"] })) },
  ],
  ["nice", { commands: [c("nice")] }],
  [
    "timeout -s KILL -k 5 --preserve-status 10s cmd a",
    { commands: [c("cmd", ["a"], { wrappers: ["timeout"] })] },
  ],
  ["timeout 10", { commands: [c("timeout", ["10"])] }],
  ["nohup cmd a &", { commands: [c("cmd", ["a"], { wrappers: ["nohup"] })], features: ["background"] }],
  ["time -p ls", { commands: [c("ls", [], { wrappers: ["time"] })] }],
  ["command -p ls", { commands: [c("ls", [], { wrappers: ["command"] })] }],
  ["command -v ls", { commands: [c("command", ["-v", "ls"])] }],
  ["exec -a name cmd", { commands: [c("cmd", [], { wrappers: ["exec"] })] }],
  ["exec 3>file", { commands: [c("exec")], redirects: [{ op: "3>", target: "file" }] }],
  ["stdbuf -oL -e 0 grep x", { commands: [c("grep", ["x"], { wrappers: ["stdbuf"] })] }],
  ["ionice -c2 -n 7 -t tar c", { commands: [c("tar", ["c"], { wrappers: ["ionice"] })] }],
  ["ionice -p 42", { commands: [c("ionice", ["-p", "42"])] }],
  ["setsid -f sleep 1", { commands: [c("sleep", ["1"], { wrappers: ["setsid"] })] }],
  ["chrt -f 10 cmd", { commands: [c("cmd", [], { wrappers: ["chrt"] })] }],
  [
    "nice -n 5 sudo -u root timeout 10 rm -rf /",
    { commands: [c("rm", ["-rf", "/"], { sudo: true, wrappers: ["nice", "sudo", "timeout"] })], sudo: true },
  ],
  [
    "FOO=1 env BAR=2 sudo BAZ=3 nohup stdbuf -o0 x",
    {
      commands: [
        c("x", [], {
          sudo: true,
          wrappers: ["env", "sudo", "nohup", "stdbuf"],
          assigns: ["FOO", "BAR", "BAZ"],
        }),
      ],
    },
  ],
  // --- shell -c and eval --------------------------------------------------------------------------------
  ["bash -c 'rm -rf /'", { commands: [c("bash", ["-c", "rm -rf /"]), sh("rm", ["-rf", "/"])] }],
  [
    "sh -c 'a | b' name arg",
    { commands: [c("sh", ["-c", "a | b", "name", "arg"]), sh("a"), sh("b")], features: ["pipeline"] },
  ],
  ["bash -lc 'id'", { commands: [c("bash", ["-lc", "id"]), sh("id")] }],
  ["bash -e -o pipefail -c 'id'", { commands: [c("bash", ["-e", "-o", "pipefail", "-c", "id"]), sh("id")] }],
  ["/bin/dash -c id", { commands: [c("/bin/dash", ["-c", "id"]), sh("id")] }],
  [
    "zsh -c id; ksh -c id",
    { commands: [c("zsh", ["-c", "id"]), sh("id"), c("ksh", ["-c", "id"]), sh("id")] },
  ],
  [
    `bash -c "sh -c 'rm -rf /'"`,
    {
      commands: [c("bash", ["-c", "sh -c 'rm -rf /'"]), sh("sh", ["-c", "rm -rf /"]), sh("rm", ["-rf", "/"])],
    },
  ],
  [
    "sudo bash -c 'rm -rf /tmp/x'",
    {
      commands: [
        c("bash", ["-c", "rm -rf /tmp/x"], { sudo: true, wrappers: ["sudo"] }),
        sh("rm", ["-rf", "/tmp/x"], { sudo: true }),
      ],
    },
  ],
  ["bash -c", { commands: [c("bash", ["-c"])] }],
  ["echo a | sh", { commands: [c("echo", ["a"]), c("sh")] }],
  [
    "eval 'a; b' c",
    { commands: [c("eval", ["a; b", "c"]), sh("a"), sh("b", ["c"])], features: ["sequence"] },
  ],
  // --- xargs and find -exec -----------------------------------------------------------------------------
  [
    "find . -name '*.log' | xargs -0 -n 1 -I{} rm -f {}",
    {
      commands: [
        c("find", [".", "-name", "*.log"]),
        c("xargs", ["-0", "-n", "1", "-I{}", "rm", "-f", "{}"]),
        c("rm", ["-f", "{}"], { origin: "xargs" }),
      ],
    },
  ],
  [
    "ls | xargs sudo rm",
    {
      commands: [
        c("ls"),
        c("xargs", ["sudo", "rm"]),
        c("rm", [], { origin: "xargs", sudo: true, wrappers: ["sudo"] }),
      ],
    },
  ],
  ["xargs", { commands: [c("xargs"), c("echo", [], { origin: "xargs" })] }],
  [
    "xargs sh -c 'id'",
    { commands: [c("xargs", ["sh", "-c", "id"]), c("sh", ["-c", "id"], { origin: "xargs" }), sh("id")] },
  ],
  [
    "find / -type f -exec rm -f {} \\; -execdir chmod 600 {} + -ok cat {} ';'",
    {
      commands: [
        c("find", [
          "/",
          "-type",
          "f",
          "-exec",
          "rm",
          "-f",
          "{}",
          ";",
          "-execdir",
          "chmod",
          "600",
          "{}",
          "+",
          "-ok",
          "cat",
          "{}",
          ";",
        ]),
        c("rm", ["-f", "{}"], { origin: "find -exec" }),
        c("chmod", ["600", "{}"], { origin: "find -exec" }),
        c("cat", ["{}"], { origin: "find -exec" }),
      ],
    },
  ],
  [
    "sudo find /srv -exec bash -c 'rm \"$1\"' _ {} \\;",
    {
      commands: [
        c("find", ["/srv", "-exec", "bash", "-c", 'rm "$1"', "_", "{}", ";"], {
          sudo: true,
          wrappers: ["sudo"],
        }),
        c("bash", ["-c", 'rm "$1"', "_", "{}"], { origin: "find -exec", sudo: true }),
        sh("rm", ['"$1"'], { sudo: true }),
      ],
    },
  ],
  // --- functions and control flow -----------------------------------------------------------------------
  ["f(){ rm -rf /; }; f", { commands: [c("rm", ["-rf", "/"]), c("f")], features: ["function", "sequence"] }],
  ["function g { ls; }", { commands: [c("ls")], features: ["function"] }],
  [
    "if test -f x; then a; elif b; then c; else d; fi",
    { commands: [c("test", ["-f", "x"]), c("a"), c("b"), c("c"), c("d")], features: ["control_flow"] },
  ],
  [
    "for i in $(seq 3); do echo $i; done",
    { commands: [sub("seq", ["3"]), c("echo", ["$i"])], features: ["control_flow", "substitution"] },
  ],
  [
    "while read l; do x; done < f",
    { commands: [c("read", ["l"]), c("x")], features: ["control_flow", "redirect"] },
  ],
  ["case $1 in a) b;; *) c;; esac", { commands: [c("b"), c("c")], features: ["control_flow"] }],
  ["[[ -f x ]] && [ -d y ]", { commands: [], features: ["and"] }],
  // --- quoting ------------------------------------------------------------------------------------------
  [
    `echo 'raw $x' "dq \\" \\$x \\\\ \\n" $'a\\tb\\x41\\101\\u00e9' r\\m "r"m 'a'\\''b' $"tr"`,
    { commands: [c("echo", ["raw $x", 'dq " $x \\ \\n', "a\tbAAé", "rm", "rm", "a'b", "tr"])] },
  ],
  ["r\\m -rf /", { commands: [c("rm", ["-rf", "/"])] }],
  [`"/usr/bin/"r'm' x`, { commands: [c("/usr/bin/rm", ["x"])] }],
  ["$'\\x72m' -rf /", { commands: [c("rm", ["-rf", "/"])] }],
  ["echo *.txt ~/x {a,b} \\$HOME", { commands: [c("echo", ["*.txt", "~/x", "{a,b}", "$HOME"])] }],
  ['echo "$HOME" $1 ${a}b', { commands: [c("echo", ['"$HOME"', "$1", "${a}b"])] }],
  ["echo a\\\n b", { commands: [c("echo", ["a", "b"])] }],
  ["", { commands: [], features: [], redirects: [], sudo: false, transfer: null }],
  // --- scp server side ----------------------------------------------------------------------------------
  [
    "scp -t /srv/upload",
    {
      commands: [c("scp", ["-t", "/srv/upload"])],
      transfer: { direction: "upload", paths: ["/srv/upload"] },
    },
  ],
  [
    "scp -r -p -d -t -- /srv/dir",
    {
      commands: [c("scp", ["-r", "-p", "-d", "-t", "--", "/srv/dir"])],
      transfer: { direction: "upload", paths: ["/srv/dir"] },
    },
  ],
  [
    "scp -prf a b",
    { commands: [c("scp", ["-prf", "a", "b"])], transfer: { direction: "download", paths: ["a", "b"] } },
  ],
  [
    "scp -f -- -weird",
    { commands: [c("scp", ["-f", "--", "-weird"])], transfer: { direction: "download", paths: ["-weird"] } },
  ],
  [
    "sudo scp -t /etc",
    {
      commands: [c("scp", ["-t", "/etc"], { sudo: true, wrappers: ["sudo"] })],
      transfer: { direction: "upload", paths: ["/etc"] },
    },
  ],
  ["scp -t x; id", { commands: [c("scp", ["-t", "x"]), c("id")], transfer: null }],
  ["scp a b", { commands: [c("scp", ["a", "b"])], transfer: null }],
];

t.test(`the command line table (${CASES.length} lines)`, async (t) => {
  for (const [line, e] of CASES) {
    t.test(JSON.stringify(line.length > 80 ? `${line.slice(0, 77)}…` : line), async (t) => {
      const r = parser.parse(line);
      t.strictSame(r.commands, e.commands, "commands");
      if (e.redirects) t.strictSame(r.redirects, e.redirects, "redirects");
      if (e.features) t.strictSame(r.features, e.features, "features");
      t.equal(r.sudo, e.sudo ?? e.commands.some((x) => x.sudo), "sudo");
      if (e.transfer !== undefined) t.strictSame(r.transfer, e.transfer, "transfer");
    });
  }
});

/** [line, code, the message matches]. */
const ERRORS: Array<[string, CommandLineError["code"], RegExp]> = [
  ['echo "abc', "unparsable", /unterminated " quote at column 6/],
  ["echo 'abc", "unparsable", /unterminated ' quote at column 6/],
  ["echo $(ls", "unparsable", /missing "\)" at column 10/],
  ["ls )", "unparsable", /syntax error near "\)" at column 4/],
  ["if x; then y", "unparsable", /syntax error near "if x; then y" at column 1/],
  ["a &&", "unparsable", /syntax error/],
  ["ls\0rm", "unparsable", /NUL character at column 3/],
  ["ls\r", "unparsable", /control character U\+000D at column 3/],
  ["echo\x1b[31m", "unparsable", /U\+001B/],
  ["$CMD x", "dynamic_program", /"\$CMD" at column 1\) is not a static word/],
  ["$(echo rm) -rf /", "dynamic_program", /"\$\(echo rm\)" at column 1/],
  ['"$x" a', "dynamic_program", /not a static word/],
  ["${a}b c", "dynamic_program", /not a static word/],
  ["ls; r* -rf /", "dynamic_program", /"r\*" at column 5\) contains glob or brace characters/],
  ["/usr/bin/r{m,} -rf /", "dynamic_program", /"\/usr\/bin\/r\{m,\}" at column 1\) contains glob or brace/],
  ["sudo $CMD", "dynamic_program", /sudo: "\$CMD" is not a static word; cannot tell which program runs/],
  ["sudo -u $U rm", "dynamic_program", /sudo: unquoted expansion "\$U" before the program/],
  ["env $X rm", "dynamic_program", /env: "\$X" is not a static word/],
  ["sudo -Q rm", "dynamic_program", /sudo: unknown option "-Q"/],
  ["timeout --bogus 5 rm", "dynamic_program", /timeout: unknown option "--bogus"/],
  ["env -S 'a \"b\"' x", "dynamic_program", /env -S: only plain words/],
  ['bash -c "$X"', "dynamic_program", /bash -c: the command string "\\"\$X\\"" is not static/],
  ["bash $OPTS -c id", "dynamic_program", /bash: option "\$OPTS" is not a static word/],
  ["bash -c 'sh -c \"$Y\"'", "dynamic_program", /^in the bash -c string: sh -c: the command string/],
  ["eval $cmd", "dynamic_program", /eval: argument "\$cmd" is not static/],
  ["bash <<EOF\nrm $x\nEOF", "dynamic_program", /bash reads a here-document or here-string with expansions/],
  ['sh <<< "$x"', "dynamic_program", /here-string/],
  ["xargs $P", "dynamic_program", /xargs: "\$P" is not a static word/],
  ["find . -exec {} \\;", "dynamic_program", /find -exec: the program is the file found/],
  [
    "bash -c 'echo \"abc'",
    "unparsable",
    /^in the bash -c string: syntax error: unterminated " quote at column 6/,
  ],
  [
    "cat <<EOF\n`id`\nEOF",
    "unparsable",
    /here-document body at line 2, column 1: only \$\(…\) substitutions/,
  ],
  ["cat <<EOF\n$((1+2))\nEOF", "unparsable", /here-document body/],
  ["{ a; } >out b", "unparsable", /words after a redirection of a compound command/],
];

t.test("errors: the code and a message naming what is wrong", async (t) => {
  for (const [line, code, message] of ERRORS) {
    t.test(JSON.stringify(line), async (t) => {
      const err = (() => {
        try {
          parser.parse(line);
        } catch (e) {
          return e;
        }
        return null;
      })();
      t.ok(err instanceof CommandLineError, "a CommandLineError");
      if (!(err instanceof CommandLineError)) return;
      t.equal(err.code, code, "code");
      t.match(err.message, message, "message");
      t.equal(err.name, "CommandLineError");
    });
  }
});

function codeOf(p: CommandLineParser, line: string): string {
  try {
    p.parse(line);
    return "ok";
  } catch (e) {
    return e instanceof CommandLineError ? e.code : `not a CommandLineError: ${e}`;
  }
}

t.test(
  "recursion depth: maxDepth levels of shell -c / eval / here-documents / xargs / find -exec",
  async (t) => {
    /** n nested `bash -c`, innermost runs id. */
    const nest = (n: number): string => (n === 0 ? "id" : `bash -c ${shellQuote(nest(n - 1))}`);
    const four = parser.parse(nest(4));
    t.equal(four.commands.length, 5, "4 levels pass by default");
    t.strictSame(four.commands[4], sh("id"));
    t.equal(codeOf(parser, nest(5)), "too_deep", "5 levels are too deep");
    t.match(messageOf(parser, nest(5)), /deeper than 4 levels/);
    const one = await loadCommandLineParser({ maxDepth: 1 });
    t.equal(codeOf(one, nest(1)), "ok");
    t.equal(codeOf(one, nest(2)), "too_deep");
    t.equal(codeOf(one, "eval 'eval id'"), "too_deep");
    t.equal(codeOf(one, "xargs xargs id"), "too_deep");
    t.equal(codeOf(parser, Array(6).fill("xargs").join(" ")), "too_deep");
    t.equal(
      codeOf(parser, "find . -exec find . -exec find . -exec find . -exec find . -exec id \\;"),
      "too_deep",
    );
    // syntax nesting is bounded too: a long && chain or deep parentheses
    t.equal(codeOf(parser, `${"(".repeat(2000)}a${")".repeat(2000)}`), "too_deep");
    t.equal(codeOf(parser, Array(2000).fill("a").join(" && ")), "too_deep");
    t.equal(codeOf(parser, `echo ${"$(echo ".repeat(1000)}${")".repeat(1000)}`), "too_deep");
  },
);

function shellQuote(s: string): string {
  return `'${s.replaceAll("'", "'\\''")}'`;
}

function messageOf(p: CommandLineParser, line: string): string {
  try {
    p.parse(line);
    return "";
  } catch (e) {
    return (e as Error).message;
  }
}

t.test("size limit: UTF-8 bytes, checked before parsing, without echoing the line", async (t) => {
  const huge = `echo ${"a".repeat(70_000)}`;
  t.equal(codeOf(parser, huge), "too_large");
  t.equal(messageOf(parser, huge), "command line is 70005 bytes; the limit is 65536");
  const small = await loadCommandLineParser({ maxBytes: 10 });
  t.equal(codeOf(small, "echo 1234"), "ok", "9 bytes");
  t.equal(codeOf(small, "echo ééé"), "too_large", "8 characters, 11 bytes");
  t.ok(messageOf(parser, `$X ${"a".repeat(10_000)}`).length < 200, "dynamic program message stays short");
});

t.test("the grammar is loaded once; parsers with other options share it", async (t) => {
  const a = await loadCommandLineParser();
  const b = await loadCommandLineParser({ maxDepth: 2 });
  t.strictSame(a.parse("ls").commands, [c("ls")]);
  t.strictSame(b.parse("ls").commands, [c("ls")]);
});

t.test("random shell-ish lines: only CommandLineError, and the parser keeps working", async (t) => {
  const alphabet = [
    "a",
    "rm",
    " ",
    " ",
    "-",
    "'",
    '"',
    "`",
    "$",
    "(",
    ")",
    "{",
    "}",
    ";",
    "&",
    "|",
    "<",
    ">",
    "\\",
    "\n",
    "=",
    "*",
    "#",
    "bash -c ",
    "sudo ",
    "<<",
    "EOF",
    "$(",
    "!",
  ];
  // a fixed seed: failures reproduce
  let seed = 42;
  const random = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const failures: string[] = [];
  let parsed = 0;
  for (let i = 0; i < 200; i++) {
    let line = "";
    for (let n = 1 + random(12); n > 0; n--) line += alphabet[random(alphabet.length)];
    try {
      parser.parse(line);
      parsed++;
    } catch (e) {
      if (!(e instanceof CommandLineError)) failures.push(`${JSON.stringify(line)}: ${e}`);
    }
  }
  t.strictSame(failures, [], "nothing but CommandLineError");
  t.ok(parsed > 10, `some lines parse (${parsed})`);
  t.strictSame(parser.parse("sudo rm -rf /tmp/x").commands, [
    c("rm", ["-rf", "/tmp/x"], { sudo: true, wrappers: ["sudo"] }),
  ]);
  // many parses after errors: trees are freed (wasm memory would run out otherwise)
  for (let i = 0; i < 20_000; i++) {
    try {
      parser.parse(i % 2 ? `echo "${i}` : `bash -c 'ls ${i} | wc'`);
    } catch {}
  }
  t.strictSame(parser.parse("id").commands, [c("id")]);
});
