// L1 coherence: the in-process tier, the bus subscription (core's PubSubSubscriber) that keeps it in step
// with other processes, the generation counter that keeps stale replies out of it, and the waiters woken by
// bus messages.
import { clientKeyPrefix, PubSubSubscriber, waitAtMost, type RedisClient } from '@cyredis/core';
import { MemoryTier } from './l1.js';
import { decodeBusMessage, type CacheKeys } from './protocol.js';
import type { Values } from './values.js';

/** What `Coherence` needs of the cache's settings. */
export interface CoherenceOptions {
  /** The L1 tier's size, or undefined for none (the bus then only wakes waiters). */
  l1MaxEntries: number | undefined;
  /** Cap on an L1 entry's life, in ms (Infinity: none). */
  l1TtlMs: number;
  timeoutMs: number;
  onError: ((error: Error) => void) | undefined;
  /** Told of keys another process's message dropped from L1 (undefined: all of them). */
  invalidated?: (keys: readonly string[] | undefined) => void;
}

/**
 * Keeps L1 coherent. Any change that may make an L1 copy wrong (a local write, another process's write, an
 * eviction, a clear, a lost subscription) bumps one generation counter (`invalidated`); a read remembers the
 * generation it started under and may fill L1 only if it is unchanged when the reply comes, so a reply that
 * raced an invalidation never fills L1 with an old value. L1 is filled only while subscribed and connected.
 */
export class Coherence<T> {
  private readonly l1: MemoryTier<T> | undefined;
  private generationNow = 0;
  /** The bus connection; L1 is filled only while it is live (subscribed and connected). */
  private readonly bus: PubSubSubscriber;
  private subscribed: Promise<void> | undefined;
  /** Bus messages carry keys as the server sees them: with the client's keyPrefix in front. */
  private readonly busKeyStart: number;
  /** How this instance's own messages start (`["<origin>",`), to skip those that change nothing here. */
  private readonly ownMessageStart: string;
  private readonly waiters = new Map<string, Set<() => void>>();

  constructor(
    redis: RedisClient,
    private readonly keys: CacheKeys,
    /** This instance's id in bus messages. */
    private readonly origin: string,
    private readonly values: Values<T>,
    private readonly options: CoherenceOptions,
  ) {
    if (options.l1MaxEntries !== undefined) this.l1 = new MemoryTier<T>(options.l1MaxEntries);
    this.busKeyStart = clientKeyPrefix(redis).length + keys.entryPrefix.length;
    this.ownMessageStart = `[${JSON.stringify(origin)},`;
    this.bus = new PubSubSubscriber(redis, {
      message: (_channel, message) => this.onBusMessage(message),
      lost: () => this.missedMessages(),
      resubscribed: () => this.missedMessages(),
      error: (err) => options.onError?.(err),
    });
    if (this.l1) void this.listen();
  }

  /** Whether there is an L1 tier. */
  get hasL1(): boolean {
    return this.l1 !== undefined;
  }

  /** Whether bus messages are heard now, so a waiter is woken as soon as its key changes. */
  get listening(): boolean {
    return this.bus.live;
  }

  /** Whether `listen` was ever called (the connection is opened once). */
  get started(): boolean {
    return this.subscribed !== undefined;
  }

  get l1Hits(): number {
    return this.l1?.hits ?? 0;
  }

  get l1Size(): number {
    return this.l1?.size ?? 0;
  }

  /** The generation a read starts under; pass it back to `fromLookup`/`remember`. */
  get generation(): number {
    return this.generationNow;
  }

  /** The L1 copy, if any. */
  peek(key: string): T | undefined {
    return this.l1?.get(key);
  }

  /** Whether L1 holds a live copy (counted nowhere). */
  holds(key: string): boolean {
    return this.l1?.has(key) ?? false;
  }

