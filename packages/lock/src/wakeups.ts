import type { RedisClient } from '@cyredis/core';

/** One waiting `acquire`: `wake` is called when the lock it waits for is released. */
export interface Waiter {
  wake: () => void;
  /** Set when a release message was handed to this waiter and not yet used by a retry. */
  woken: boolean;
}

/**
 * Release notifications of one node: a dedicated subscriber connection (the script publishes on channel
 * KEYS[1] when a live lease ends), one channel per resource someone in this process waits for. A message
 * wakes the first waiter of its channel only; the others wait for the next release or the lease's end, so
 * 50 waiters do not race for every hand-off.
 */
export class Wakeups {
  private subscriber: RedisClient | undefined;
  private readonly channels = new Map<string, Set<Waiter>>();
  private readonly keyPrefix: string;

  constructor(private readonly client: RedisClient) {
    const options = client.options as { keyPrefix?: string; redisOptions?: { keyPrefix?: string } };
    // The script publishes on the key as the server sees it; SUBSCRIBE is never prefixed by ioredis.
    this.keyPrefix = options.keyPrefix ?? options.redisOptions?.keyPrefix ?? '';
  }

  /** Adds a waiter for `key`; resolves once the subscription is confirmed, so no later release is missed. */
  async add(key: string, waiter: Waiter): Promise<void> {
    const channel = this.keyPrefix + key;
    let waiters = this.channels.get(channel);
    if (waiters) {
      waiters.add(waiter);
      return;
    }
    waiters = new Set([waiter]);
    this.channels.set(channel, waiters);
    await this.connection().subscribe(channel);
  }

  /** Removes a waiter; a wake-up it got but did not use goes to the next one. */
  remove(key: string, waiter: Waiter): void {
    const channel = this.keyPrefix + key;
    const waiters = this.channels.get(channel);
    if (!waiters?.delete(waiter)) return;
    if (waiters.size === 0) {
      this.channels.delete(channel);
      this.subscriber?.unsubscribe(channel).catch(() => undefined);
    } else if (waiter.woken) {
      this.wakeFirst(waiters);
    }
  }

  async close(): Promise<void> {
    const subscriber = this.subscriber;
    this.subscriber = undefined;
    this.channels.clear();
    if (subscriber) await subscriber.quit().catch(() => subscriber.disconnect());
  }

  private connection(): RedisClient {
    if (!this.subscriber) {
      const subscriber = this.client.duplicate();
      subscriber.on('error', () => undefined);
      subscriber.on('message', (channel: string) => {
        const waiters = this.channels.get(channel);
        if (waiters) this.wakeFirst(waiters);
      });
      this.subscriber = subscriber;
    }
    return this.subscriber;
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
