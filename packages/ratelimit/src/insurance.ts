// The in-process limiter behind `insurance`: decides by GCRA in this process's memory while Redis is unreachable.
import type { CyRedisError } from '@cyredis/core';
import type { RateLimitResult, ResolvedRule } from './options.js';

/**
 * GCRA per id in a `Map` (least recently used first, at most `maxIds`): each id's theoretical arrival time
 * in ms. Admits `capacity` back to back from idle, then one every `windowMs / limit`.
 */
export class Insurance {
  private readonly tats = new Map<string, number>();
  private readonly intervalMs: number;
  private readonly toleranceMs: number;

  constructor(
    private readonly rule: ResolvedRule,
    private readonly maxIds: number,
  ) {
    this.intervalMs = rule.windowMs / rule.limit;
    this.toleranceMs = rule.capacity * this.intervalMs;
  }

  /** Decides `cost` units for `id` now (a refund, negative, gives units back); a `peek` consumes nothing. */
  limit(id: string, cost: number, error: CyRedisError, peek = false): RateLimitResult {
    const now = performance.now();
    const stored = Math.max(this.tats.get(id) ?? now, now);
    const tat = Math.max(stored + cost * this.intervalMs, now);
    const allowed = cost <= 0 || tat - now <= this.toleranceMs;
    const shown = allowed && !peek ? tat : stored;
    if (allowed && !peek) this.remember(id, tat);
    return {
      allowed,
      remaining: Math.max(Math.floor((now + this.toleranceMs - shown) / this.intervalMs + 1e-9), 0),
      limit: this.rule.capacity,
      resetMs: Math.ceil(shown - now),
      // A cost above the capacity never fits.
      retryAfterMs: allowed ? 0 : cost > this.rule.capacity ? Infinity : Math.ceil(tat - this.toleranceMs - now),
      windowMs: this.rule.periodMs,
      rule: 0,
      error,
    };
  }

  private remember(id: string, tat: number): void {
    this.tats.delete(id);
    if (this.tats.size >= this.maxIds) this.tats.delete(this.tats.keys().next().value!);
    this.tats.set(id, tat);
  }
}
