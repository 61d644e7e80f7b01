// A named limiter's definition (algorithm, rules, block, policies, refusal log) kept in Redis, so tools can open it by name.
import { CyRedisError, REGISTRY_MAX_ENTRIES, REGISTRY_REFRESH_MS, REGISTRY_TTL_MS, registryKey, type RedisClient } from '@cyredis/core';
import type { RateLimitAlgorithm, RateLimitRule, ResolvedOptions } from './options.js';

/** Version of the stored format: a definition with another one is refused rather than misread. */
const FORMAT = 1;

/** What `RateLimiter.open` rebuilds a limiter from: the options that decide its keys and what it answers. */
export interface StoredDefinition {
  algorithm: RateLimitAlgorithm;
  rules: RateLimitRule[];
  blockMs: number;
  policies: boolean;
  /** `recordRefusals.maxEntries`, or 0 without a refusal log. */
  recordRefusals: number;
}

/**
 * The hash of definitions under `prefix`: `<prefix>:registry:ratelimit:defs`, name → JSON
 * `{ v, algorithm, rules, blockMs, policies, recordRefusals, atMs }`. No hash tag: one slot on a cluster.
 */
export function definitionKey(prefix: string, kind: string): string {
  return `${registryKey(prefix, kind)}:defs`;
}

/** The stored form of a limiter's resolved options. */
export function definitionOf(resolved: ResolvedOptions): StoredDefinition {
  return {
    algorithm: resolved.algorithm,
    rules: resolved.rules.map((r) => (r.capacity === r.limit ? { limit: r.limit, windowMs: r.windowMs } : { limit: r.limit, windowMs: r.windowMs, burst: r.capacity })),
    blockMs: resolved.blockMs,
    policies: resolved.policies,
    recordRefusals: resolved.maxRecordedRefusals ?? 0,
  };
}

/**
 * The definition stored for `name` (the `HGET` reply), or undefined when there is none or it was last
 * written more than `REGISTRY_TTL_MS` ago; one this version cannot read is a `CyRedisError`.
 */
export function decodeDefinition(name: string, raw: string | null): StoredDefinition | undefined {
  if (raw === null) return undefined;
  let stored: Partial<StoredDefinition> & { v?: unknown; atMs?: unknown };
  try {
    stored = JSON.parse(raw) as typeof stored;
  } catch {
    stored = {};
  }
  if (stored.v !== FORMAT || typeof stored.atMs !== 'number' || !Array.isArray(stored.rules)) {
    throw new CyRedisError(`rate limiter "${name}": its stored definition is not in a format this version reads (format ${FORMAT})`);
  }
  if (stored.atMs < Date.now() - REGISTRY_TTL_MS) return undefined;
  const { algorithm, rules, blockMs, policies, recordRefusals } = stored as StoredDefinition;
  return { algorithm, rules, blockMs, policies, recordRefusals };
}

/**
 * Writes one limiter's definition off the caller's path, at most once per `REGISTRY_REFRESH_MS` (as the name
 * registry does): `HSET` and `PEXPIRE` (the hash goes a day after its last write) plus `HLEN`; when the hash
 * holds more than `REGISTRY_MAX_ENTRIES` names, one more round drops the stale and the least recently written.
 * Processes defining the same name differently overwrite each other: the last write wins.
 */
export class DefinitionRecorder {
  /** When the definition may be written again. */
  private due = 0;

  constructor(
    private readonly client: RedisClient,
    private readonly key: string,
    private readonly name: string,
    private readonly definition: StoredDefinition,
    private readonly onError: (error: unknown) => void,
  ) {}

  /** Notes a use now; writes the definition when its last write is older than the refresh interval. */
  record(): void {
    const now = Date.now();
    if (now < this.due) return;
    this.due = now + REGISTRY_REFRESH_MS;
    const value = JSON.stringify({ v: FORMAT, ...this.definition, atMs: now });
    this.client
      .pipeline()
      .hset(this.key, this.name, value)
      .pexpire(this.key, REGISTRY_TTL_MS)
      .hlen(this.key)
      .exec()
      .then((replies) => (Number(replies?.[2]?.[1]) > REGISTRY_MAX_ENTRIES ? this.trim() : undefined))
      .catch(this.onError);
  }

  /** Drops the definitions not written within the TTL, then the oldest past the bound. */
  private async trim(): Promise<void> {
    const all = await this.client.hgetall(this.key);
    const byAge = Object.entries(all)
      .map(([name, raw]) => ({ name, atMs: atMsOf(raw) }))
      .sort((a, b) => b.atMs - a.atMs);
    const cutoff = Date.now() - REGISTRY_TTL_MS;
    const drop = byAge.filter((d, i) => i >= REGISTRY_MAX_ENTRIES || d.atMs < cutoff).map((d) => d.name);
    if (drop.length > 0) await this.client.hdel(this.key, ...drop);
  }
}

/** When a stored definition was written; 0 (oldest) when it cannot be read. */
function atMsOf(raw: string): number {
  try {
    const atMs = (JSON.parse(raw) as { atMs?: unknown }).atMs;
    return typeof atMs === 'number' ? atMs : 0;
  } catch {
    return 0;
  }
}
