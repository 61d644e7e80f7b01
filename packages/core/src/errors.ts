/** Base class of every error cyredis throws; `instanceof CyRedisError` catches them all. */
export class CyRedisError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Bad input, refused before any round trip (or by a script before its first write). */
export class InvalidArgumentError extends CyRedisError {
  constructor(
    /** The argument's name as the caller wrote it, e.g. `options.ttlMs` or `args[2]`. */
    readonly argument: string,
    message: string,
  ) {
    super(`${argument}: ${message}`);
  }
}

/** `executeScript` was given a name no script was registered under. */
export class UnknownScriptError extends CyRedisError {
  constructor(
    /** The name that was asked for. */
    readonly scriptName: string,
  ) {
    super(`no script registered as "${scriptName}"`);
  }
}

/** The keys of one call hash to different cluster slots, so no single node can run it. */
export class CrossSlotError extends CyRedisError {
  constructor(
    /** The keys of the call, with the client's `keyPrefix`. */
    readonly keys: readonly string[],
    /** The cluster slot of each key, in the same order. */
    readonly slots: readonly number[],
  ) {
    super(`keys hash to different cluster slots: ${keys.map((k, i) => `${k} → ${slots[i]}`).join(', ')}`);
  }
}

/**
 * Redis answered a script call with an error: a Lua error or `redis.error_reply` (code `ERR`), or a server
 * state such as `BUSY`, `OOM`, `READONLY`, `NOPERM`, `CLUSTERDOWN`. The server did not run the script to
 * completion; a Lua runtime error keeps the writes made before it, which is why scripts validate first.
 */
export class ScriptError extends CyRedisError {
  /** The first word of the reply, e.g. `ERR`, `BUSY`, `OOM`. */
  readonly code: string;

  constructor(
    /** The name the script was registered under. */
    readonly scriptName: string,
    /** The error text Redis returned. */
    readonly redisMessage: string,
    options?: ErrorOptions,
  ) {
    super(`script "${scriptName}" failed: ${redisMessage}`, options);
    this.code = /^[A-Z]+/.exec(redisMessage)?.[0] ?? 'ERR';
  }
}

/**
 * No reply came: the connection failed or closed, the client gave up retrying, or `timeoutMs` passed. The
 * call may or may not have run on the server; treat it as an unknown outcome, never as "did not happen".
 */
export class RedisUnavailableError extends CyRedisError {}

/** `timeoutMs` passed before the reply; the script may still run (or have run) on the server. */
export class RedisTimeoutError extends RedisUnavailableError {
  constructor(
    /** The name the script was registered under. */
    readonly scriptName: string,
    /** The deadline that passed, in ms. */
    readonly timeoutMs: number,
  ) {
    super(`script "${scriptName}" got no reply within ${timeoutMs} ms (outcome unknown)`);
  }
}
