// SmartCache: the public API over smart_cache.lua. Each method checks its input, then hands off to the
// transport (batching), coherence (L1) and leases (stampede protection) modules.
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import {
  assertFiniteNumber,
  assertOptions,
  assertRedisClient,
  clientKeyPrefix,
  DEFAULT_PREFIX,
  InvalidArgumentError,
  KeySpace,
  listRegistered,
  NameRecorder,
  REGISTRY_REFRESH_MS,
  registryKey,
  type RedisClient,
  type RegistryEntry,
  type RegistryListOptions,
} from '@cyredis/core';
import { Coherence } from './coherence.js';
import { Leases, type CacheResult, type LoadRequest } from './leases.js';
import {
  assertKey,
  assertTag,
  LIMITS,
  readLoaderTimeouts,
  readSettings,
  NO_TAGS,
  readTags,
  type CacheEntry,
  type GetOrSetOptions,
  type SetOptions,
  type SmartCacheOptions,
} from './options.js';
import {
  CacheKeys,
  decodeClear,
  decodeInspect,
  decodeDelete,
  decodeDeleteByTag,
  decodeHas,
  decodeStats,
  DELETE_BATCH,
  DELETE_TAG_BATCH,
  encodeClear,
  encodeDelete,
  encodeDeleteByTag,
  encodeHas,
  encodeStats,
  type EntryInfo,
  type Lookup,
  type WriteSettings,
} from './protocol.js';
import { absorbOutage, Failed, Transport } from './transport.js';
import {
  CLEAR,
  DELETE,
  DELETE_BY_TAG,
  DELETE_MANY,
  GET,
  GET_MANY,
  GET_OR_SET,
  HAS,
  SET,
  SET_MANY,
  settleDeleted,
  settleFound,
  settleStatus,
  type InvalidationReason,
  type SmartCacheEvents,
} from './tracing.js';
import { Values, type Loader } from './values.js';

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

/** The registry kind of caches (`<prefix>:registry:cache`). */
const REGISTRY_KIND = 'cache';
const SET_SETTINGS = ['ttlMs', 'tags'] as const;
const GET_OR_SET_SETTINGS = ['ttlMs', 'tags', 'staleWhileRevalidateMs', 'softTimeoutMs', 'hardTimeoutMs'] as const;
const ENTRY_FIELDS = ['key', 'value', 'ttlMs', 'tags'] as const;

/**
 * An LRU-bounded Redis cache with shared statistics, cross-process stampede protection and an optional
 * in-process L1 tier. Call `close()` when done: it closes the pub/sub connection the cache may open.
 */
export class SmartCache<T = unknown> extends EventEmitter<SmartCacheEvents> {
  /** The cache's name (its hash tag). */
  readonly name: string;
  /** Entries kept in Redis at most. */
  readonly maxSize: number;
  private readonly defaultTtlMs: number;
  private readonly ttlJitter: number;
  private readonly graceMs: number;
  private readonly swrMs: number;
  private readonly onError: ((error: Error) => void) | undefined;
  private readonly keys: CacheKeys;
  private readonly writeSettings: WriteSettings;
  private readonly values: Values<T>;
  private readonly transport: Transport;
  private readonly coherence: Coherence<T>;
  private readonly leases: Leases<T>;
  /** What precedes a cache key in the Redis keys a script sees (the client's keyPrefix, the entry prefix). */
  private readonly keyStart: number;
  /** Records the cache's name in the prefix's registry on use (at most once a minute). */
  private readonly registry: NameRecorder;
  /**
   * Set while the name was recorded within the last `REGISTRY_REFRESH_MS`: calls then test this flag, not
   * the clock (a clock read is a fair part of an L1 hit), and a timer clears it.
   */
  private recordedRecently = false;
  private recordTimer: NodeJS.Timeout | undefined;

