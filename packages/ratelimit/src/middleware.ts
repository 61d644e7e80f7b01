// What the Express, Fastify and Hono middleware share: their options, how they are checked, and one request's check.
import { assertInteger, assertNonEmptyString, assertOptions, InvalidArgumentError } from '@cyredis/core';
import { rateLimitHeaders, type RateLimitHeaderOptions } from './headers.js';
import { RateLimiter } from './limiter.js';
import type { RateLimitResult } from './options.js';

/** Options shared by the Express, Fastify and Hono middleware; `Req` is the framework's request. */
export interface MiddlewareOptions<Req> extends RateLimitHeaderOptions {
  /** The limiter that decides. */
  limiter: RateLimiter;
  /**
   * The id to limit, e.g. the client address or an API key. It must return a non-empty string: anything else
   * is a configuration error that reaches the framework's error handler (use `skip` for requests without one).
   */
  key: (req: Req) => string | Promise<string>;
  /**
   * Units a request costs (an integer). Default 1. A request costing more than the limiter's smallest
   * capacity can never be admitted: it is refused (429, no `Retry-After`) and consumes nothing.
   */
  cost?: (req: Req) => number | Promise<number>;
  /** Requests for which this returns true pass without a check, a round trip or rate-limit fields. */
  skip?: (req: Req) => boolean | Promise<boolean>;
  /** Body of the default 429 reply. Default `'Too Many Requests'`. */
  message?: string;
}

/** What one request's check found: nothing when skipped. */
export interface Checked {
  result: RateLimitResult;
  headers: Record<string, string>;
}

export const DEFAULT_MESSAGE = 'Too Many Requests';

const SHARED_KEYS = ['limiter', 'key', 'cost', 'skip', 'message', 'handler', 'legacy', 'policyName'] as const;

/**
 * Refuses what would fail on every request: no limiter, unknown option keys (naming the nearest valid one),
 * a hook that is not a function. `key` is optional where the framework has a default.
 */
export function checkMiddlewareOptions(options: unknown, keyRequired: boolean): void {
  assertOptions('options', options, SHARED_KEYS, false);
  const o = options as Record<string, unknown>;
  if (!(o.limiter instanceof RateLimiter)) throw new InvalidArgumentError('options.limiter', 'must be a RateLimiter');
  for (const name of ['key', 'cost', 'skip', 'handler']) {
    if (o[name] === undefined && !(name === 'key' && keyRequired)) continue;
    if (typeof o[name] !== 'function') throw new InvalidArgumentError(`options.${name}`, 'must be a function');
  }
  if (o.message !== undefined && typeof o.message !== 'string') throw new InvalidArgumentError('options.message', 'must be a string');
  if (o.legacy !== undefined && typeof o.legacy !== 'boolean') throw new InvalidArgumentError('options.legacy', 'must be a boolean');
  if (o.policyName !== undefined) assertNonEmptyString('options.policyName', o.policyName, 256);
}

/** The smallest capacity of the limiter's rules: the largest cost it can ever admit. */
function maxCost(limiter: RateLimiter): number {
  return Math.min(...limiter.rules.map((r) => r.capacity));
}

/**
 * Runs the limiter for one request and returns the result with its response fields, or `undefined` when
 * `skip` says so. A cost above the capacity is answered as refused from a `peek` (nothing consumed) with
 * `retryAfterMs: Infinity`, since no wait admits it.
 */
export async function check<Req>(options: MiddlewareOptions<Req>, req: Req): Promise<Checked | undefined> {
  if (options.skip && (await options.skip(req))) return undefined;
  const id = await options.key(req);
  assertNonEmptyString('options.key(req)', id);
  const { limiter } = options;
  let result: RateLimitResult;
  if (options.cost) {
    const cost = await options.cost(req);
    assertInteger('options.cost(req)', cost);
    // With policies an override may allow more: the script refuses (for good) what exceeds the id's capacity.
    const never = !limiter.policies && cost > maxCost(limiter);
    result = never ? { ...(await limiter.peek(id)), allowed: false, retryAfterMs: Infinity } : await limiter.limit(id, { cost });
  } else {
    result = await limiter.limit(id);
  }
  return { result, headers: rateLimitHeaders(result, options) };
}
