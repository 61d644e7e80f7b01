// Exit codes and the error that carries one: what scripts calling `cyredis` can rely on.
import { InvalidArgumentError, RedisTimeoutError, RedisUnavailableError } from '@cyredis/core';

/** The process exit codes of `cyredis`, documented in the README. */
export const EXIT = Object.freeze({
  /** Done. */
  ok: 0,
  /** Anything else that went wrong (Redis refused a call, a script error, …). */
  error: 1,
  /** Bad usage: unknown command or option, a missing or malformed argument. */
  usage: 2,
  /** The queue, job, limiter, cache or lock named does not exist (or is not in the state asked for). */
  notFound: 3,
  /** Redis could not be reached, or did not answer in time. */
  unreachable: 4,
  /** Redis refused the credentials (`NOAUTH`, `WRONGPASS`, `NOPERM`). */
  auth: 5,
  /** A destructive command was not confirmed: declined at the prompt, or no `--yes` without a terminal. */
  notConfirmed: 6,
});

/** One of the exit codes in `EXIT`. */
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** An error the CLI reports as one line, exiting with `code`. */
export class CliError extends Error {
  constructor(
    message: string,
    /** The exit code. */
    readonly code: ExitCode,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

const UNREACHABLE = /ECONNREFUSED|ENOTFOUND|EHOSTUNREACH|ETIMEDOUT|ECONNRESET|EAI_AGAIN|None of startup nodes|Connection is closed|connect ETIMEDOUT|Stream isn't writeable|Failed to refresh slots cache/i;
const AUTH = /NOAUTH|WRONGPASS|NOPERM|invalid username-password|AUTH failed/i;

/** The one-line message and exit code of any error a command threw. */
export function describeError(err: unknown): { message: string; code: ExitCode } {
  if (err instanceof CliError) return { message: err.message, code: err.code };
  const message = err instanceof Error ? err.message : String(err);
  if (AUTH.test(message)) return { message: `Redis refused the credentials: ${message}`, code: EXIT.auth };
  if (err instanceof InvalidArgumentError) return { message, code: EXIT.usage };
  if (err instanceof RedisUnavailableError || err instanceof RedisTimeoutError || UNREACHABLE.test(message)) {
    return { message: `Redis is unreachable: ${message}`, code: EXIT.unreachable };
  }
  return { message, code: EXIT.error };
}