  constructor(redis: RedisClient, options: SmartCacheOptions<T>) {
    super();
    assertRedisClient('redis', redis);
    const settings = readSettings(options);
    this.name = settings.name;
    this.maxSize = settings.maxSize;
    this.defaultTtlMs = settings.defaultTtlMs;
    this.ttlJitter = settings.ttlJitter;
    this.graceMs = settings.graceMs;
    this.swrMs = settings.swrMs;
    this.onError = settings.onError;
    this.keys = new CacheKeys(new KeySpace('cache', settings.prefix).key(settings.name, '', 'options.name'));
    // Origin of this instance's bus messages and prefix of its lease tokens.
    const origin = randomBytes(8).toString('hex');
    this.writeSettings = { maxSize: settings.maxSize, graceMs: settings.graceMs, channel: this.keys.channel, origin };
    this.values = new Values(settings.codec, settings.maxValueBytes, settings.onError, settings.name);
    // Reads without L1 or grace need no TTL, so they are plain MGETs (see Transport).
    const plainReads = settings.l1MaxEntries === undefined && settings.graceMs === 0;
    this.transport = new Transport(redis, this.keys, this.writeSettings, { timeoutMs: settings.timeoutMs, plainReads, onError: settings.onError });
    this.coherence = new Coherence(redis, this.keys, origin, this.values, { ...settings, invalidated: (keys) => this.invalidated(keys, 'remote') });
    this.leases = new Leases(this.transport, this.keys, this.coherence, this.values, {
      write: this.writeSettings,
      leaseMs: settings.leaseMs,
      onError: settings.onError,
      ttl: (ttlMs, argument) => this.ttl(ttlMs, argument),
    });
    this.keyStart = clientKeyPrefix(redis).length + this.keys.entryPrefix.length;
    this.registry = new NameRecorder(redis, registryKey(settings.prefix ?? DEFAULT_PREFIX, REGISTRY_KIND), {}, (err) => this.onError?.(err as Error));
  }

  /**
   * The caches used under a prefix within the last day, most recently used first, from the registry (one
   * key, no keyspace scan; on a cluster it lives in one slot). Every cache records its name on use. Options:
   * `prefix`, `limit` (1 to 1000, default 100), `offset`, `timeoutMs` (default 1000).
   */
  static list(redis: RedisClient, options: RegistryListOptions = {}): Promise<RegistryEntry[]> {
    return listRegistered(redis, REGISTRY_KIND, options);
  }

  /**
   * One entry's TTL, size and tags as Redis holds them, or undefined when there is none: reads only (counts
   * no lookup, leaves the LRU order and L1 alone), one pipelined round trip.
   */
  async inspect(key: string): Promise<EntryInfo | undefined> {
    assertKey('key', key);
    return decodeInspect(await this.transport.pipeline(this.keys.inspectCommands(key)), this.graceMs);
  }

  /** The value, or `undefined` on a miss. Redis unreachable (or past `timeoutMs`) is a miss too. */
  get(key: string): Promise<T | undefined> {
    if (!GET.active) return this.getNow(key);
    return GET.run(() => ({ name: this.name, key, tier: this.coherence.holds(key) ? 'l1' : 'l2' }), () => this.getNow(key), settleFound);
  }

  private async getNow(key: string): Promise<T | undefined> {
    // L1 holds only keys that were checked when they went in: a hit needs no check (a fair part of its cost).
    const hit = this.coherence.peek(key);
    if (hit !== undefined) {
      this.noteUse();
      return hit;
    }
    assertKey('key', key);
    this.noteUse();
    const generation = this.coherence.generation;
    const start = this.readStart();
    const reply = await this.transport.readSettled(key);
    if (reply instanceof Failed) {
      absorbOutage(reply.error, this.onError);
      return undefined;
    }
    return this.received(key, reply, generation, start);
  }

  /** Looks up many keys in one round trip (L1 first); `undefined` where missing. */
  getMany(keys: readonly string[]): Promise<(T | undefined)[]> {
    if (!GET_MANY.active) return this.getManyNow(keys);
    return GET_MANY.run(() => ({ name: this.name, count: keys?.length }), () => this.getManyNow(keys));
  }

