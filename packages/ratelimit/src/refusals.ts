// The in-process cache of refused ids (`cacheRefusals`): answers them without Redis until their retry-after has passed.
import type { RateLimitResult } from './options.js';

interface CachedRefusal {
  atMs: number;
  untilMs: number;
  cost: number;
  result: RateLimitResult;
}

/** Refused ids, oldest first (a `Map` keeps insertion order), at most `maxEntries` of them. */
export class RefusalCache {
  private readonly entries = new Map<string, CachedRefusal>();

  constructor(
    private readonly maxEntries: number,
    /** With a block, a refusal holds for any cost. */
    private readonly blocking: boolean,
  ) {}

  /** The remembered refusal of `id` for a call of `cost`, aged to now; undefined when it no longer holds. */
  get(id: string, cost: number): RateLimitResult | undefined {
    const entry = this.entries.get(id);
    if (!entry) return undefined;
    const now = Date.now();
    if (now >= entry.untilMs) {
      this.entries.delete(id);
      return undefined;
    }
    // A refusal at cost c says nothing about a smaller cost, unless the id is blocked.
    if (cost < entry.cost && !this.blocking) return undefined;
    const elapsed = now - entry.atMs;
    return { ...entry.result, retryAfterMs: Math.ceil(entry.untilMs - now), resetMs: Math.max(Math.ceil(entry.result.resetMs - elapsed), 0) };
  }

  /** Remembers a refusal from Redis, evicting the oldest entry when full. */
  remember(id: string, cost: number, result: RateLimitResult): void {
    this.entries.delete(id);
    if (this.entries.size >= this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
    const now = Date.now();
    this.entries.set(id, { atMs: now, untilMs: now + result.retryAfterMs, cost, result });
  }

  forget(id: string): void {
    this.entries.delete(id);
  }
}
