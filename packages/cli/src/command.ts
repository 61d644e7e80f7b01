// The shape of one `cyredis` command: a name, its arguments and options, and what it runs.
import type { Context } from './context.js';

/** What an option holds: its value, a flag's boolean, a repeatable option's list, or nothing. */
export type OptionValue = string | boolean | string[] | undefined;

/** One option of a command, as commander takes it. */
export interface OptionSpec {
  /** e.g. `--limit <n>` or `--force`. */
  flags: string;
  /** One line for `--help`. */
  description: string;
  /** The value when the option is not given. */
  default?: string | boolean;
  /** May be given several times: the values come as a list. */
  repeatable?: boolean;
}

/**
 * A command. Adding one is a file exporting a `CommandSpec` and one line in `commands/index.ts`.
 */
export interface CommandSpec {
  /** The word that selects it, e.g. `jobs`. */
  name: string;
  /** Its positional arguments in commander's notation, e.g. `['<queue>', '<state>']`. */
  args: readonly string[];
  /** One line for `cyredis --help`. */
  summary: string;
  /** More text for `cyredis <command> --help`. */
  details?: string;
  /** Its own options. */
  options?: readonly OptionSpec[];
  /** Changes or removes data: gets `--yes`, and asks on a terminal without it. */
  destructive?: boolean;
  /** Runs it; throws `CliError` to end with a message and an exit code. */
  run(ctx: Context, args: readonly string[], options: Readonly<Record<string, OptionValue>>): Promise<void>;
}
