// The limiter's tracing channels and typed events: what each operation publishes and what it fills in.
import { Operation, type OperationContext } from '@cyredis/core';
import type { RateLimitResult } from './options.js';

/**
 * `cyredis:ratelimit:limit`: `name` (the limiter's), `key` (the id), then `outcome` (`admitted` or `refused`)
 * and `rule` (the binding rule's index).
 */
export const LIMIT = new Operation('ratelimit', 'limit');
/** `cyredis:ratelimit:peek`: as `limit`, consuming nothing. */
export const PEEK = new Operation('ratelimit', 'peek');
/** `cyredis:ratelimit:reset`: `name`, `key`. */
export const RESET = new Operation('ratelimit', 'reset');

/** Fills in a check's outcome from its result. */
export function settleCheck(ctx: OperationContext, result: RateLimitResult): void {
  ctx.outcome = result.allowed ? 'admitted' : 'refused';
  ctx.rule = result.rule;
}

/** The events a `RateLimiter` emits, with their arguments. */
export interface RateLimiterEvents {
  /**
   * A `limit` call was refused (opt-in: emitted only while someone listens, so an unheard refusal costs one
   * listener count).
   */
  refused: [id: string, result: RateLimitResult];
  /**
   * A background write failed (the registry of named limiters, or the log of `recordRefusals`): the limiter
   * keeps going and tries again later. Emitted only while someone listens.
   */
  error: [error: unknown];
}
