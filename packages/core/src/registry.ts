// A bounded, self-expiring record of which named objects of one kind exist under a prefix, so tools can list them without scanning the keyspace.
import { withDeadline } from './deadline.js';
import type { RedisClient } from './client.js';
import { InvalidArgumentError } from './errors.js';
import { DEFAULT_PREFIX } from './keys.js';
import { classifyError } from './outage.js';
import { assertInteger, assertNonEmptyString, assertOptions, assertRedisClient, assertTimeoutMs } from './validate.js';

/** How often one object refreshes its entry while in use, in ms (at most one write per interval). */
export const REGISTRY_REFRESH_MS = 60_000;
/** An entry not refreshed for this long (an object unused for a day) is left out of listings and removed. */
export const REGISTRY_TTL_MS = 24 * 60 * 60 * 1000;
/** Entries one registry key holds at most: past it, the least recently seen go first. */
export const REGISTRY_MAX_ENTRIES = 10_000;
/** Largest page a listing returns. */
const MAX_PAGE = 1000;

/** One listed object. */
export interface RegistryEntry {
  /** The object's name, as its package recorded it. */
  name: string;
  /** When some process last used it (ms since the epoch, that process's clock). */
  lastSeenMs: number;
}

/** Options of `listRegistry`: a page of entries, most recently seen first. */
export interface RegistryPage {
  /** Entries to return: 1 to 1000. Default 100. */
  limit?: number;
  /** Entries to skip first. Default 0. */
  offset?: number;
}

/** Options of a package's static `list` (`RateLimiter.list`, `SmartCache.list`): whose registry, which page. */
export interface RegistryListOptions extends RegistryPage {
  /** Default `'cyredis'`. */
  prefix?: string;
  /** Give up after this many ms with `RedisUnavailableError`. Default 1000. */
  timeoutMs?: number;
}

/** Bounds of one recorder (the defaults above unless a package needs its own, e.g. a refusal log). */
export interface RecorderBounds {
  /** Least time between two writes of one name, in ms. */
  refreshMs?: number;
  /** A name not used for this long (ms) drops out; also the key's own expiry. */
  ttlMs?: number;
  /** Most names kept; the least recently used go first. */
  maxEntries?: number;
}

/**
 * The registry key of one kind under `prefix`: `<prefix>:registry:<kind>`, a sorted set of names scored by
 * the time each was last seen. It has no hash tag, so on a cluster the whole registry lives in one slot.
 */
export function registryKey(prefix: string, kind: string): string {
  assertNonEmptyString('prefix', prefix, 256);
  if (/[{}]/.test(prefix)) throw new InvalidArgumentError('prefix', 'must not contain { or }');
  return `${prefix}:registry:${kind}`;
}

/**
 * Records names in a bounded sorted set, off the caller's path: `record` costs a clock read and a map lookup,
 * and at most once per `refreshMs` per name sends one pipeline (ZADD, trim by age and by count, PEXPIRE) that
 * nobody awaits. Plain write commands, no MULTI, so an ACL user without `@transaction` can record. A failure
 * goes to `onError` only: the next use after the interval tries again, so a failing server costs one try per interval.
 */
export class NameRecorder {
  private readonly refreshMs: number;
  private readonly ttlMs: number;
  private readonly maxEntries: number;
  /** Name → when it may be written again; cleared when it grows past maxEntries (it only saves writes). */
  private readonly due = new Map<string, number>();

  constructor(
    private readonly client: RedisClient,
    /** The sorted set the names go to. */
    readonly key: string,
    bounds: RecorderBounds = {},
    /** Told of a failed write (the next use after the interval tries again); without it the failure is dropped. */
    private readonly onError?: (error: unknown) => void,
  ) {
    this.refreshMs = bounds.refreshMs ?? REGISTRY_REFRESH_MS;
    this.ttlMs = bounds.ttlMs ?? REGISTRY_TTL_MS;
    this.maxEntries = bounds.maxEntries ?? REGISTRY_MAX_ENTRIES;
    assertInteger('refreshMs', this.refreshMs, { min: 0 });
    assertInteger('ttlMs', this.ttlMs, { min: 1 });
    assertInteger('maxEntries', this.maxEntries, { min: 1 });
  }

  /** Notes that `name` is in use now; writes it when its last write is older than `refreshMs`. */
  record(name: string): void {
    const now = Date.now();
    const due = this.due.get(name);
    if (due !== undefined && now < due) return;
    if (this.due.size >= this.maxEntries) this.due.clear();
    this.due.set(name, now + this.refreshMs);
    this.client
      .pipeline()
      .zadd(this.key, now, name)
      .zremrangebyscore(this.key, '-inf', now - this.ttlMs)
      .zremrangebyrank(this.key, 0, -this.maxEntries - 1)
      .pexpire(this.key, this.ttlMs)
      .exec()
      .catch((err: unknown) => this.onError?.(err));
  }
}

/** Checks a page (`{ limit?, offset? }`, nothing else) and fills in its defaults. */
export function assertRegistryPage(page: RegistryPage, allowed: readonly string[] = PAGE_KEYS): Required<RegistryPage> {
  assertOptions('options', page, allowed);
  const { limit = 100, offset = 0 } = page;
  assertInteger('options.limit', limit, { min: 1, max: MAX_PAGE });
  assertInteger('options.offset', offset, { min: 0 });
  return { limit, offset };
}

const PAGE_KEYS = ['limit', 'offset'] as const;
const LIST_KEYS = ['prefix', 'timeoutMs', ...PAGE_KEYS] as const;
const DEFAULT_LIST_TIMEOUT_MS = 1000;

/**
 * A page of the objects of `kind` used under a prefix within `REGISTRY_TTL_MS`, most recently used first:
 * one read of the registry key, under a deadline. What a package's static `list` answers.
 */
export async function listRegistered(redis: RedisClient, kind: string, options: RegistryListOptions = {}): Promise<RegistryEntry[]> {
  assertRedisClient('redis', redis);
  const page = assertRegistryPage(options, LIST_KEYS);
  const { prefix = DEFAULT_PREFIX, timeoutMs = DEFAULT_LIST_TIMEOUT_MS } = options;
  assertTimeoutMs('options.timeoutMs', timeoutMs);
  const key = registryKey(prefix, kind);
  const label = `listing of ${kind}`;
  try {
    return await withDeadline(listRegistry(redis, key, page), timeoutMs, () => new Error(`no reply within ${timeoutMs} ms`));
  } catch (err) {
    throw classifyError(err, { label });
  }
}

/** A page of the names recorded under `key`, most recently seen first, leaving out those older than `ttlMs`. */
export async function listRegistry(client: RedisClient, key: string, page: RegistryPage = {}, ttlMs = REGISTRY_TTL_MS): Promise<RegistryEntry[]> {
  const { limit, offset } = assertRegistryPage(page);
  const reply = await client.zrevrangebyscore(key, '+inf', `(${Date.now() - ttlMs}`, 'WITHSCORES', 'LIMIT', offset, limit);
  const out: RegistryEntry[] = [];
  for (let i = 0; i + 1 < reply.length; i += 2) out.push({ name: reply[i]!, lastSeenMs: Number(reply[i + 1]) });
  return out;
}
