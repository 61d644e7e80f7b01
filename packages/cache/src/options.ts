// SmartCache's options: their types, the limits checked before any round trip, and their validation.
import {
  assertByteLength,
  assertFiniteNumber,
  assertInteger,
  assertOptions,
  assertTimeoutMs,
  defaultCodec,
  durationMs,
  InvalidArgumentError,
  MAX_TIMEOUT_MS,
  optionalMs,
  type Codec,
} from '@cyredis/core';

/** The in-process tier in front of Redis. */
export interface L1Options {
  /** Entries kept in this process (least recently used dropped first). */
  maxEntries: number;
  /** Cap on how long an entry stays in L1, in ms; it never outlives the Redis TTL either way. Default: none. */
  ttlMs?: number;
}

/** Options of `new SmartCache(…)`. */
export interface SmartCacheOptions<T> {
  /** Cache name: every key of the cache lives under this hash tag, so one cache sits on one cluster shard. */
  name: string;
  /** Most entries kept in Redis; the least recently used are evicted beyond it. */
  maxSize: number;
  /** TTL of an entry when `set`/`getOrSet` pass none, in ms. Default: none (entries stay until the LRU evicts them). */
  defaultTtlMs?: number;
  /** Key prefix; default `cyredis`. */
  prefix?: string;
  /** In-process tier in front of Redis, kept coherent across processes over pub/sub; `false` or absent: none. */
  l1?: L1Options | false;
  /** Shortens each TTL by a random fraction up to this (0 ≤ x < 1), so entries set together expire apart. */
  ttlJitter?: number;
  /** Keep entries this many ms past their TTL, served by `getOrSet` only when the loader fails. Default 0. */
  graceMs?: number;
  /** `getOrSet` reloads in the background when a hit has less than this many ms to live. Default 0 (off). */
  staleWhileRevalidateMs?: number;
  /** How long a `getOrSet` loader may hold the key's lease, in ms; a write after that is discarded. Default 10 000. */
  leaseMs?: number;
  /** Deadline of each Redis call, in ms: past it `get` is a miss and `getOrSet` calls the loader. Default 1 000. */
  timeoutMs?: number;
  /** Turns values into strings and back; default: JSON plus Date, Map, Set, BigInt and Buffer. */
  codec?: Codec<T>;
  /** Largest encoded value, in bytes (UTF-8); larger values are refused. Default 1 048 576 (1 MiB). */
  maxValueBytes?: number;
  /** Told about Redis failures that `get`/`getOrSet` absorbed (served as a miss or from the loader). */
  onError?: (error: Error) => void;
}

/** Options of `set`. */
export interface SetOptions {
  /** TTL in ms; default `defaultTtlMs` (or no TTL when the cache has none). */
  ttlMs?: number;
  /** Tags for `deleteByTag` (at most `LIMITS.maxTags`, each 1 to `LIMITS.maxTagBytes` bytes); they replace the entry's old ones. */
  tags?: readonly string[];
}

/** Options of `getOrSet` and `getOrSetWithStatus`. */
export interface GetOrSetOptions extends SetOptions {
  /** Overrides the cache's `staleWhileRevalidateMs` for this call. */
  staleWhileRevalidateMs?: number;
  /**
   * A loader still running after this many ms: serve the stale value (within `graceMs`) while the load goes
   * on and writes its value when done. Without a stale value, keep waiting. Default: none.
   */
  softTimeoutMs?: number;
  /**
   * Reject with `LoaderTimeoutError` after this many ms (waiting for another process's load included) and
   * release the lease, so another caller can load; a late value is not stored. Default: none.
   */
  hardTimeoutMs?: number;
}

/** One entry of `setMany`. */
export interface CacheEntry<T> {
  /** The entry's key within the cache. */
  key: string;
  /** The value to store (through the codec). */
  value: T;
  /** TTL in ms; default `defaultTtlMs`. */
  ttlMs?: number;
  /** Tags, as for `set`. */
  tags?: readonly string[];
}

