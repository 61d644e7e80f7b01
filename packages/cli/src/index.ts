// The programmatic surface of @cyredis/cli: run the command line in-process, or extend it with a command.
export type { CommandSpec, OptionSpec, OptionValue } from './command.js';
export { COMMANDS } from './commands/index.js';
export { Context, type GlobalOptions, type Io, type Sink } from './context.js';
export type { ConnectionSettings } from './connection.js';
export { CliError, EXIT, type ExitCode } from './errors.js';
export { createProgram, main, processIo } from './program.js';
