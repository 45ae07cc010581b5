// Flag parsing shared by the subcommands (node:util parseArgs, with errors that name the command).
import { type ParseArgsConfig, parseArgs } from "node:util";

/** A usage error: exit code 2 and the message alone. */
export class CliError extends Error {
  override name = "CliError";
}

type Options = NonNullable<ParseArgsConfig["options"]>;

export function parse<O extends Options>(command: string, argv: string[], options: O, positionals = 0) {
  try {
    const parsed = parseArgs({ args: argv, options, allowPositionals: positionals > 0, strict: true });
    if (parsed.positionals.length > positionals) {
      throw new Error(`unexpected argument "${parsed.positionals[positionals]}"`);
    }
    return parsed;
  } catch (err) {
    throw new CliError(`${command}: ${(err as Error).message}`);
  }
}