/** Limits checked before any round trip; sizes and lengths in bytes (UTF-8). */
export const LIMITS = Object.freeze({
  /** A key, and the cache's name. */
  maxKeyBytes: 16_384,
  /** The `prefix` option. */
  maxPrefixBytes: 256,
  /** Default of `maxValueBytes`: an encoded value (a 100 MB value blocked a server for 235 ms). */
  maxValueBytes: 1_048_576,
  /** Ceiling of `maxValueBytes`: Redis' own limit on a string (`proto-max-bulk-len`). */
  valueBytesCeiling: 536_870_912,
  /** A TTL plus `graceMs`, in ms (Redis refuses expire times much past it). */
  maxTtlMs: 2 ** 52,
  /** Tags per entry (each tag is one index member per entry: memory and write time grow with them). */
  maxTags: 16,
  /** A tag, in bytes. */
  maxTagBytes: 256,
});

const SETTINGS = [
  'name', 'maxSize', 'defaultTtlMs', 'prefix', 'l1', 'ttlJitter', 'graceMs', 'staleWhileRevalidateMs', 'leaseMs',
  'timeoutMs', 'codec', 'maxValueBytes', 'onError',
] as const;
const L1_SETTINGS = ['maxEntries', 'ttlMs'] as const;

/** The options of a cache, checked, with defaults filled in and durations in whole ms. */
export interface Settings<T> {
  name: string;
  prefix: string | undefined;
  maxSize: number;
  /** Infinity: no TTL. */
  defaultTtlMs: number;
  ttlJitter: number;
  graceMs: number;
  swrMs: number;
  leaseMs: number;
  timeoutMs: number;
  codec: Codec<T>;
  maxValueBytes: number;
  onError: ((error: Error) => void) | undefined;
  /** undefined: no L1. */
  l1MaxEntries: number | undefined;
  /** Infinity: no cap. */
  l1TtlMs: number;
}

/** Bounds of `graceMs` and `staleWhileRevalidateMs`: 0 (off) up to the longest TTL. */
const ZERO_TO_MAX_TTL = { min: 0, max: LIMITS.maxTtlMs };

/** Checks `new SmartCache` options; throws `InvalidArgumentError` naming the first bad one. */
export function readSettings<T>(options: SmartCacheOptions<T>): Settings<T> {
  assertOptions('options', options, SETTINGS, false);
  assertKey('options.name', options.name);
  if (options.prefix !== undefined) assertByteLength('options.prefix', options.prefix, LIMITS.maxPrefixBytes);
  assertInteger('options.maxSize', options.maxSize, { min: 1 });
  if (options.defaultTtlMs !== undefined) durationMs('options.defaultTtlMs', options.defaultTtlMs);
  const graceMs = optionalMs('options.graceMs', options.graceMs, 0, ZERO_TO_MAX_TTL);
  if (options.defaultTtlMs !== undefined) assertFiniteNumber('options.defaultTtlMs', options.defaultTtlMs, { max: LIMITS.maxTtlMs - graceMs });
  if (options.maxValueBytes !== undefined) assertInteger('options.maxValueBytes', options.maxValueBytes, { min: 1, max: LIMITS.valueBytesCeiling });
  const swrMs = optionalMs('options.staleWhileRevalidateMs', options.staleWhileRevalidateMs, 0, ZERO_TO_MAX_TTL);
  // Waiters sleep on a timer of up to leaseMs: past setTimeout's ceiling it would fire at once, and they
  // would call Redis in a tight loop.
  const leaseMs = optionalMs('options.leaseMs', options.leaseMs, 10_000, { max: MAX_TIMEOUT_MS });
  // A deadline past setTimeout's ceiling would fire at once and fail every call.
  if (options.timeoutMs !== undefined) assertTimeoutMs('options.timeoutMs', options.timeoutMs);
  if (options.codec !== undefined && (typeof options.codec?.encode !== 'function' || typeof options.codec.decode !== 'function')) {
    throw new InvalidArgumentError('options.codec', 'must have encode(value) and decode(text) functions');
  }
  if (options.onError !== undefined && typeof options.onError !== 'function') throw new InvalidArgumentError('options.onError', 'must be a function');
  if (options.ttlJitter !== undefined) {
    assertFiniteNumber('options.ttlJitter', options.ttlJitter, { min: 0 });
    if (options.ttlJitter >= 1) throw new InvalidArgumentError('options.ttlJitter', `must be < 1, got ${options.ttlJitter}`);
  }
  const l1 = options.l1 === false ? undefined : options.l1;
  if (l1 !== undefined) {
    assertOptions('options.l1', l1, L1_SETTINGS, false);
    assertInteger('options.l1.maxEntries', l1.maxEntries, { min: 1 });
    if (l1.ttlMs !== undefined) durationMs('options.l1.ttlMs', l1.ttlMs);
  }
  return {
    name: options.name,
    prefix: options.prefix,
    maxSize: options.maxSize,
    defaultTtlMs: options.defaultTtlMs ?? Number.POSITIVE_INFINITY,
    ttlJitter: options.ttlJitter ?? 0,
    graceMs,
    swrMs,
    leaseMs,
    timeoutMs: options.timeoutMs ?? 1_000,
    codec: options.codec ?? (defaultCodec as Codec<T>),
    maxValueBytes: options.maxValueBytes ?? LIMITS.maxValueBytes,
    onError: options.onError,
    l1MaxEntries: l1?.maxEntries,
    l1TtlMs: l1?.ttlMs ?? Number.POSITIVE_INFINITY,
  };
}

