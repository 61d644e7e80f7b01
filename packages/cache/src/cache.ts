// SmartCache: the typed API over smart_cache.lua, with batching, stampede protection and the L1 tier.
import { randomBytes } from 'node:crypto';
import {
  assertFiniteNumber,
  assertInteger,
  assertNonEmptyString,
  assertOptions,
  assertPositiveMs,
  assertRedisClient,
  InvalidArgumentError,
  KeySpace,
  LuaScriptManager,
  pairsToRecord,
  readPackageLua,
  RedisUnavailableError,
  ScriptError,
  TickBatcher,
  toArray,
  toNumber,
  clientKeyPrefix,
  duplicateClient,
  waitAtMost,
  withDeadline,
  type RedisClient,
  type RegisteredScript,
  type ScriptArg,
  defaultCodec,
  type Codec,
} from '@cyredis/core';
import { MemoryTier } from './l1.js';

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
}

/** Options of `getOrSet`. */
export interface GetOrSetOptions extends SetOptions {
  /** Overrides the cache's `staleWhileRevalidateMs` for this call. */
  staleWhileRevalidateMs?: number;
}

/** One entry of `setMany`. */
export interface CacheEntry<T> {
  /** The entry's key within the cache. */
  key: string;
  /** The value to store (through the codec). */
  value: T;
  /** TTL in ms; default `defaultTtlMs`. */
  ttlMs?: number;
}

/** What `stats` reports. */
export interface CacheStats {
  /** Redis lookups that found a fresh entry (shared by every process). */
  hits: number;
  /** Redis lookups that found nothing fresh (shared). */
  misses: number;
  /** Entries written (shared). */
  sets: number;
  /** Live entries removed to stay within `maxSize` (shared). */
  evictions: number;
  /** Entries in the access log (may include expired ones not yet swept). */
  size: number;
  /** The size limit the last write enforced. */
  maxSize: number;
  /** hits / (hits + misses), 0 before any lookup. */
  hitRate: number;
  /** Lookups this process answered from L1 (not counted in `hits`). */
  l1Hits: number;
  /** Entries in this process's L1. */
  l1Size: number;
}

/** Computes a missing value for `getOrSet`. */
export type Loader<T> = () => T | Promise<T>;

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
});

const SETTINGS = [
  'name', 'maxSize', 'defaultTtlMs', 'prefix', 'l1', 'ttlJitter', 'graceMs', 'staleWhileRevalidateMs', 'leaseMs',
  'timeoutMs', 'codec', 'maxValueBytes', 'onError',
] as const;
const SET_SETTINGS = ['ttlMs'] as const;
const GET_OR_SET_SETTINGS = ['ttlMs', 'staleWhileRevalidateMs'] as const;
const L1_SETTINGS = ['maxEntries', 'ttlMs'] as const;
const ENTRY_FIELDS = ['key', 'value', 'ttlMs'] as const;
/** The script's ttl for an entry without one. */
const NO_TTL = 'none';

const SCRIPT = 'smart_cache';
const CLEAR_BATCH = 1000;
/** Plain reads are reported to Redis (LRU order, hit/miss counts) at most this late, in batches of up to TOUCH_BATCH. */
const TOUCH_FLUSH_MS = 5;
const TOUCH_BATCH = 256;
/**
 * Operations per batched call at most. Measured at 64 in flight: 32 (two calls in flight, so the server runs
 * one while the client handles the other's replies) beat both 16 and 64.
 */
const BATCH_SIZE = 32;
let source: string | undefined;

/**
 * One operation of a tick's batch: a lookup, a write without a lease, or any other script call (sent as it
 * is, in its place, so the calls of this instance keep the order they were made in).
 */
type Op =
  | { kind: 'get'; key: string }
  | { kind: 'set'; key: string; text: string; ttlMs: number }
  | { kind: 'call'; args: readonly ScriptArg[]; entry: string; more: readonly string[] };

/** The reply of an operation whose command failed (a batch settles per operation, never as a whole). */
class Failed {
  constructor(readonly error: unknown) {}
}

