// The wire format between SmartCache and smart_cache.lua: the key layout, one encoder (named fields → ARGV)
// and one decoder (reply → typed result) per script operation, and the bus messages. No other module knows
// an argument position or a reply packing.
import { pairsToRecord, toArray, toNumber, type ScriptArg } from '@cyredis/core';

/** The script file under `lua/` (and the last part of its registered name). */
export const SCRIPT_FILE = 'smart_cache';

/** Entries a CLEAR call removes at most (the script's own ceiling is 1 000 too). */
export const CLEAR_BATCH = 1000;

/** Entries a DELTAG call removes at most (each with all its tags, so a batch stays a few ms of server time). */
export const DELETE_TAG_BATCH = 500;

/** Entries a DEL call removes at most. */
export const DELETE_BATCH = 500;

/** The keys of one cache, all under its hash tag, in the order the script takes them. */
export class CacheKeys {
  /** Entry keys are this plus the cache key. */
  readonly entryPrefix: string;
  readonly leasePrefix: string;
  /** The access log (KEYS[2]). */
  readonly log: string;
  /** The statistics hash (KEYS[3]). */
  readonly stats: string;
  /** The tag index (KEYS[4]): `<tag> NUL <member>` pairs. */
  readonly tagIndex: string;
  /** The tags of each tagged entry (KEYS[5]). */
  readonly tagOf: string;
  /** The pub/sub channel writes publish on. */
  readonly channel: string;

  /** `base` ends with the cache's hash tag and a separator, e.g. `cyredis:cache:{c}:`. */
  constructor(base: string) {
    this.entryPrefix = `${base}e:`;
    this.leasePrefix = `${base}l:`;
    this.log = `${base}log`;
    this.stats = `${base}stats`;
    this.tagIndex = `${base}tags`;
    this.tagOf = `${base}tagged`;
    this.channel = `${base}bus`;
  }

  /**
   * The plain reads of `inspect`, sent as one pipeline (every key shares the cache's hash tag): the entry's
   * PTTL and STRLEN, and its tags from the tags hash, whose field is the entry key from the character after
   * the hash tag's `}` on (the member the script derives, see DATA in the script).
   */
  inspectCommands(key: string): [string, ...string[]][] {
    const entry = this.entryPrefix + key;
    const member = entry.slice(entry.indexOf('}') + 1);
    return [
      ['pttl', entry],
      ['strlen', entry],
      ['hget', this.tagOf, member],
    ];
  }

  /** KEYS of a call about one entry: entry, log, stats, the tag keys and, for LEASE/RELEASE/leased SET, its lease. */
  forEntry(key: string, withLease: boolean): string[] {
    const keys = [this.entryPrefix + key, this.log, this.stats, this.tagIndex, this.tagOf];
    if (withLease) keys.push(this.leasePrefix + key);
    return keys;
  }

  /** KEYS of MGET/MSET: the first entry key, log, stats, the tag keys, then the other entry keys (full keys). */
  forEntries(entryKeys: readonly string[]): string[] {
    const keys = [entryKeys[0]!, this.log, this.stats, this.tagIndex, this.tagOf];
    for (let i = 1; i < entryKeys.length; i++) keys.push(entryKeys[i]!);
    return keys;
  }

  /** KEYS of DEL: the first entry, log, stats, the tag keys, its lease, then each other entry and its lease. */
  forDeletes(keys: readonly string[]): string[] {
    const out = [this.entryPrefix + keys[0]!, this.log, this.stats, this.tagIndex, this.tagOf, this.leasePrefix + keys[0]!];
    for (let i = 1; i < keys.length; i++) out.push(this.entryPrefix + keys[i]!, this.leasePrefix + keys[i]!);
    return out;
  }

  /** KEYS of a call about the whole cache (CLEAR, STATS, DELTAG) or of TOUCH (entries after): KEYS[1] is unused. */
  forCache(entryKeys: readonly string[] = []): string[] {
    return [this.entryPrefix, this.log, this.stats, this.tagIndex, this.tagOf, ...entryKeys];
  }
}

