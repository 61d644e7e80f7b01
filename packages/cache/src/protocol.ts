// The wire format between SmartCache and smart_cache.lua: the key layout, one encoder (named fields → ARGV)
// and one decoder (reply → typed result) per script operation, and the bus messages. No other module knows
// an argument position or a reply packing.
import { pairsToRecord, toArray, toNumber, type ScriptArg } from '@cyredis/core';

/** The script file under `lua/` (and the last part of its registered name). */
export const SCRIPT_FILE = 'smart_cache';

/** Entries a CLEAR call removes at most (the script's own ceiling is 1 000 too). */
export const CLEAR_BATCH = 1000;

/** The keys of one cache, all under its hash tag, in the order the script takes them. */
export class CacheKeys {
  /** Entry keys are this plus the cache key. */
  readonly entryPrefix: string;
  readonly leasePrefix: string;
  /** The access log (KEYS[2]). */
  readonly log: string;
  /** The statistics hash (KEYS[3]). */
  readonly stats: string;
  /** The pub/sub channel writes publish on. */
  readonly channel: string;

  /** `base` ends with the cache's hash tag and a separator, e.g. `cyredis:cache:{c}:`. */
  constructor(base: string) {
    this.entryPrefix = `${base}e:`;
    this.leasePrefix = `${base}l:`;
    this.log = `${base}log`;
    this.stats = `${base}stats`;
    this.channel = `${base}bus`;
  }

  /** KEYS of a call about one entry: entry, log, stats and, for DEL/LEASE/RELEASE/leased SET, its lease. */
  forEntry(key: string, withLease: boolean): string[] {
    const entry = this.entryPrefix + key;
    return withLease ? [entry, this.log, this.stats, this.leasePrefix + key] : [entry, this.log, this.stats];
  }

  /** KEYS of MGET/MSET: the first entry key, log, stats, then the other entry keys (`entryKeys` are full keys). */
  forEntries(entryKeys: readonly string[]): string[] {
    return [entryKeys[0]!, this.log, this.stats, ...entryKeys.slice(1)];
  }

  /** KEYS of a call about the whole cache (CLEAR, STATS) or of TOUCH (entries after): KEYS[1] is unused. */
  forCache(entryKeys: readonly string[] = []): string[] {
    return [this.entryPrefix, this.log, this.stats, ...entryKeys];
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

/** One entry of an MSET: its encoded value and TTL in ms (`Infinity`: none). */
export interface EntryWrite {
  text: string;
  ttlMs: number;
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

/** MSET: writes `writes[from..to)` to KEYS[1], KEYS[4…] (in that order) without a lease. */
export function encodeMset(now: number, settings: WriteSettings, writes: readonly EntryWrite[], from: number, to: number): ScriptArg[] {
  const args: ScriptArg[] = ['MSET', now, settings.maxSize, 'ms', settings.graceMs, settings.channel, settings.origin];
  for (let i = from; i < to; i++) args.push(writes[i]!.text, ttlArg(writes[i]!.ttlMs));
  return args;
}

/** The number of entries the write evicted. */
export function decodeMset(reply: unknown): number {
  return toNumber(reply);
}

/** SET under a lease: writes only while `token` still holds the entry's lease (KEYS[4]). */
export function encodeLeasedSet(now: number, settings: WriteSettings, text: string, ttlMs: number, token: string): ScriptArg[] {
  return ['SET', now, text, ttlArg(ttlMs), settings.maxSize, 'ms', settings.graceMs, settings.channel, settings.origin, token];
}

/** Whether the leased write happened (false: a delete, a newer lease or the lease's expiry won). */
export function decodeLeasedSet(reply: unknown): boolean {
  return toNumber(reply) !== -1;
}

/** TOUCH: records lookups made with plain reads; the first `hits` entry keys of KEYS[4…] were hits. */
export function encodeTouch(now: number, hits: number): ScriptArg[] {
  return ['TOUCH', now, hits];
}

/** The number of hits recorded. */
export function decodeTouch(reply: unknown): number {
  return toNumber(reply);
}

/** DEL: removes the entry and its lease. */
export function encodeDelete(now: number, channel: string, origin: string): ScriptArg[] {
  return ['DEL', now, channel, origin];
}

/** Whether the entry existed. */
export function decodeDelete(reply: unknown): boolean {
  return toNumber(reply) === 1;
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

/** CLEAR: removes up to `CLEAR_BATCH` entries. */
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

/** STATS: the seed's call. */
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
 * Reads a message the script published: `[origin, op, [redisKey…], [evictedKey…]]` (op: s set, d delete,
 * r lease released, c clear; an empty list may come as `{}`). `keyStart` is the length of what precedes a
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
