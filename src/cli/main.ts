// The `pamgate` command: a thin dispatcher; each subcommand lives in its own module.

import { packageVersion } from "../util/tools.js";
import { approvalsCommand } from "./approvals.js";
import { CliError } from "./args.js";
import { auditCommand } from "./audit.js";
import { bundleCommand } from "./bundle.js";
import { demoCommand } from "./demo.js";
import { evalCommand } from "./eval.js";
import { kubeconfigCommand } from "./kubeconfig.js";
import { policyCommand } from "./policy.js";
import { replayCommand } from "./replay.js";
import { runCommand } from "./run.js";
import { samplesCommand } from "./samples.js";

const USAGE = `usage: pamgate <command> [options]
       pamgate --version

commands:
  demo                         run the gateway on embedded defaults and print psql commands to try (npm start)
  run --config FILE            run the gateway from a YAML configuration (see examples/gateway.yaml)
  samples                      build the example bundle and show verdicts for sample commands (no gateway)
  eval --input FILE [--bundle PATH]
                               evaluate one policy input and print the decision
  bundle build [--policies DIR] [--output FILE] [--revision REV] [--signing-key PEM] [--signing-alg ALG]
               [--capabilities FILE]
                               compile Rego to a wasm bundle, revision = git commit
  bundle inspect BUNDLE [--verification-key PEM] [--verification-alg ALG]
                               show a bundle's revision, entrypoints, files and signature
  policy test [--policies DIR] [--tests DIR] [--fixtures DIR] [--min-coverage N]
                               opa check, opa test with coverage, regal, wasm conformance
  approvals list|get|approve|deny [ID] [--comment TEXT] [--api URL] [--token TOKEN]
                               approval requests through the control-plane API ($PAMGATE_API, $PAMGATE_TOKEN)
  audit verify|tail [--spool DIR | --postgres URL]  check the audit hash chain, or show records as one-liners
  kubeconfig --server URL --cluster NAME [--ca-file PEM] [--token-env VAR | --token T]
                               print a kubeconfig that reaches a cluster through pamgate (kubectl --kubeconfig)
  replay SESSION-ID [--spool DIR] [--speed N] [--cast | --raw]
                               replay a recorded terminal session or print a transcript; --cast prints an
                               asciicast v2 file, --raw the terminal output exactly as the target sent it
`;

const commands: Record<string, (argv: string[]) => Promise<number>> = {
  demo: demoCommand,
  samples: samplesCommand,
  run: runCommand,
  eval: evalCommand,
  bundle: bundleCommand,
  policy: policyCommand,
  approvals: approvalsCommand,
  audit: auditCommand,
  replay: replayCommand,
  kubeconfig: (argv) => kubeconfigCommand(argv),
};

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === "help" || name === "--help" || name === "-h") {
    process.stdout.write(USAGE);
    return name ? 0 : 2;
  }
  if (name === "--version" || name === "-V" || name === "version") {
    process.stdout.write(`pamgate ${packageVersion()}\n`);
    return 0;
  }
  const command = commands[name];
  if (!command) throw new CliError(`unknown command "${name}"\n\n${USAGE}`);
  return command(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    // One readable line; the stack only when asked for, since most failures are bad input, not bugs.
    const message = err instanceof Error ? err.message : String(err);
    process.stderr.write(`pamgate: ${message}\n`);
    if (process.env.PAMGATE_DEBUG && err instanceof Error) process.stderr.write(`${err.stack}\n`);
    process.exitCode = err instanceof CliError ? 2 : 1;
  },
);