/** The write settings SET and MSET share (the script takes them in this order for both). */
export interface WriteSettings {
  maxSize: number;
  graceMs: number;
  channel: string;
  /** Origin of bus messages, so a process can tell its own writes from others'. */
  origin: string;
}

/** One entry of an MSET: its encoded value, TTL in ms (`Infinity`: none) and tags (checked, no NUL; default none). */
export interface EntryWrite {
  text: string;
  ttlMs: number;
  tags?: readonly string[];
}

/** A lookup's reply: the stored text (or null) and how many ms it stays fresh (≤ 0: stale, grace only). */
export type Lookup = readonly [text: string | null, freshMs: number];

/** The script's ttl argument: whole ms, or `none` for an entry without a TTL. */
function ttlArg(ttlMs: number): number | string {
  return ttlMs === Number.POSITIVE_INFINITY ? 'none' : ttlMs;
}

/** MGET: lookups of KEYS[1], KEYS[4…] with their freshness. */
export function encodeMget(now: number, graceMs: number): ScriptArg[] {
  return ['MGET', now, graceMs];
}

export function decodeMget(reply: unknown, count: number): Lookup[] {
  const items = toArray(reply);
  const out = new Array<Lookup>(count);
  for (let i = 0; i < count; i++) out[i] = [items[2 * i] as string | null, toNumber(items[2 * i + 1])];
  return out;
}

/** The script's tags argument: the tags joined by NUL ('' for none). */
function tagsArg(tags: readonly string[] = []): string {
  return tags.length === 0 ? '' : tags.join('\0');
}

/** MSET: writes `writes[from..to)` to KEYS[1], KEYS[6…] (in that order) without a lease. */
export function encodeMset(now: number, settings: WriteSettings, writes: readonly EntryWrite[], from: number, to: number): ScriptArg[] {
  const args: ScriptArg[] = ['MSET', now, settings.maxSize, 'ms', settings.graceMs, settings.channel, settings.origin];
  for (let i = from; i < to; i++) args.push(writes[i]!.text, ttlArg(writes[i]!.ttlMs), tagsArg(writes[i]!.tags));
  return args;
}

/**
 * PUT: a lone write, which the script runs on its fast path while the entry keeps its tags: `write` to
 * KEYS[1] of `forEntries` in whole ms (only for caches with `graceMs` 0; a ttl of `Infinity` is `none`).
 */
export function encodePut(now: number, settings: WriteSettings, write: EntryWrite): ScriptArg[] {
  const args: ScriptArg[] = ['PUT', now, settings.maxSize, settings.channel, settings.origin, write.text, ttlArg(write.ttlMs)];
  if (write.tags !== undefined && write.tags.length > 0) args.push(tagsArg(write.tags));
  return args;
}

/**
 * MPUT: writes `writes[from..to)`, which share one TTL and carry no tags, to KEYS[1], KEYS[6…] (in that order)
 * without a lease, in whole ms (only for caches with `graceMs` 0): the ttl once, then the values.
 */
export function encodeMput(now: number, settings: WriteSettings, writes: readonly EntryWrite[], from: number, to: number): ScriptArg[] {
  const args: ScriptArg[] = ['MPUT', now, settings.maxSize, settings.channel, settings.origin, ttlArg(writes[from]!.ttlMs)];
  for (let i = from; i < to; i++) args.push(writes[i]!.text);
  return args;
}

/**
 * The write of `writes[from..to)` (KEYS[1], KEYS[6…]) without a lease, in the script's cheapest form for it:
 * PUT for a lone entry and MPUT for entries that share a TTL and carry no tags (both only without grace),
 * MSET for any other batch.
 */
export function encodeWrites(now: number, settings: WriteSettings, writes: readonly EntryWrite[], from: number, to: number): ScriptArg[] {
  if (settings.graceMs === 0) {
    if (to - from === 1) return encodePut(now, settings, writes[from]!);
    const ttlMs = writes[from]!.ttlMs;
    let shared = true;
    for (let i = from; i < to && shared; i++) {
      const { ttlMs: own, tags } = writes[i]!;
      shared = own === ttlMs && (tags === undefined || tags.length === 0);
    }
    if (shared) return encodeMput(now, settings, writes, from, to);
  }
  return encodeMset(now, settings, writes, from, to);
}