/** A key or cache name: a non-empty, well-formed string of at most `LIMITS.maxKeyBytes` UTF-8 bytes. */
export function assertKey(argument: string, key: unknown): asserts key is string {
  assertByteLength(argument, key, LIMITS.maxKeyBytes);
}

/** A tag: 1 to `LIMITS.maxTagBytes` bytes of well-formed Unicode without U+0000 (the script's separator). */
export function assertTag(argument: string, tag: unknown): asserts tag is string {
  assertByteLength(argument, tag, LIMITS.maxTagBytes);
  if (tag.includes('\0')) throw new InvalidArgumentError(argument, 'must not contain U+0000 (NUL)');
}

/** The tags of an untagged write (shared: never modified). */
export const NO_TAGS: readonly string[] = [];

/** The tags of a write, checked, without repeats (`[]` for none); at most `LIMITS.maxTags`. */
export function readTags(argument: string, tags: unknown): readonly string[] {
  if (tags === undefined) return NO_TAGS;
  if (!Array.isArray(tags)) throw new InvalidArgumentError(argument, 'must be an array of tags');
  const unique = [...new Set<unknown>(tags)];
  if (unique.length > LIMITS.maxTags) throw new InvalidArgumentError(argument, `must hold at most ${LIMITS.maxTags} tags, got ${unique.length}`);
  for (const tag of unique) assertTag(`${argument}[${tags.indexOf(tag)}]`, tag);
  return unique as string[];
}

/** `softTimeoutMs` (≥ 0) and `hardTimeoutMs` (> 0) of a `getOrSet`, at most setTimeout's ceiling; undefined: none. */
export function readLoaderTimeouts(options: GetOrSetOptions): { softMs: number | undefined; hardMs: number | undefined } {
  const softMs = options.softTimeoutMs === undefined ? undefined : durationMs('options.softTimeoutMs', options.softTimeoutMs, { min: 0, max: MAX_TIMEOUT_MS });
  if (options.hardTimeoutMs !== undefined) assertTimeoutMs('options.hardTimeoutMs', options.hardTimeoutMs);
  return { softMs, hardMs: options.hardTimeoutMs === undefined ? undefined : Math.ceil(options.hardTimeoutMs) };
}
