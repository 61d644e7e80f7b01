// The ARGV of rate_limiter.lua's rich and batch calls (its header documents them): the one place that knows positions.
import type { RateLimitAlgorithm } from './limiter.js';

/** 0-based ARGV positions the calls fill in; the rest comes from the rules and options. */
const TIME = 2;
const COST = 5;
const MODE = 6;
const REQUEST_ID = 8;

/** What the script needs of one rule. */
export interface RuleArgs {
  limit: number;
  windowMs: number;
  capacity: number;
}

/**
 * Builds the ARGV of every call of one limiter from a template made once: rule 1, algorithm, a `limit` of
 * cost 1 at server time, the block, no request id, then the other rules. Each call copies it and fills in
 * what differs, which is cheaper on the hot path than building it anew.
 */
export class ScriptArgs {
  private readonly template: (string | number)[];

  constructor(rules: readonly RuleArgs[], algorithm: RateLimitAlgorithm, blockMs: number) {
    const [first, ...rest] = rules;
    this.template = [first!.limit, first!.windowMs / 1000, '', first!.capacity, algorithm, 1, 'limit', blockMs, ''];
    for (const r of rest) this.template.push(r.limit, r.windowMs / 1000, r.capacity);
  }

  /** One check: its cost, `limit` or `peek`, the caller's time in ms (default: the server's), a request id. */
  check(cost: number, mode: 'limit' | 'peek', nowMs?: number, requestId?: string): (string | number)[] {
    const args = this.template.slice();
    args[COST] = cost;
    if (mode === 'peek') args[MODE] = mode;
    if (nowMs !== undefined) args[TIME] = nowMs / 1000;
    if (requestId !== undefined) args[REQUEST_ID] = requestId;
    return args;
  }

  /** A batch of `limit` checks at server time: their count, then one cost each after the rules. */
  batch(checks: readonly { cost: number }[]): (string | number)[] {
    const args = this.template.slice();
    args[COST] = checks.length;
    args[MODE] = 'batch';
    for (const check of checks) args.push(check.cost);
    return args;
  }
}