/** Errors a cache read absorbs: anything but bad input and a script's own `ERR` (a bug, not an outage). */
function isOutage(err: unknown): boolean {
  return !(err instanceof InvalidArgumentError) && !(err instanceof ScriptError && err.code === 'ERR');
}

/**
 * An LRU-bounded Redis cache with shared statistics, cross-process stampede protection and an optional
 * in-process L1 tier. Call `close()` when done: it closes the pub/sub connection the cache may open.
 */
export class SmartCache<T = unknown> {
  /** The cache's name (its hash tag). */
  readonly name: string;
  /** Entries kept in Redis at most. */
  readonly maxSize: number;
  private readonly scripts: LuaScriptManager;
  private readonly script: RegisteredScript;
  private readonly codec: Codec<T>;
  private readonly l1: MemoryTier<T> | undefined;
  private readonly l1TtlMs: number;
  /** Infinity: no TTL. */
  private readonly defaultTtlMs: number;
  private readonly maxValueBytes: number;
  private readonly ttlJitter: number;
  private readonly graceMs: number;
  private readonly swrMs: number;
  private readonly leaseMs: number;
  private readonly timeoutMs: number;
  private readonly onError: ((error: Error) => void) | undefined;
  private readonly entryPrefix: string;
  private readonly leasePrefix: string;
  private readonly logKey: string;
  private readonly statsKey: string;
  private readonly channel: string;
  private readonly busKeyStart: number;
  /** Origin of this instance's messages and prefix of its lease tokens. */
  private readonly id = randomBytes(8).toString('hex');
  private tokens = 0;
  /** Bumped by every invalidation: a read that saw it change may hold an old value and must not fill L1. */
  private epoch = 0;
  /** Subscribed and connected: only then can L1 trust that it hears every invalidation. */
  private live = false;
  private closed = false;
  private subscriber: RedisClient | undefined;
  private subscribed: Promise<void> | undefined;
  /**
   * Reads without L1 or grace need no TTL, so they are plain `MGET`s; the lookups they make (LRU touch, hit
   * and miss counts) are sent as one TOUCH every `TOUCH_FLUSH_MS` (or 256 lookups), and always before any
   * script call of this cache on the connection, so this process's own order stays exact.
   */
  private readonly plainReads: boolean;
  private touchHits: string[] = [];
  private touchMisses: string[] = [];
  private touchTimer: NodeJS.Timeout | undefined;
  private readonly batcher: TickBatcher<Op, unknown>;
  private readonly loading = new Map<string, Promise<T>>();
  private readonly waiters = new Map<string, Set<() => void>>();

