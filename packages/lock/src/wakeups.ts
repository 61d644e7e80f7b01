import { clientKeyPrefix, duplicateClient, type RedisClient } from '@cyredis/core';

/** One waiting `acquire`: `wake` is called when the lock it waits for is released. */
export interface Waiter {
  wake: () => void;
  /** Set when a release message was handed to this waiter and not yet used by a retry. */
  woken: boolean;
}

interface Channel {
  waiters: Set<Waiter>;
  /** Settles when SUBSCRIBE was confirmed (or failed). */
  subscribed: Promise<void>;
}

/**
 * Release notifications of one node: a dedicated subscriber connection (the script publishes on channel
 * KEYS[1] when a live lease ends), one channel per resource someone in this process waits for. A message
 * wakes the first waiter of its channel only; the others wait for the next release or the lease's end, so
 * 50 waiters do not race for every hand-off.
 */
export class Wakeups {
  private subscriber: RedisClient | undefined;
  private readonly channels = new Map<string, Channel>();
  private readonly keyPrefix: string;

  constructor(private readonly client: RedisClient) {
    // The script publishes on the key as the server sees it; SUBSCRIBE is never prefixed by ioredis.
    this.keyPrefix = clientKeyPrefix(client);
  }

  /**
   * Adds a waiter for `key`; resolves once the subscription is confirmed, so no later release is missed
   * (or once it failed: then only the lease-end retry wakes the waiter). Never rejects.
   */
  add(key: string, waiter: Waiter): Promise<void> {
    const channel = this.keyPrefix + key;
    const existing = this.channels.get(channel);
    if (existing) {
      existing.waiters.add(waiter);
      return existing.subscribed;
    }
    const entry: Channel = { waiters: new Set([waiter]), subscribed: Promise.resolve() };
    entry.subscribed = this.connection()
      .subscribe(channel)
      .then(
        () => undefined,
        () => {
          // Not subscribed: these waiters still retry when the holder's lease ends; the next one tries again.
          if (this.channels.get(channel) === entry) this.channels.delete(channel);
        },
      );
    this.channels.set(channel, entry);
    return entry.subscribed;
  }

  /** Removes a waiter; a wake-up it got but did not use goes to the next one. */
  remove(key: string, waiter: Waiter): void {
    const channel = this.keyPrefix + key;
    const waiters = this.channels.get(channel)?.waiters;
    if (!waiters?.delete(waiter)) return;
    if (waiters.size === 0) {
      this.channels.delete(channel);
      this.subscriber?.unsubscribe(channel).catch(() => undefined);
    } else if (waiter.woken) {
      this.wakeFirst(waiters);
    }
  }

  close(): void {
    const subscriber = this.subscriber;
    this.subscriber = undefined;
    this.channels.clear();
    // A subscriber has nothing to flush, and QUIT could wait forever for a node that is down.
    subscriber?.disconnect();
  }

  private connection(): RedisClient {
    if (this.subscriber) return this.subscriber;
    const subscriber = duplicateClient(this.client);
    subscriber.on('error', () => undefined);
    subscriber.on('message', (channel: string) => {
      const entry = this.channels.get(channel);
      if (entry) this.wakeFirst(entry.waiters);
    });
    this.subscriber = subscriber;
    return subscriber;
  }

  private wakeFirst(waiters: Set<Waiter>): void {
    for (const waiter of waiters) {
      if (waiter.woken) continue;
      waiter.woken = true;
      waiter.wake();
      return;
    }
  }
}