  private async getManyNow(keys: readonly string[]): Promise<(T | undefined)[]> {
    if (!isList(keys)) throw new InvalidArgumentError('keys', 'must be an array of keys');
    this.noteUse();
    const out = new Array<T | undefined>(keys.length);
    const at: number[] = [];
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i];
      assertKey(`keys[${i}]`, key);
      const hit = this.coherence.peek(key);
      if (hit !== undefined) out[i] = hit;
      else at.push(i);
    }
    if (at.length === 0) return out;
    const generation = this.coherence.generation;
    const start = this.readStart();
    // Consecutive lookups of a tick share one command, so these go out as one MGET (with any others).
    const replies = await Promise.all(at.map((i) => this.transport.readSettled(keys[i]!)));
    let failure: Failed | undefined;
    for (let j = 0; j < at.length; j++) {
      const reply = replies[j];
      if (reply instanceof Failed) failure ??= reply;
      else out[at[j]!] = this.received(keys[at[j]!]!, reply, generation, start);
    }
    if (failure) absorbOutage(failure.error, this.onError);
    return out;
  }

  /**
   * Stores a value for `ttlMs` (default `defaultTtlMs`), with `tags` (replacing the entry's old ones),
   * evicting least recently used entries beyond `maxSize`.
   */
  set(key: string, value: T, options?: SetOptions): Promise<void> {
    if (!SET.active) return this.setNow(key, value, options);
    return SET.run(() => ({ name: this.name, key }), () => this.setNow(key, value, options));
  }

  private async setNow(key: string, value: T, options: SetOptions | undefined): Promise<void> {
    assertKey('key', key);
    assertOptions('options', options, SET_SETTINGS);
    this.noteUse();
    const text = this.values.encode(value);
    const ttlMs = this.ttl(options?.ttlMs, 'options.ttlMs');
    const tags = readTags('options.tags', options?.tags);
    const generation = this.coherence.beforeWriteOf(key);
    const start = this.readStart();
    const reply = await this.transport.writeSettled(key, text, ttlMs, tags);
    if (reply instanceof Failed) throw reply.error;
    this.coherence.remember(key, value, start + ttlMs, generation);
  }

  /** Stores many entries in one round trip. */
  setMany(entries: readonly CacheEntry<T>[]): Promise<void> {
    if (!SET_MANY.active) return this.setManyNow(entries);
    return SET_MANY.run(() => ({ name: this.name, count: entries?.length }), () => this.setManyNow(entries));
  }

  private async setManyNow(entries: readonly CacheEntry<T>[]): Promise<void> {
    if (!isList(entries)) throw new InvalidArgumentError('entries', 'must be an array of { key, value, ttlMs? }');
    if (entries.length === 0) return;
    this.noteUse();
    // Every entry is checked and encoded before any is sent: bad input writes nothing.
    const writes = entries.map((entry, i) => {
      assertOptions(`entries[${i}]`, entry, ENTRY_FIELDS, false);
      assertKey(`entries[${i}].key`, entry.key);
      const ttlMs = this.ttl(entry.ttlMs, `entries[${i}].ttlMs`);
      return { text: this.values.encode(entry.value), ttlMs, tags: readTags(`entries[${i}].tags`, entry.tags) };
    });
    const generation = this.coherence.beforeWrite(entries.map((e) => e.key));
    const start = this.readStart();
    // Consecutive writes of a tick share one MSET call, so these go out together (with any others).
    await Promise.all(writes.map((write, i) => this.transport.write(entries[i]!.key, write.text, write.ttlMs, write.tags)));
    for (let i = 0; i < entries.length; i++) {
      this.coherence.remember(entries[i]!.key, entries[i]!.value, start + writes[i]!.ttlMs, generation);
    }
  }

  /**
   * The cached value, or the loader's, stored for next time (for the loader's `ctx.setTtl` if it called it,
   * not at all if it called `ctx.skipCache`). The loader runs once per key at a time across every process
   * sharing the cache: callers in this process share one call, other processes wait for the value (woken
   * over pub/sub) while one holds the key's lease. A `delete` during the load wins (the late write is
   * dropped). If Redis is unreachable the loader is called directly. See `GetOrSetOptions` for the loader's
   * soft and hard timeouts.
   */
  getOrSet(key: string, loader: Loader<T>, options?: GetOrSetOptions): Promise<T> {
    if (!GET_OR_SET.active) return this.getOrSetNow(key, loader, options);
    return this.getOrSetWithStatus(key, loader, options).then((result) => result.value);
  }

  private async getOrSetNow(key: string, loader: Loader<T>, options: GetOrSetOptions | undefined): Promise<T> {
    const request = this.loadRequest(key, loader, options);
    const hit = this.coherence.peek(key);
    if (hit !== undefined) return hit;
    return (await this.lookupOrLoad(key, loader, request)).value;
  }

  /** As `getOrSet`, with where the value came from: `'l1-hit' | 'hit' | 'stale' | 'miss-loaded'`. */
  getOrSetWithStatus(key: string, loader: Loader<T>, options?: GetOrSetOptions): Promise<CacheResult<T>> {
    if (!GET_OR_SET.active) return this.getOrSetWithStatusNow(key, loader, options);
    return GET_OR_SET.run(() => ({ name: this.name, key }), () => this.getOrSetWithStatusNow(key, loader, options), settleStatus);
  }

  private async getOrSetWithStatusNow(key: string, loader: Loader<T>, options: GetOrSetOptions | undefined): Promise<CacheResult<T>> {
    const request = this.loadRequest(key, loader, options);
    const hit = this.coherence.peek(key);
    if (hit !== undefined) return { value: hit, status: 'l1-hit' };
    return this.lookupOrLoad(key, loader, request);
  }

  /** Whether `key` holds a fresh value (L1 first); counts no lookup and leaves the LRU order alone. */
  has(key: string): Promise<boolean> {
    if (!HAS.active) return this.hasNow(key);
    return HAS.run(() => ({ name: this.name, key }), () => this.hasNow(key), settleFound);
  }

  private async hasNow(key: string): Promise<boolean> {
    assertKey('key', key);
    if (this.coherence.holds(key)) return true;
    return decodeHas(await this.transport.call(encodeHas(Date.now(), this.graceMs), this.keys.forEntry(key, false)));
  }

  /** Removes an entry (and any lease on it, so a load in progress cannot write it back); true if it existed. */
  delete(key: string): Promise<boolean> {
    const done = DELETE.active ? DELETE.run(() => ({ name: this.name, key }), () => this.deleteNow(key), settleDeleted) : this.deleteNow(key);
    return this.invalidating(done, [key], 'delete');
  }

  private async deleteNow(key: string): Promise<boolean> {
    assertKey('key', key);
    return (await this.removeEntries([key])) === 1;
  }

  /** Removes entries as `delete` does, up to 500 per round trip (atomic per batch); the number that existed. */
  deleteMany(keys: readonly string[]): Promise<number> {
    const done = DELETE_MANY.active ? DELETE_MANY.run(() => ({ name: this.name, count: keys?.length }), () => this.deleteManyNow(keys)) : this.deleteManyNow(keys);
    return this.invalidating(done, keys, 'delete');
  }

  private async deleteManyNow(keys: readonly string[]): Promise<number> {
    if (!isList(keys)) throw new InvalidArgumentError('keys', 'must be an array of keys');
    for (let i = 0; i < keys.length; i++) assertKey(`keys[${i}]`, keys[i]);
    const batches: Promise<number>[] = [];
    for (let i = 0; i < keys.length; i += DELETE_BATCH) batches.push(this.removeEntries(keys.slice(i, i + DELETE_BATCH)));
    let removed = 0;
    for (const count of await Promise.all(batches)) removed += count;
    return removed;
  }

  /**
   * Removes every entry tagged `tag` (with all its tags), in batches of 500 (each atomic), dropping them from
   * every process's L1; the number removed. Entries tagged while it runs may stay.
   */
  deleteByTag(tag: string): Promise<number> {
    return DELETE_BY_TAG.run(() => ({ name: this.name, key: tag }), () => this.deleteByTagNow(tag));
  }

  private async deleteByTagNow(tag: string): Promise<number> {
    assertTag('tag', tag);
    const { channel, origin } = this.writeSettings;
    let removed = 0;
    let rounds = Number.POSITIVE_INFINITY;
    for (let round = 0; round < rounds; round++) {
      // A new generation first: a read that started before this batch must not fill L1 with what it removes.
      this.coherence.beforeWrite([]);
      const reply = decodeDeleteByTag(await this.transport.call(encodeDeleteByTag(Date.now(), tag, channel, origin), this.keys.forCache()), this.keyStart);
      this.coherence.dropKeys(reply.keys);
      if (reply.keys.length > 0) this.invalidated(reply.keys, 'tag');
      removed += reply.removed;
      if (reply.left === 0) break;
      // Bounded by what the tag held after the first batch, so writers tagging as fast cannot keep it going.
      if (round === 0) rounds = 1 + Math.ceil(reply.left / DELETE_TAG_BATCH);
    }
    return removed;
  }

  /** Removes every entry (statistics are kept), in batches of 1 000 per round trip. */
  clear(): Promise<void> {
    const done = CLEAR.run(() => ({ name: this.name }), () => this.clearNow());
    return this.invalidating(done, undefined, 'clear');
  }

  private async clearNow(): Promise<void> {
    this.coherence.dropAll();
    const { channel, origin } = this.writeSettings;
    while (decodeClear(await this.transport.call(encodeClear(Date.now(), channel, origin), this.keys.forCache())) > 0);
  }

  /** Shared statistics from Redis plus this process's L1 counters. */
  async stats(): Promise<CacheStats> {
    const stats = decodeStats(await this.transport.call(encodeStats(Date.now()), this.keys.forCache()));
    return { ...stats, maxSize: this.maxSize, l1Hits: this.coherence.l1Hits, l1Size: this.coherence.l1Size };
  }

  /** Closes the pub/sub connection and drops L1; the Redis client passed in stays open (the caller owns it). */
  async close(): Promise<void> {
    clearTimeout(this.recordTimer);
    this.recordedRecently = false;
    const flushed = this.transport.flushTouches();
    this.coherence.close();
    await flushed;
  }

  /** Records the cache's name in the registry, at most once per `REGISTRY_REFRESH_MS`. */
  private noteUse(): void {
    if (this.recordedRecently) return;
    this.recordedRecently = true;
    this.registry.record(this.name);
    this.recordTimer = setTimeout(() => {
      this.recordedRecently = false;
    }, REGISTRY_REFRESH_MS).unref();
  }

  /** Emits `invalidated` once `done` resolves, when someone listens (else `done` as it is). */
  private invalidating<R>(done: Promise<R>, keys: readonly string[] | undefined, reason: InvalidationReason): Promise<R> {
    if (this.listenerCount('invalidated') === 0) return done;
    return done.then((result) => {
      this.invalidated(keys, reason);
      return result;
    });
  }

  /** Tells `invalidated` listeners; a listener that throws is told to `onError`, never to the caller. */
  private invalidated(keys: readonly string[] | undefined, reason: InvalidationReason): void {
    if (this.listenerCount('invalidated') === 0) return;
    try {
      this.emit('invalidated', keys, reason);
    } catch (err) {
      this.onError?.(err as Error);
    }
  }

  /**
   * `getOrSet` past L1: a plain read when that can answer, else the lease side. `request` undefined: the
   * call passed no options, and the load's settings (the cache's) are made only if a load may start.
   */
  private async lookupOrLoad(key: string, loader: Loader<T>, request: LoadRequest | undefined): Promise<CacheResult<T>> {
    if (this.transport.plainReads && (request?.swrMs ?? this.swrMs) === 0) {
      // A hit needs no lease: one plain GET. A miss is counted by the LEASE that follows, not here.
      const text = await this.transport.readSettled(key, false);
      if (text instanceof Failed) {
        absorbOutage(text.error, this.onError);
        return this.leases.loadWithoutRedis(key, loader, request ?? this.defaultLoad());
      }
      if (text !== null) {
        const value = this.plainRead(text as string);
        if (value !== undefined) return { value, status: 'hit' };
      }
    }
    return this.leases.getOrLoad(key, loader, request ?? this.defaultLoad());
  }

  /** The settings of a load started by a `getOrSet` that passed no options. */
  private defaultLoad(): LoadRequest {
    return { ttlMs: this.ttl(undefined, 'options.ttlMs'), swrMs: this.swrMs, tags: NO_TAGS, softMs: undefined, hardMs: undefined };
  }

  /** Removes up to `DELETE_BATCH` entries in one DEL call; the number that existed. */
  private async removeEntries(keys: readonly string[]): Promise<number> {
    this.coherence.beforeWrite(keys);
    const { channel, origin } = this.writeSettings;
    return decodeDelete(await this.transport.call(encodeDelete(Date.now(), channel, origin), this.keys.forDeletes(keys)));
  }

  /**
   * Checks a `getOrSet` call's input; the settings of the load it may start, or undefined when the call
   * passed no options (see `lookupOrLoad`).
   */
  private loadRequest(key: string, loader: unknown, options: GetOrSetOptions | undefined): LoadRequest | undefined {
    this.noteUse();
    assertKey('key', key);
    if (typeof loader !== 'function') throw new InvalidArgumentError('loader', 'must be a function');
    if (options === undefined) return undefined;
    assertOptions('options', options, GET_OR_SET_SETTINGS);
    const ttlMs = this.ttl(options.ttlMs, 'options.ttlMs');
    let swrMs = this.swrMs;
    if (options.staleWhileRevalidateMs !== undefined) {
      assertFiniteNumber('options.staleWhileRevalidateMs', options.staleWhileRevalidateMs, { min: 0 });
      swrMs = Math.ceil(options.staleWhileRevalidateMs);
    }
    const { softMs, hardMs } = readLoaderTimeouts(options);
    return { ttlMs, swrMs, tags: readTags('options.tags', options.tags), softMs, hardMs };
  }

  /** The TTL of a write in whole ms (Infinity: none), jittered. */
  private ttl(ttlMs: number | undefined, argument: string): number {
    // Checked here, not only by the script: one bad TTL must not fail the other writes of its batch.
    if (ttlMs !== undefined) assertFiniteNumber(argument, ttlMs, { min: 0, exclusiveMin: true, max: LIMITS.maxTtlMs - this.graceMs });
    const ttl = ttlMs ?? this.defaultTtlMs;
    if (ttl === Number.POSITIVE_INFINITY) return ttl;
    return Math.max(1, Math.ceil(this.ttlJitter === 0 ? ttl : ttl * (1 - Math.random() * this.ttlJitter)));
  }

  /** When a read or write that may fill L1 starts (`performance.now()`); 0 without L1, which needs none. */
  private readStart(): number {
    return this.coherence.hasL1 ? performance.now() : 0;
  }

  /** The value in a lookup's reply (a plain read's text, or the script's `Lookup`). */
  private received(key: string, reply: unknown, generation: number, start: number): T | undefined {
    if (this.transport.plainReads) return this.plainRead(reply as string | null);
    const [text, freshMs] = reply as Lookup;
    return this.coherence.fromLookup(key, text, freshMs, generation, start);
  }

  /** A plain read's value (the transport recorded the lookup); plain reads have no L1 to fill. */
  private plainRead(text: string | null): T | undefined {
    return text === null ? undefined : this.values.decodeOrMiss(text);
  }
}

/** Whether an argument typed as an array is one at run time (without narrowing it to `any[]`). */
function isList(value: unknown): boolean {
  return Array.isArray(value);
}