  /** Decodes a lookup's value if fresh and keeps it in L1; a value the codec cannot read is a miss. */
  fromLookup(key: string, text: string | null, freshMs: number, generation: number, start: number): T | undefined {
    if (text === null || freshMs <= 0) return undefined;
    const value = this.values.decodeOrMiss(text);
    if (value !== undefined) this.remember(key, value, start + freshMs, generation);
    return value;
  }

  /** Keeps `value` in L1 until `expiresAt` (`performance.now()` time), unless invalidated since `generation`. */
  remember(key: string, value: T, expiresAt: number, generation: number): void {
    if (this.l1 === undefined || !this.bus.live || generation !== this.generationNow) return;
    this.l1.set(key, value, Math.min(expiresAt, performance.now() + this.options.l1TtlMs));
  }

  /** Drops local copies before a local write; returns the generation the write may fill L1 under. */
  beforeWrite(keys: readonly string[]): number {
    if (this.l1) for (const key of keys) this.l1.delete(key);
    return this.invalidated();
  }

  /** `beforeWrite` for one key (a `set`), without a list. */
  beforeWriteOf(key: string): number {
    this.l1?.delete(key);
    return this.invalidated();
  }

  /** Drops the local copies of keys another call removed (a deleteByTag's reply). */
  dropKeys(keys: readonly string[]): void {
    this.invalidated();
    if (this.l1) for (const key of keys) this.l1.delete(key);
  }

  /** Drops every local copy (a local clear). */
  dropAll(): void {
    this.invalidated();
    this.l1?.clear();
  }

  /** Subscribes to the bus once; resolves when subscribed or after `timeoutMs`, whichever is first. */
  listen(): Promise<void> {
    this.subscribed ??= waitAtMost(this.bus.subscribe(this.keys.channel), this.options.timeoutMs);
    return this.subscribed;
  }

  /** Resolves after `ms`, or sooner when the bus says `key` changed. */
  waitForChange(key: string, ms: number): Promise<void> {
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

  /** Closes the bus connection, drops L1 and wakes every waiter. */
  close(): void {
    this.bus.close();
    this.l1?.clear();
    this.wake(undefined);
  }

  /**
   * The bus was lost or came back: messages published meanwhile are gone, so no L1 copy can be trusted and
   * a waiter may have missed its wake-up.
   */
  private missedMessages(): void {
    this.dropAll();
    this.wake(undefined);
  }

  /** The one place the generation moves. */
  private invalidated(): number {
    return ++this.generationNow;
  }

  /** Writes of other origins drop our L1 copies; evictions drop them whatever their origin. */
  private onBusMessage(text: string): void {
    // One of our own writes that evicted nothing (its last list is empty) changes nothing here while no one
    // waits: with L1 every write comes back on the bus, and at many writes in flight decoding each would
    // cost a JSON.parse per write.
    if (this.waiters.size === 0 && text.startsWith(this.ownMessageStart) && (text.endsWith(',[]]') || text.endsWith(',{}]'))) return;
    const message = decodeBusMessage(text, this.busKeyStart);
    if (message === undefined) return;
    const foreign = message.origin !== this.origin;
    if (foreign) this.invalidated();
    if (foreign && this.l1) this.options.invalidated?.(message.cleared ? undefined : message.keys);
    if (message.cleared) {
      if (foreign) this.l1?.clear();
      this.wake(undefined);
      return;
    }
    for (const key of message.keys) {
      if (foreign) this.l1?.delete(key);
      this.wake(key);
    }
    if (this.l1 && message.evicted.length > 0) {
      // A batch of our own writes can evict some of its own entries, and this message can come before the
      // write's reply: the new generation keeps that reply from filling L1 with them.
      this.invalidated();
      for (const key of message.evicted) this.l1.delete(key);
    }
  }

  /** Wakes the waiters of one key, or of every key. */
  private wake(key: string | undefined): void {
    const sets = key === undefined ? [...this.waiters.values()] : [this.waiters.get(key)];
    for (const set of sets) if (set) for (const done of [...set]) done();
  }
}