  constructor(
    private readonly redis: RedisClient,
    options: SmartCacheOptions<T>,
  ) {
    assertRedisClient('redis', redis);
    assertOptions('options', options, SETTINGS, false);
    assertKey('options.name', options.name);
    if (options.prefix !== undefined) assertKey('options.prefix', options.prefix, LIMITS.maxPrefixBytes);
    assertInteger('options.maxSize', options.maxSize, { min: 1 });
    if (options.defaultTtlMs !== undefined) assertPositiveMs('options.defaultTtlMs', options.defaultTtlMs);
    const ms = (name: string, value: number | undefined, fallback: number) => {
      if (value === undefined) return fallback;
      assertFiniteNumber(name, value, { min: 0, max: LIMITS.maxTtlMs });
      return Math.ceil(value);
    };
    this.name = options.name;
    this.maxSize = options.maxSize;
    this.graceMs = ms('options.graceMs', options.graceMs, 0);
    if (options.defaultTtlMs !== undefined) assertFiniteNumber('options.defaultTtlMs', options.defaultTtlMs, { max: LIMITS.maxTtlMs - this.graceMs });
    this.defaultTtlMs = options.defaultTtlMs ?? Number.POSITIVE_INFINITY;
    if (options.maxValueBytes !== undefined) assertInteger('options.maxValueBytes', options.maxValueBytes, { min: 1, max: LIMITS.valueBytesCeiling });
    this.maxValueBytes = options.maxValueBytes ?? LIMITS.maxValueBytes;
    this.swrMs = ms('options.staleWhileRevalidateMs', options.staleWhileRevalidateMs, 0);
    if (options.leaseMs !== undefined) assertPositiveMs('options.leaseMs', options.leaseMs);
    this.leaseMs = Math.ceil(options.leaseMs ?? 10_000);
    if (options.timeoutMs !== undefined) assertPositiveMs('options.timeoutMs', options.timeoutMs);
    this.timeoutMs = options.timeoutMs ?? 1_000;
    if (options.codec !== undefined && (typeof options.codec?.encode !== 'function' || typeof options.codec.decode !== 'function')) {
      throw new InvalidArgumentError('options.codec', 'must have encode(value) and decode(text) functions');
    }
    if (options.onError !== undefined && typeof options.onError !== 'function') throw new InvalidArgumentError('options.onError', 'must be a function');
    if (options.ttlJitter !== undefined) {
      assertFiniteNumber('options.ttlJitter', options.ttlJitter, { min: 0 });
      if (options.ttlJitter >= 1) throw new InvalidArgumentError('options.ttlJitter', `must be < 1, got ${options.ttlJitter}`);
    }
    this.ttlJitter = options.ttlJitter ?? 0;
    const l1 = options.l1 === false ? undefined : options.l1;
    if (l1 !== undefined) {
      assertOptions('options.l1', l1, L1_SETTINGS, false);
      assertInteger('options.l1.maxEntries', l1.maxEntries, { min: 1 });
      if (l1.ttlMs !== undefined) assertPositiveMs('options.l1.ttlMs', l1.ttlMs);
      this.l1 = new MemoryTier<T>(l1.maxEntries);
    }
    this.l1TtlMs = l1?.ttlMs ?? Number.POSITIVE_INFINITY;
    this.codec = options.codec ?? (defaultCodec as Codec<T>);
    this.onError = options.onError;

    const base = new KeySpace('cache', options.prefix).key(options.name, '', 'options.name');
    this.entryPrefix = `${base}e:`;
    this.leasePrefix = `${base}l:`;
    this.logKey = `${base}log`;
    this.statsKey = `${base}stats`;
    this.channel = `${base}bus`;
    // Bus messages carry keys as the server sees them: with the client's keyPrefix in front.
    this.busKeyStart = clientKeyPrefix(redis).length + this.entryPrefix.length;

    this.plainReads = this.l1 === undefined && this.graceMs === 0;
    this.scripts = new LuaScriptManager(redis);
    source ??= readPackageLua(import.meta.url, SCRIPT);
    this.script = this.scripts.registerScript(`cyredis:cache:${SCRIPT}`, source);
    this.batcher = new TickBatcher(this.sendOps, BATCH_SIZE);
    if (this.l1) void this.subscribe();
  }

  /** The value, or `undefined` on a miss. Redis unreachable (or past `timeoutMs`) is a miss too. */
  async get(key: string): Promise<T | undefined> {
    assertKey('key', key);
    if (this.l1) {
      const hit = this.l1.get(key);
      if (hit !== undefined) return hit;
    }
    const epoch = this.epoch;
    const start = performance.now();
    let reply: unknown;
    try {
      reply = await this.submit({ kind: 'get', key });
    } catch (err) {
      this.absorb(err);
      return undefined;
    }
    return this.received(key, reply, epoch, start);
  }