/** The number of entries the write (MSET, MPUT or PUT) evicted. */
export function decodeMset(reply: unknown): number {
  return toNumber(reply);
}

/** SET under a lease: writes only while `token` still holds the entry's lease (KEYS[6]). */
export function encodeLeasedSet(now: number, settings: WriteSettings, write: EntryWrite, token: string): ScriptArg[] {
  const { maxSize, graceMs, channel, origin } = settings;
  return ['SET', now, write.text, ttlArg(write.ttlMs), maxSize, 'ms', graceMs, channel, origin, token, tagsArg(write.tags)];
}

/** Whether the leased write happened (false: a delete, a newer lease or the lease's expiry won). */
export function decodeLeasedSet(reply: unknown): boolean {
  return toNumber(reply) !== -1;
}

/**
 * TOUCH: records lookups made with plain reads. The first `hitKeys` entry keys of KEYS[6…] were hits (each
 * key once, in the order of its last hit), the rest misses; `hits` and `misses` count the lookups.
 */
export function encodeTouch(now: number, hitKeys: number, hits: number, misses: number): ScriptArg[] {
  return ['TOUCH', now, hitKeys, hits, misses];
}

/** The number of hits recorded. */
export function decodeTouch(reply: unknown): number {
  return toNumber(reply);
}

/** DEL: removes the entries of `CacheKeys.forDeletes` (at most `DELETE_BATCH`), their leases and their tags. */
export function encodeDelete(now: number, channel: string, origin: string): ScriptArg[] {
  return ['DEL', now, channel, origin];
}

/** How many of the entries existed. */
export function decodeDelete(reply: unknown): number {
  return toNumber(reply);
}

/** HAS: whether the entry holds a fresh value (more than `graceMs` to live); counts nothing. */
export function encodeHas(now: number, graceMs: number): ScriptArg[] {
  return ['HAS', now, graceMs];
}

export function decodeHas(reply: unknown): boolean {
  return toNumber(reply) === 1;
}

/** DELTAG: removes up to `DELETE_TAG_BATCH` entries carrying `tag` (checked, no NUL), with all their tags. */
export function encodeDeleteByTag(now: number, tag: string, channel: string, origin: string): ScriptArg[] {
  return ['DELTAG', now, tag, DELETE_TAG_BATCH, channel, origin];
}

/** What one DELTAG did: entries removed (that still had a value), pairs of the tag left, the removed cache keys. */
export interface DeleteByTagReply {
  removed: number;
  left: number;
  keys: string[];
}

/** `keyStart`: the length of what precedes a cache key in the Redis keys the script sees (as for the bus). */
export function decodeDeleteByTag(reply: unknown, keyStart: number): DeleteByTagReply {
  const items = toArray(reply);
  const keys: string[] = [];
  for (let i = 2; i < items.length; i++) keys.push(String(items[i]).slice(keyStart));
  return { removed: toNumber(items[0]), left: toNumber(items[1]), keys };
}

/** What LEASE is asked. */
export interface LeaseRequest {
  graceMs: number;
  token: string;
  leaseMs: number;
  /** A hit with less than this many ms to live also takes the lease (stale-while-revalidate). */
  refreshBelowMs: number;
  /** Read the TTL even without grace or refresh (L1 needs it to bound its copy). */
  withTtl: boolean;
}

/** LEASE's answer: the lookup, whether the lease was taken, and how long the lease has left. */
export interface LeaseReply {
  text: string | null;
  freshMs: number;
  acquired: boolean;
  /** Lease time left in ms: `leaseMs` when acquired, the holder's remaining time otherwise, 0 on a hit. */
  leasePttlMs: number;
}

/** LEASE: a lookup that takes the entry's lease when there is no fresh hit. */
export function encodeLease(now: number, request: LeaseRequest): ScriptArg[] {
  return ['LEASE', now, request.graceMs, request.token, request.leaseMs, request.refreshBelowMs, request.withTtl ? 1 : 0];
}

