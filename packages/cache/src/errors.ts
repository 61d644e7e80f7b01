// The error SmartCache adds to core's: a getOrSet whose loader ran past its hardTimeoutMs.
import { CyRedisError } from '@cyredis/core';

/** A `getOrSet` loader (or the wait for another process's) ran past `hardTimeoutMs`; its lease was released. */
export class LoaderTimeoutError extends CyRedisError {
  constructor(
    /** The cache key. */
    readonly key: string,
    /** The `hardTimeoutMs` that passed. */
    readonly timeoutMs: number,
  ) {
    super(`getOrSet("${key}"): no value within hardTimeoutMs (${timeoutMs} ms)`);
  }
}