  /** Looks up many keys in one round trip (L1 first); `undefined` where missing. */
  async getMany(keys: readonly string[]): Promise<(T | undefined)[]> {
    if (!isList(keys)) throw new InvalidArgumentError('keys', 'must be an array of keys');
    const out = new Array<T | undefined>(keys.length);
    const at: number[] = [];
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i];
      assertKey(`keys[${i}]`, key);
      const hit = this.l1?.get(key);
      if (hit !== undefined) out[i] = hit;
      else at.push(i);
    }
    if (at.length === 0) return out;
    const epoch = this.epoch;
    const start = performance.now();
    // Consecutive lookups of a tick share one command, so these go out as one MGET (with any others).
    const replies = await Promise.all(at.map((i) => this.batcher.add({ kind: 'get', key: keys[i]! })));
    let failure: Failed | undefined;
    for (let j = 0; j < at.length; j++) {
      const reply = replies[j];
      if (reply instanceof Failed) failure ??= reply;
      else out[at[j]!] = this.received(keys[at[j]!]!, reply, epoch, start);
    }
    if (failure) this.absorb(failure.error);
    return out;
  }

  /** Stores a value for `ttlMs` (default `defaultTtlMs`), evicting least recently used entries beyond `maxSize`. */
  async set(key: string, value: T, options: SetOptions = {}): Promise<void> {
    assertKey('key', key);
    assertOptions('options', options, SET_SETTINGS);
    await this.write(key, value, this.encode(value), this.ttl(options.ttlMs, 'options.ttlMs'));
  }

  /** Stores many entries in one round trip. */
  async setMany(entries: readonly CacheEntry<T>[]): Promise<void> {
    if (!isList(entries)) throw new InvalidArgumentError('entries', 'must be an array of { key, value, ttlMs? }');
    if (entries.length === 0) return;
    // Every entry is checked and encoded before any is sent: bad input writes nothing.
    const ops = entries.map((entry, i) => {
      assertOptions(`entries[${i}]`, entry, ENTRY_FIELDS, false);
      assertKey(`entries[${i}].key`, entry.key);
      const ttlMs = this.ttl(entry.ttlMs, `entries[${i}].ttlMs`);
      return { kind: 'set' as const, key: entry.key, text: this.encode(entry.value), ttlMs };
    });
    const epoch = this.invalidate(entries.map((e) => e.key));
    const start = performance.now();
    // Consecutive writes of a tick share one MSET call, so these go out together (with any others).
    await Promise.all(ops.map((op) => this.submit(op)));
    for (let i = 0; i < entries.length; i++) {
      this.remember(entries[i]!.key, entries[i]!.value, start + ops[i]!.ttlMs, epoch);
    }
  }

  /**
   * The cached value, or the loader's, stored for next time. The loader runs once per key at a time across
   * every process sharing the cache: callers in this process share one call, other processes wait for the
   * value (woken over pub/sub) while one holds the key's lease. A `delete` during the load wins (the late
   * write is dropped). If Redis is unreachable the loader is called directly.
   */
  async getOrSet(key: string, loader: Loader<T>, options: GetOrSetOptions = {}): Promise<T> {
    assertKey('key', key);
    if (typeof loader !== 'function') throw new InvalidArgumentError('loader', 'must be a function');
    assertOptions('options', options, GET_OR_SET_SETTINGS);
    const ttlMs = this.ttl(options.ttlMs, 'options.ttlMs');
    let swrMs = this.swrMs;
    if (options.staleWhileRevalidateMs !== undefined) {
      assertFiniteNumber('options.staleWhileRevalidateMs', options.staleWhileRevalidateMs, { min: 0 });
      swrMs = Math.ceil(options.staleWhileRevalidateMs);
    }
    const hit = this.l1?.get(key);
    if (hit !== undefined) return hit;
    if (this.plainReads && swrMs === 0) {
      // A hit needs no lease: one plain GET. A miss is counted by the LEASE that follows, not here.
      let raw: string | null;
      try {
        raw = await this.submit<string | null>({ kind: 'get', key });
      } catch (err) {
        this.absorb(err);
        return this.callLoader(loader);
      }
      if (raw !== null) {
        const value = this.decodeRead(key, raw);
        if (value !== undefined) return value;
      }
    }
    let pending = this.loading.get(key);
    if (pending === undefined) {
      pending = this.fetchOrLoad(key, loader, ttlMs, swrMs).finally(() => this.loading.delete(key));
      this.loading.set(key, pending);
    }
    return pending;
  }

  /** Removes an entry (and any lease on it, so a load in progress cannot write it back); true if it existed. */
  async delete(key: string): Promise<boolean> {
    assertKey('key', key);
    this.invalidate([key]);
    const existed = await this.call(['DEL', Date.now(), this.channel, this.id], key, [this.leasePrefix + key]);
    return existed === 1;
  }

  /** Removes every entry (statistics are kept), in batches of 1 000 per round trip. */
  async clear(): Promise<void> {
    this.epoch++;
    this.l1?.clear();
    while (toNumber(await this.call(['CLEAR', Date.now(), CLEAR_BATCH, this.channel, this.id], '')) > 0);
  }

  /** Shared statistics from Redis plus this process's L1 counters. */
  async stats(): Promise<CacheStats> {
    const s = pairsToRecord(await this.call(['STATS', Date.now()], ''));
    const num = (field: string) => toNumber(s[field] ?? '0');
    return {
      hits: num('hits'),
      misses: num('misses'),
      sets: num('sets'),
      evictions: num('evictions'),
      size: num('size'),
      maxSize: this.maxSize,
      hitRate: num('hit_rate'),
      l1Hits: this.l1?.hits ?? 0,
      l1Size: this.l1?.size ?? 0,
    };
  }

  /** Closes the pub/sub connection and drops L1; the Redis client passed in stays open (the caller owns it). */
  async close(): Promise<void> {
    const flushed = this.flushTouches();
    this.closed = true;
    this.live = false;
    this.l1?.clear();
    this.wake(undefined);
    const sub = this.subscriber;
    this.subscriber = undefined;
    // disconnect, not quit: a subscriber has nothing to finish, and quit would wait out a dead server.
    sub?.disconnect();
    await flushed;
  }

  private async fetchOrLoad(key: string, loader: Loader<T>, ttlMs: number, swrMs: number): Promise<T> {
    const token = `${this.id}:${++this.tokens}`;
    const args: ScriptArg[] = ['LEASE', 0, this.graceMs, token, this.leaseMs, swrMs, this.l1 ? 1 : 0];
    for (;;) {
      const epoch = this.epoch;
      const start = performance.now();
      args[1] = Date.now();
      let reply: [string | null, number, number, number];
      try {
        reply = await this.call(args, key, [this.leasePrefix + key]);
      } catch (err) {
        this.absorb(err);
        return this.callLoader(loader);
      }
      const [raw, fresh, acquired, leasePttl] = reply;
      if (raw !== null && fresh > 0) {
        const value = this.accept(key, raw, fresh, epoch, start);
        if (value !== undefined) {
          if (acquired === 1) this.load(key, loader, ttlMs, token, null).catch((err: unknown) => this.onError?.(err as Error));
          return value;
        }
      }
      if (acquired === 1) return this.load(key, loader, ttlMs, token, raw);
      // Another process is loading: serve a stale value if there is one, else wait to hear it was written.
      if (raw !== null) return this.codec.decode(raw);
      if (this.subscribed === undefined) {
        await this.subscribe();
        continue;
      }
      await this.wait(key, this.live ? Math.max(1, leasePttl) : Math.min(Math.max(1, leasePttl), 50));
    }
  }

  private async load(key: string, loader: Loader<T>, ttlMs: number, token: string, stale: string | null): Promise<T> {
    let value: T;
    let text: string;
    try {
      value = await this.callLoader(loader);
      text = this.encode(value);
    } catch (err) {
      this.call(['RELEASE', Date.now(), token, this.channel, this.id], key, [this.leasePrefix + key]).catch(
        (releaseErr: unknown) => this.onError?.(releaseErr as Error),
      );
      if (stale !== null && !(err instanceof InvalidArgumentError)) return this.codec.decode(stale);
      throw err;
    }
    try {
      await this.write(key, value, text, ttlMs, token);
    } catch (err) {
      this.absorb(err);
    }
    return value;
  }

  private async write(key: string, value: T, text: string, ttlMs: number, token?: string): Promise<void> {
    const epoch = this.invalidate([key]);
    const start = performance.now();
    // A write under a lease is a SET call of its own: the script checks the token for that one entry.
    const evicted =
      token === undefined
        ? await this.submit({ kind: 'set', key, text, ttlMs })
        : await this.call(
            ['SET', Date.now(), text, scriptTtl(ttlMs), this.maxSize, 'ms', this.graceMs, this.channel, this.id, token],
            key,
            [this.leasePrefix + key],
          );
    if (evicted !== -1) this.remember(key, value, start + ttlMs, epoch);
  }

  /** Decodes a reply's value if fresh and remembers it in L1; a value the codec cannot read is a miss. */
  private accept(key: string, raw: string | null, fresh: number, epoch: number, start: number): T | undefined {
    if (raw === null || fresh <= 0) return undefined;
    let value: T;
    try {
      value = this.codec.decode(raw);
    } catch (err) {
      this.onError?.(err as Error);
      return undefined;
    }
    this.remember(key, value, start + fresh, epoch);
    return value;
  }

  private remember(key: string, value: T, expiresAt: number, epoch: number): void {
    if (this.l1 === undefined || !this.live || epoch !== this.epoch) return;
    this.l1.set(key, value, Math.min(expiresAt, performance.now() + this.l1TtlMs));
  }

  /** Drops local copies before a local write; returns the epoch the write may fill L1 under. */
  private invalidate(keys: readonly string[]): number {
    if (this.l1) for (const key of keys) this.l1.delete(key);
    return ++this.epoch;
  }

  private ttl(ttlMs: number | undefined, argument: string): number {
    // Checked here, not only by the script: one bad TTL must not fail the other writes of its batch.
    if (ttlMs !== undefined) assertFiniteNumber(argument, ttlMs, { min: 0, exclusiveMin: true, max: LIMITS.maxTtlMs - this.graceMs });
    const ttl = ttlMs ?? this.defaultTtlMs;
    if (ttl === Number.POSITIVE_INFINITY) return ttl;
    return Math.max(1, Math.ceil(this.ttlJitter === 0 ? ttl : ttl * (1 - Math.random() * this.ttlJitter)));
  }

  /**
   * The stored text of a value: refuses `undefined` (which `get` uses for "not cached", so a cached one could
   * not be told from a miss; cache `null` instead) and texts over `maxValueBytes`.
   */
  private encode(value: T): string {
    if (value === undefined) throw new InvalidArgumentError('value', 'must not be undefined: get() reports a miss as undefined; cache null for "not found"');
    const text = this.codec.encode(value);
    if (text.length * 3 > this.maxValueBytes && Buffer.byteLength(text) > this.maxValueBytes) {
      throw new InvalidArgumentError('value', `must encode to at most ${this.maxValueBytes} bytes (maxValueBytes), got ${Buffer.byteLength(text)}`);
    }
    return text;
  }

  /** The loader's value; `undefined` is refused (see `encode`), whether or not Redis is reachable. */
  private async callLoader(loader: Loader<T>): Promise<T> {
    const value = await loader();
    if (value === undefined) {
      throw new InvalidArgumentError('loader', 'returned undefined, which get() could not tell from a miss: return null for "not found"');
    }
    return value;
  }

  /** Runs `op` with the others started in this tick; rejects with the error of the command that carried it. */
  private async submit<R = unknown>(op: Op): Promise<R> {
    const reply = await this.batcher.add(op);
    if (reply instanceof Failed) throw reply.error;
    return reply as R;
  }

  /** A script call (`entry` is a cache key; the access log, stats and `more` follow it), in its place in the tick. */
  private call<R>(args: readonly ScriptArg[], entry: string, more: readonly string[] = []): Promise<R> {
    return this.submit<R>({ kind: 'call', args, entry, more });
  }

  /**
   * Sends the operations of a tick in the order they were made, all at once (pipelined): each run of
   * consecutive lookups as one `MGET` (plain reads) or one script MGET, each run of consecutive writes as one
   * script MSET, any other call as it is. A failed command fails only its own operations.
   */
  private readonly sendOps = async (ops: Op[]): Promise<unknown[]> => {
    const replies = new Array<unknown>(ops.length);
    const sent: Promise<void>[] = [];
    for (let from = 0; from < ops.length; ) {
      const kind = ops[from]!.kind;
      let to = from + 1;
      if (kind !== 'call') while (to < ops.length && ops[to]!.kind === kind) to++;
      const first = from;
      const last = to;
      sent.push(
        this.sendRun(ops, first, last).then(
          (run) => {
            for (let i = first; i < last; i++) replies[i] = run[i - first];
          },
          (err: unknown) => {
            const failed = new Failed(err);
            for (let i = first; i < last; i++) replies[i] = failed;
          },
        ),
      );
      from = to;
    }
    await Promise.all(sent);
    return replies;
  };

  /**
   * One command for `ops[from..to)`, all of one kind; resolves with one reply per operation. The command is
   * issued before the first `await`, so the commands of one batch leave in order.
   */
  private async sendRun(ops: Op[], from: number, to: number): Promise<ArrayLike<unknown>> {
    const op = ops[from]!;
    if (op.kind === 'call') return [await this.run(op.args, [this.entryPrefix + op.entry, this.logKey, this.statsKey, ...op.more])];
    const n = to - from;
    const keys = new Array<string>(n);
    for (let i = 0; i < n; i++) keys[i] = this.entryPrefix + (ops[from + i] as { key: string }).key;
    if (op.kind === 'get' && this.plainReads) return this.withDeadline(this.redis.mget(keys));
    const scriptKeys = [keys[0]!, this.logKey, this.statsKey, ...keys.slice(1)];
    if (op.kind === 'get') {
      const reply = toArray(await this.run(['MGET', Date.now(), this.graceMs], scriptKeys));
      const out = new Array<[string | null, number]>(n);
      for (let i = 0; i < n; i++) out[i] = [reply[2 * i] as string | null, toNumber(reply[2 * i + 1])];
      return out;
    }
    const args = new Array<ScriptArg>(7 + 2 * n);
    args[0] = 'MSET';
    args[1] = Date.now();
    args[2] = 'ms';
    args[3] = this.maxSize;
    args[4] = this.graceMs;
    args[5] = this.channel;
    args[6] = this.id;
    for (let i = 0; i < n; i++) {
      const set = ops[from + i] as { text: string; ttlMs: number };
      args[7 + 2 * i] = set.text;
      args[8 + 2 * i] = scriptTtl(set.ttlMs);
    }
    const evicted = await this.run(args, scriptKeys);
    return new Array<unknown>(n).fill(evicted);
  }

  /** Runs the script now (the lookups recorded for TOUCH go first); `keys` start with entry, log, stats. */
  private run<R>(args: readonly ScriptArg[], keys: readonly string[]): Promise<R> {
    if (this.touchTimer !== undefined) void this.flushTouches();
    return this.scripts.executeScript<R>(this.script, { keys, args, timeoutMs: this.timeoutMs });
  }

  /** The value in a lookup's reply (a plain read's text, or the script's [text, fresh_ms]). */
  private received(key: string, reply: unknown, epoch: number, start: number): T | undefined {
    if (this.plainReads) return this.decodeRead(key, reply as string | null);
    const [raw, fresh] = reply as [string | null, number];
    return this.accept(key, raw, fresh, epoch, start);
  }

  private decodeRead(key: string, raw: string | null): T | undefined {
    (raw === null ? this.touchMisses : this.touchHits).push(`:e:${key}`);
    if (this.touchHits.length + this.touchMisses.length >= TOUCH_BATCH) void this.flushTouches();
    else this.touchTimer ??= setTimeout(() => void this.flushTouches(), TOUCH_FLUSH_MS);
    return raw === null ? undefined : this.accept(key, raw, 1, this.epoch, 0);
  }

  /** Sends the recorded lookups as one TOUCH (members are `:e:<key>`, the access log's form). */
  private flushTouches(): Promise<void> {
    clearTimeout(this.touchTimer);
    this.touchTimer = undefined;
    if (this.touchHits.length + this.touchMisses.length === 0) return Promise.resolve();
    const args: ScriptArg[] = ['TOUCH', Date.now(), this.touchHits.length, ...this.touchHits, ...this.touchMisses];
    this.touchHits = [];
    this.touchMisses = [];
    return this.run(args, [this.entryPrefix, this.logKey, this.statsKey]).then(
      () => undefined,
      (err: unknown) => this.onError?.(err as Error),
    );
  }

  /** Rejects with `RedisUnavailableError` when no reply came within `timeoutMs` (the outcome is unknown). */
  private withDeadline<R>(promise: Promise<R>): Promise<R> {
    return withDeadline(promise, this.timeoutMs, () => new RedisUnavailableError(`no reply within ${this.timeoutMs} ms`));
  }

  private absorb(err: unknown): void {
    if (!isOutage(err)) throw err;
    this.onError?.(err as Error);
  }

  /** Opens the subscriber connection once; resolves when subscribed or after `timeoutMs`, whichever is first. */
  private subscribe(): Promise<void> {
    if (this.subscribed) return this.subscribed;
    const sub = duplicateClient(this.redis);
    this.subscriber = sub;
    const down = () => {
      this.live = false;
      this.epoch++;
      this.l1?.clear();
      this.wake(undefined);
    };
    const join = () =>
      sub.subscribe(this.channel).then(
        () => {
          if (!this.closed && this.subscriber === sub) this.live = true;
        },
        (err: unknown) => this.onError?.(err as Error),
      );
    sub.on('error', (err: Error) => this.onError?.(err));
    sub.on('close', down);
    sub.on('reconnecting', down);
    sub.on('ready', () => void join());
    sub.on('message', (_channel: string, message: string) => this.hear(message));
    this.subscribed = waitAtMost(join(), this.timeoutMs);
    return this.subscribed;
  }

  /**
   * A message from the bus: `[origin, op, [redisKey…], [evictedKey…]]`. Writes of other origins drop our L1
   * copies; evictions drop them whatever their origin.
   */
  private hear(message: string): void {
    let parsed: unknown;
    try {
      parsed = JSON.parse(message);
    } catch {
      return;
    }
    if (!Array.isArray(parsed)) return;
    const [origin, op, keys, evicted] = parsed as [unknown, unknown, unknown, unknown];
    const foreign = origin !== this.id;
    if (foreign) this.epoch++;
    if (op === 'c') {
      if (foreign) this.l1?.clear();
      this.wake(undefined);
      return;
    }
    if (Array.isArray(keys)) {
      for (const redisKey of keys) {
        const key = String(redisKey).slice(this.busKeyStart);
        if (foreign) this.l1?.delete(key);
        this.wake(key);
      }
    }
    if (this.l1 && Array.isArray(evicted) && evicted.length > 0) {
      // A batch of our own writes can evict some of its own entries, and this message can come before the
      // write's reply: the epoch keeps that reply from filling L1 with them.
      this.epoch++;
      for (const redisKey of evicted) this.l1.delete(String(redisKey).slice(this.busKeyStart));
    }
  }

  /** Resolves after `ms`, or sooner when the bus says `key` changed. */
  private wait(key: string, ms: number): Promise<void> {
    return new Promise((resolve) => {
      let set = this.waiters.get(key);
      if (set === undefined) this.waiters.set(key, (set = new Set()));
      const waiters = set;
      const done = () => {
        clearTimeout(timer);
        waiters.delete(done);
        if (waiters.size === 0 && this.waiters.get(key) === waiters) this.waiters.delete(key);
        resolve();
      };
      const timer = setTimeout(done, ms);
      waiters.add(done);
    });
  }

  /** Wakes the waiters of one key, or of every key. */
  private wake(key: string | undefined): void {
    const sets = key === undefined ? [...this.waiters.values()] : [this.waiters.get(key)];
    for (const set of sets) if (set) for (const done of [...set]) done();
  }
}

/** The script's ttl argument: whole ms, or `none` for an entry without a TTL. */
function scriptTtl(ttlMs: number): number | string {
  return ttlMs === Number.POSITIVE_INFINITY ? NO_TTL : ttlMs;
}

/** A key, cache name or prefix: a non-empty, well-formed string of at most `maxBytes` UTF-8 bytes. */
function assertKey(argument: string, key: unknown, maxBytes: number = LIMITS.maxKeyBytes): asserts key is string {
  assertNonEmptyString(argument, key, maxBytes);
  if (key.length * 3 > maxBytes && Buffer.byteLength(key) > maxBytes) {
    throw new InvalidArgumentError(argument, `must be at most ${maxBytes} bytes (UTF-8), got ${Buffer.byteLength(key)}`);
  }
}

/** Whether an argument typed as an array is one at run time (without narrowing it to `any[]`). */
function isList(value: unknown): boolean {
  return Array.isArray(value);
}