export function decodeLease(reply: unknown): LeaseReply {
  const [text, freshMs, acquired, leasePttlMs] = toArray(reply);
  return { text: text as string | null, freshMs: toNumber(freshMs), acquired: acquired === 1, leasePttlMs: toNumber(leasePttlMs) };
}

/** RELEASE: drops the lease if `token` still holds it, waking the callers waiting for the value. */
export function encodeRelease(now: number, token: string, channel: string, origin: string): ScriptArg[] {
  return ['RELEASE', now, token, channel, origin];
}

/** Whether the lease was still held by the token (and is now dropped). */
export function decodeRelease(reply: unknown): boolean {
  return toNumber(reply) === 1;
}

/** CLEAR: removes up to `CLEAR_BATCH` entries (and, once none are left, every tag). */
export function encodeClear(now: number, channel: string, origin: string): ScriptArg[] {
  return ['CLEAR', now, CLEAR_BATCH, channel, origin];
}

/** The entries left (call again until 0). */
export function decodeClear(reply: unknown): number {
  return toNumber(reply);
}

/** The shared counters STATS reports. */
export interface ScriptStats {
  hits: number;
  misses: number;
  sets: number;
  evictions: number;
  size: number;
  hitRate: number;
}

/** STATS: the seed's call (with the tag keys, so the sweep drops the tags of the entries it finds gone). */
export function encodeStats(now: number): ScriptArg[] {
  return ['STATS', now];
}

export function decodeStats(reply: unknown): ScriptStats {
  const fields = pairsToRecord(reply);
  const num = (field: string) => toNumber(fields[field] ?? '0');
  return {
    hits: num('hits'),
    misses: num('misses'),
    sets: num('sets'),
    evictions: num('evictions'),
    size: num('size'),
    hitRate: num('hit_rate'),
  };
}

/** A bus message: who wrote, what, and which cache keys it changed or evicted. */
export interface BusMessage {
  origin: unknown;
  /** A CLEAR: every entry is gone. */
  cleared: boolean;
  /** Cache keys written, deleted or whose lease was released. */
  keys: string[];
  /** Cache keys the write evicted. */
  evicted: string[];
}

/**
 * Reads a message the script published: `[origin, op, [redisKey…], [evictedKey…]]` (op: s set, d delete or
 * deleted by tag, r lease released, c clear; an empty list may come as `{}`). `keyStart` is the length of what precedes a
 * cache key in a Redis key as the server sees it (the client's keyPrefix and the entry prefix). Anything
 * else is ignored (undefined).
 */
export function decodeBusMessage(message: string, keyStart: number): BusMessage | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(message);
  } catch {
    return undefined;
  }
  if (!Array.isArray(parsed)) return undefined;
  const [origin, op, keys, evicted] = parsed as [unknown, unknown, unknown, unknown];
  const cacheKeys = (list: unknown) => (Array.isArray(list) ? list.map((redisKey) => String(redisKey).slice(keyStart)) : []);
  return { origin, cleared: op === 'c', keys: op === 'c' ? [] : cacheKeys(keys), evicted: op === 'c' ? [] : cacheKeys(evicted) };
}

/** One entry as `inspect` reads it. */
export interface EntryInfo {
  /** Ms the value stays fresh; `Infinity` without a TTL; 0 once stale (kept only for grace). */
  ttlMs: number;
  /** Whether it is past its TTL and kept only for `graceMs`. */
  stale: boolean;
  /** Bytes Redis holds for the encoded value. */
  bytes: number;
  /** The entry's tags (empty when it has none). */
  tags: string[];
}

/** The replies of `inspectCommands` (`[error, reply]` pairs); undefined when the entry does not exist. */
export function decodeInspect(replies: readonly [Error | null, unknown][], graceMs: number): EntryInfo | undefined {
  for (const [err] of replies) if (err) throw err;
  const pttl = toNumber(replies[0]![1]);
  if (pttl === -2) return undefined;
  const fresh = pttl === -1 ? Infinity : pttl - graceMs;
  const tagged = replies[2]![1];
  return { ttlMs: Math.max(fresh, 0), stale: fresh <= 0, bytes: toNumber(replies[1]![1]), tags: typeof tagged === 'string' && tagged !== '' ? tagged.split('\0') : [] };
}
