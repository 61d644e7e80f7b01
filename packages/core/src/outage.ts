// Which failures of a Redis call are outages, and the one typed error each failure becomes.
import { CyRedisError, RedisTimeoutError, RedisUnavailableError, ScriptError } from './errors.js';

/** What `classifyError` needs to name the failure. */
export interface ErrorContext {
  /**
   * Starts the message of a `RedisUnavailableError`, e.g. `script "cyredis:lock:distributed_lock"` or
   * `reset of "user-1" failed`; the ioredis message follows after `: `.
   */
  label: string;
  /** The script (or command) named by a `ScriptError` or `RedisTimeoutError`; default: `label`. */
  scriptName?: string;
  /**
   * The client's `commandTimeout`, when one is set: its "Command timed out" then becomes a
   * `RedisTimeoutError` with this deadline (without it, a plain `RedisUnavailableError`).
   */
  timeoutMs?: number;
}

/** ioredis rejects a command past its `commandTimeout` with this message (and no error class of its own). */
const COMMAND_TIMED_OUT = 'Command timed out';

/**
 * The one typed error for whatever a Redis call rejected with. Errors cyredis already typed pass through.
 * A reply from the server (ioredis `ReplyError`: a Lua error, `redis.error_reply`, `BUSY`, `OOM`,
 * `READONLY`, …) becomes `ScriptError`. Everything else means no usable reply came and becomes
 * `RedisUnavailableError`: a refused or lost connection, ioredis' `MaxRetriesPerRequestError`, "Connection is
 * closed", a cluster that ran out of redirections or nodes, an offline queue that is off, a command timeout.
 */
export function classifyError(err: unknown, context: ErrorContext): CyRedisError {
  if (err instanceof CyRedisError) return err;
  const scriptName = context.scriptName ?? context.label;
  if (err instanceof Error && err.name === 'ReplyError') return new ScriptError(scriptName, err.message, { cause: err });
  if (context.timeoutMs !== undefined && err instanceof Error && err.message === COMMAND_TIMED_OUT) {
    return new RedisTimeoutError(scriptName, context.timeoutMs);
  }
  const message = err instanceof Error ? err.message : String(err);
  return new RedisUnavailableError(`${context.label}: ${message}`, { cause: err });
}

/**
 * Whether a (classified) error is an outage, which a fallback policy may absorb: no reply
 * (`RedisUnavailableError`, `RedisTimeoutError`) or a server state that refused the call (`ScriptError` whose
 * code is not `ERR`: `BUSY`, `OOM`, `READONLY`, `LOADING`, `CLUSTERDOWN`, `NOPERM`, …). A script's own `ERR`
 * is a bug or bad input and never an outage; nor is anything that is not a `CyRedisError`, such as a
 * `TypeError` from a caller's codec.
 */
export function isOutage(err: unknown): boolean {
  return err instanceof RedisUnavailableError || (err instanceof ScriptError && err.code !== 'ERR');
}
