// A ThrottlerStorage for @nestjs/throttler: `ThrottlerModule.forRoot({ throttlers, storage: new CyRedisThrottlerStorage(redis) })`.
import { assertOptions, assertRedisClient, type RedisClient } from '@cyredis/core';
import { RateLimiter } from './limiter.js';
import type { RateLimitAlgorithm } from './options.js';

/**
 * What `increment` answers, as @nestjs/throttler's `ThrottlerStorageRecord` (times in whole seconds). Declared
 * here rather than imported, so using this module needs no @nestjs/throttler types at compile time.
 */
export interface ThrottlerStorageRecord {
  totalHits: number;
  timeToExpire: number;
  isBlocked: boolean;
  timeToBlockExpire: number;
}

/** Options of `CyRedisThrottlerStorage`; each throttler's `limit`, `ttl` and `blockDuration` come from Nest. */
export interface CyRedisThrottlerStorageOptions {
  /** Key prefix: keys are `<prefix>:ratelimit:{<key>}:…`. Default `'nest'`. */
  prefix?: string;
  /** Default `'sliding-window'` (exact). */
  algorithm?: RateLimitAlgorithm;
  /** Deadline of each Redis call in ms (default 1000); a failure rejects, so the guard's request fails. */
  timeoutMs?: number;
}

const OPTION_KEYS = ['prefix', 'algorithm', 'timeoutMs'] as const;

/**
 * @nestjs/throttler's storage (it has the shape of its `ThrottlerStorage`) on `RateLimiter`: one script call
 * per throttler per request. A throttler
 * admits at most `limit` requests in any `ttl` interval (exactly, with the default sliding window); once
 * it refuses, the key stays refused for `blockDuration` (Nest's default: `ttl`) or until the window admits
 * again, whichever is later, and `Retry-After` says when. Refused requests are stored nowhere.
 */
export class CyRedisThrottlerStorage {
  private readonly limiters = new Map<string, RateLimiter>();
  private readonly options: CyRedisThrottlerStorageOptions;

  constructor(
    private readonly redis: RedisClient,
    options: CyRedisThrottlerStorageOptions = {},
  ) {
    assertRedisClient('redis', redis);
    assertOptions('options', options, OPTION_KEYS);
    this.options = options;
  }

  /** Counts one request of `key` for a throttler of `limit` per `ttl` ms, blocked `blockDuration` ms once over. */
  async increment(key: string, ttl: number, limit: number, blockDuration: number): Promise<ThrottlerStorageRecord> {
    const result = await this.limiterFor(ttl, limit, blockDuration).limit(key);
    const seconds = (ms: number) => Math.ceil(ms / 1000);
    if (result.allowed) return { totalHits: result.limit - result.remaining, timeToExpire: seconds(result.resetMs), isBlocked: false, timeToBlockExpire: 0 };
    return { totalHits: result.limit + 1, timeToExpire: seconds(result.resetMs), isBlocked: true, timeToBlockExpire: seconds(result.retryAfterMs) };
  }

  /**
   * One limiter per setting (a route's `@Throttle` may differ from the module's), made on first use. Nest's
   * key already names the throttler, route and client.
   */
  private limiterFor(ttl: number, limit: number, blockDuration: number): RateLimiter {
    const id = `${ttl}/${limit}/${blockDuration}`;
    let limiter = this.limiters.get(id);
    if (limiter === undefined) {
      const { prefix = 'nest', algorithm, timeoutMs } = this.options;
      limiter = new RateLimiter(this.redis, { limit, windowMs: ttl, blockMs: blockDuration, prefix, algorithm, timeoutMs });
      this.limiters.set(id, limiter);
    }
    return limiter;
  }
}
