// A Store for express-rate-limit: `rateLimit({ store: new CyRedisStore(redis) })`, deciding with an exact sliding window in one round trip.
import { assertOptions, assertRedisClient, InvalidArgumentError, type RedisClient } from '@cyredis/core';
import type { ClientRateLimitInfo, IncrementResponse, Options, Store } from 'express-rate-limit';
import { RateLimiter } from './limiter.js';
import type { RateLimitAlgorithm, RateLimitResult } from './options.js';

/** Options of `CyRedisStore`; express-rate-limit's own `windowMs` and `limit` are read from the middleware. */
export interface CyRedisStoreOptions {
  /** Key prefix: keys are `<prefix>:ratelimit:{<key>}:…`. Default `'erl'`. */
  prefix?: string;
  /** Default `'sliding-window'` (exact). */
  algorithm?: RateLimitAlgorithm;
  /** Deadline of each Redis call in ms (default 1000); a failure rejects, for `passOnStoreError` to handle. */
  timeoutMs?: number;
  /**
   * The limit to enforce when the middleware's `limit` is a function (which the store cannot call: it sees
   * no request). Default: the middleware's `limit` when it is a number.
   */
  limit?: number;
}

const OPTION_KEYS = ['prefix', 'algorithm', 'timeoutMs', 'limit'] as const;

/**
 * An express-rate-limit `Store` on `RateLimiter`: the middleware keeps its options, headers and handler,
 * and each request costs one script call. A request over the limit is refused by the script and stored
 * nowhere (answered with `totalHits` = limit + 1 and a `resetTime` at its honest retry-after), so
 * hammering a refused key neither extends its wait nor grows its key. `decrement` (for
 * `skipFailedRequests`/`skipSuccessfulRequests`) gives back the newest unit, except for a refused request,
 * which took none.
 */
export class CyRedisStore implements Store {
  /** Keys live in Redis, shared by every process. */
  readonly localKeys = false;
  readonly prefix: string;
  private readonly options: CyRedisStoreOptions;
  private limiter: RateLimiter | undefined;
  /** Why `init` failed (express-rate-limit only logs it): every call rejects with it. */
  private initError: Error | undefined;
  /** Whether refused requests will be decremented (`skipFailedRequests`: a 429 is a failed request). */
  private trackRefusals = false;
  /** Per key, refused requests whose decrement is still to come: that decrement gives nothing back. */
  private readonly refusedPending = new Map<string, number>();

  constructor(
    private readonly redis: RedisClient,
    options: CyRedisStoreOptions = {},
  ) {
    assertRedisClient('redis', redis);
    assertOptions('options', options, OPTION_KEYS);
    this.options = options;
    this.prefix = options.prefix ?? 'erl';
  }

  /** Called by the middleware with its options: builds the limiter for its `windowMs` and `limit`. */
  init(options: Options): void {
    try {
      const limit = this.options.limit ?? options.limit;
      if (typeof limit !== 'number') {
        throw new InvalidArgumentError('options.limit', 'the middleware limit is a function: give CyRedisStore a numeric limit too');
      }
      const { algorithm, timeoutMs } = this.options;
      this.limiter = new RateLimiter(this.redis, { limit, windowMs: options.windowMs, prefix: this.prefix, algorithm, timeoutMs });
      this.trackRefusals = options.skipFailedRequests;
    } catch (err) {
      this.initError = err instanceof Error ? err : new Error(String(err));
      throw err;
    }
  }

  /** The key's current hits and reset time, consuming nothing; undefined when it has none. */
  async get(key: string): Promise<ClientRateLimitInfo | undefined> {
    const result = await this.ready().peek(key);
    if (result.remaining >= result.limit) return undefined;
    return { totalHits: result.limit - result.remaining, resetTime: new Date(Date.now() + result.resetMs) };
  }

  /** Counts one hit, or refuses it (stored nowhere) when the key is at its limit. */
  async increment(key: string): Promise<IncrementResponse> {
    const result = await this.ready().limit(key);
    if (!result.allowed && this.trackRefusals) this.refusedPending.set(key, (this.refusedPending.get(key) ?? 0) + 1);
    return toResponse(result);
  }

  /** Gives back one hit of `key` (the newest), unless it comes for a refused request. */
  async decrement(key: string): Promise<void> {
    const pending = this.refusedPending.get(key);
    if (pending !== undefined) {
      if (pending > 1) this.refusedPending.set(key, pending - 1);
      else this.refusedPending.delete(key);
      return;
    }
    await this.ready().limit(key, { cost: -1 });
  }

  /** Forgets every hit of `key`. */
  async resetKey(key: string): Promise<void> {
    this.refusedPending.delete(key);
    await this.ready().reset(key);
  }

  private ready(): RateLimiter {
    if (this.initError !== undefined) throw this.initError;
    if (this.limiter === undefined) throw new InvalidArgumentError('store', 'CyRedisStore is used before express-rate-limit called init: pass it as the store option');
    return this.limiter;
  }
}

/** A decision as express-rate-limit reads it: over the limit shows as limit + 1 hits, reset at the retry-after. */
function toResponse(result: RateLimitResult): IncrementResponse {
  const now = Date.now();
  if (result.allowed) return { totalHits: result.limit - result.remaining, resetTime: new Date(now + result.resetMs) };
  return { totalHits: result.limit + 1, resetTime: new Date(now + result.retryAfterMs) };
}
