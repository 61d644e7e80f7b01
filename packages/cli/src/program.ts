// Parses the command line with commander, runs the command with its context, and turns every outcome into an exit code.
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import type { CommandSpec, OptionValue } from './command.js';
import { COMMANDS } from './commands/index.js';
import { Context, type GlobalOptions, type Io } from './context.js';
import { describeError, EXIT, type ExitCode } from './errors.js';
import { parseCount } from './output.js';

const VERSION = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

const EXIT_HELP = `
Exit codes: 0 ok, 1 error, 2 usage, 3 not found (or not in the state asked for), 4 Redis unreachable,
5 credentials refused, 6 not confirmed (declined, or no --yes without a terminal).
Environment: REDIS_URL is the default of --url.`;

/** The process's own streams; Ctrl-C is listened for only when a command asks. */
export function processIo(): Io {
  return {
    stdout: process.stdout,
    stderr: process.stderr,
    stdin: process.stdin,
    interactive: process.stdin.isTTY && process.stderr.isTTY,
    interrupted: () =>
      new Promise<void>((resolve) => {
        process.once('SIGINT', () => resolve());
        process.once('SIGTERM', () => resolve());
      }),
  };
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

function globals(options: Record<string, unknown>): GlobalOptions {
  return {
    url: options.url as string,
    cluster: options.cluster === true,
    prefix: options.prefix as string,
    json: options.json === true,
    tlsCa: options.tlsCa as string | undefined,
    tlsCert: options.tlsCert as string | undefined,
    tlsKey: options.tlsKey as string | undefined,
    tlsInsecure: options.tlsInsecure === true,
    timeoutMs: parseCount('--timeout-ms', String(options.timeoutMs), 1, 600_000),
  };
}

/** Adds one command to the program: its arguments, options, `--yes` when destructive, and its action. */
function register(program: Command, spec: CommandSpec, io: Io): void {
  const command = program.command(spec.name).description(spec.summary);
  for (const arg of spec.args) command.argument(arg);
  for (const option of spec.options ?? []) {
    if (option.repeatable) command.option(option.flags, option.description, collect);
    else command.option(option.flags, option.description, option.default);
  }
  if (spec.destructive) command.option('-y, --yes', 'do it without asking', false);
  if (spec.details !== undefined) command.addHelpText('after', `\n${spec.details}`);
  command.action(async (...params: unknown[]) => {
    const self = params[params.length - 1] as Command;
    const ctx = new Context(globals(self.optsWithGlobals()), io);
    try {
      await spec.run(ctx, self.args, self.opts<Record<string, OptionValue>>());
    } finally {
      await ctx.close();
    }
  });
}

/** The `cyredis` program with every command of `commands/index.ts`. */
export function createProgram(io: Io, env: NodeJS.ProcessEnv = process.env): Command {
  const program = new Command('cyredis')
    .description('Inspect and steer cyredis queues, locks, rate limits and caches on Redis.')
    .version(VERSION)
    .option('--url <url>', 'redis://[user:password@]host:port[/db], or rediss:// for TLS', env.REDIS_URL ?? 'redis://localhost:6379')
    .option('--cluster', 'the URL names a node of a Redis Cluster', false)
    .option('--prefix <prefix>', 'the key prefix the objects were created with', 'cyredis')
    .option('--json', 'print JSON (for scripts) instead of tables', false)
    .option('--tls-ca <file>', 'PEM CA bundle to verify the server (turns TLS on)')
    .option('--tls-cert <file>', 'PEM client certificate (turns TLS on)')
    .option('--tls-key <file>', 'PEM client key (turns TLS on)')
    .option('--tls-insecure', 'accept a server certificate that does not verify', false)
    .option('--timeout-ms <ms>', 'how long connecting and each call may take', '5000')
    .addHelpText('after', EXIT_HELP)
    .showHelpAfterError('(add --help for usage)')
    .exitOverride()
    .configureOutput({ writeOut: (text) => io.stdout.write(text), writeErr: (text) => io.stderr.write(text) });
  for (const spec of COMMANDS) register(program, spec, io);
  return program;
}

/** Runs `cyredis` with `argv` (the words after the program name) and resolves with the exit code. */
export async function main(argv: readonly string[], io: Io = processIo(), env: NodeJS.ProcessEnv = process.env): Promise<ExitCode> {
  try {
    await createProgram(io, env).parseAsync([...argv], { from: 'user' });
    return EXIT.ok;
  } catch (err) {
    // Commander has printed its own message (or the help, or the version).
    if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
    const { message, code } = describeError(err);
    io.stderr.write(`cyredis: ${message}\n`);
    return code;
  }
}
