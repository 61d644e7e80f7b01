// Release notifications over pub/sub, and the per-resource queues of the waiters they wake.
import { clientKeyPrefix, isCluster, type RedisClient } from '@cyredis/core';
import type { Redis } from 'ioredis';

/** One waiting `acquire`: `wake` makes it retry now. */
export interface Waiter {
  wake: () => void;
  /** Set when a wake-up was handed to this waiter and not yet used by a retry. */
  woken: boolean;
}

interface Queue {
  waiters: Set<Waiter>;
  /** Settles once the key's release channel is subscribed on every node (or that failed or took too long). */
  subscribed: Promise<void>;
  /** Wakes the head waiter when the lease it was refused by ends (one timer per key, not per waiter). */
  leaseEnd: NodeJS.Timeout | undefined;
}

/**
 * The waiters of one manager, per lock key, in arrival order. A release message wakes the first waiter
 * only, so 5,000 waiters do not race for every hand-off; the end of a lease (a holder that never
 * releases) also wakes only the first, through one timer per key. A lost subscription wakes them all.
 */
export class WaitQueues {
  private readonly queues = new Map<string, Queue>();

  /**
   * Adds a waiter; the key's first waiter calls `subscribe`. Resolves when the key's subscription settled,
   * so the waiter's next attempt cannot miss a release.
   */
  join(key: string, waiter: Waiter, subscribe: () => Promise<void>): Promise<void> {
    const queue = this.queues.get(key);
    if (queue) {
      queue.waiters.add(waiter);
      return queue.subscribed;
    }
    const subscribed = subscribe();
    this.queues.set(key, { waiters: new Set([waiter]), subscribed, leaseEnd: undefined });
    return subscribed;
  }

  /** Removes a waiter (a wake-up it did not use goes to the next); true when the key has no waiter left. */
  leave(key: string, waiter: Waiter): boolean {
    const queue = this.queues.get(key);
    if (!queue?.waiters.delete(waiter)) return false;
    if (queue.waiters.size > 0) {
      if (waiter.woken) wakeFirst(queue.waiters);
      return false;
    }
    clearTimeout(queue.leaseEnd);
    this.queues.delete(key);
    return true;
  }

  /** A release was published on `key`: the first waiter not yet woken retries. */
  released(key: string): void {
    const queue = this.queues.get(key);
    if (queue) wakeFirst(queue.waiters);
  }

  /** The lease that holds `key` ends in `ms` at the latest (the newest news replaces older). */
  leaseEndsIn(key: string, ms: number): void {
    const queue = this.queues.get(key);
    if (!queue) return;
    clearTimeout(queue.leaseEnd);
    queue.leaseEnd = setTimeout(() => wakeFirst(queue.waiters), ms);
  }

  /** Messages may have been lost (a subscriber reconnected): every waiter retries once. */
  wakeAll(): void {
    for (const queue of this.queues.values()) {
      for (const waiter of queue.waiters) {
        waiter.woken = true;
        waiter.wake();
      }
    }
  }

  clear(): void {
    for (const queue of this.queues.values()) clearTimeout(queue.leaseEnd);
    this.queues.clear();
  }
}

function wakeFirst(waiters: Set<Waiter>): void {
  for (const waiter of waiters) {
    if (waiter.woken) continue;
    waiter.woken = true;
    waiter.wake();
    return;
  }
}

/** What a subscriber reports to its manager. */
export interface SubscriberEvents {
  /** A lease of `key` ended by release or force unlock. */
  released: (key: string) => void;
  /** The subscription was lost and made again: messages published in between are gone. */
  resubscribed: () => void;
}

/** Waits before opening a new subscriber connection after the last one ended. */
const REOPEN_DELAY_MS = 100;

/**
 * The release channel subscriptions of one node, on a dedicated connection (the script publishes on
 * channel KEYS[1]). It resubscribes by itself after every reconnect (`CLIENT KILL TYPE pubsub`, the
 * pubsub output-buffer limit, a restart, a failover) and reports each time, since whatever was published
 * while it was away is lost. On a cluster it listens on one master (a cluster forwards every PUBLISH to
 * every node) and moves to another when that one is gone.
 */
export class Subscriber {
  private connection: Redis | undefined;
  /** Channel names as the server sees them (with the client's keyPrefix). */
  private readonly channels = new Set<string>();
  private readonly keyPrefix: string;
  private connectedBefore = false;
  private reopening: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly client: RedisClient,
    private readonly events: SubscriberEvents,
  ) {
    // SUBSCRIBE is never prefixed by ioredis, but the script publishes on the key as the server sees it.
    this.keyPrefix = clientKeyPrefix(client);
  }

  /**
   * Subscribes to the release channel of `key`; resolves once the server confirmed it, so no later release
   * is missed, or once it failed (then the lease-end timer and the next reconnect still wake the waiters).
   * Never rejects.
   */
  add(key: string): Promise<void> {
    const channel = this.keyPrefix + key;
    this.channels.add(channel);
    const connection = this.open();
    if (!connection) return Promise.resolve();
    return connection.subscribe(channel).then(
      () => undefined,
      () => undefined,
    );
  }

  remove(key: string): void {
    const channel = this.keyPrefix + key;
    if (this.channels.delete(channel)) this.connection?.unsubscribe(channel).catch(() => undefined);
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.reopening);
    this.channels.clear();
    const connection = this.connection;
    this.connection = undefined;
    // A subscriber has nothing to flush, and QUIT could wait forever for a node that is down.
    connection?.disconnect();
  }

  private open(): Redis | undefined {
    if (this.connection || this.closed) return this.connection;
    const connection = this.duplicate();
    if (!connection) return undefined;
    connection.on('error', () => undefined);
    connection.on('message', (channel: string) => {
      if (this.channels.has(channel)) this.events.released(channel.slice(this.keyPrefix.length));
    });
    connection.on('ready', () => this.ready(connection));
    connection.once('end', () => {
      // The connection gave up reconnecting (or its node is gone): open another one while anyone waits.
      if (this.connection !== connection) return;
      this.connection = undefined;
      if (this.channels.size > 0 && !this.closed) {
        this.reopening = setTimeout(() => {
          if (this.channels.size === 0 || this.closed) return;
          const next = this.open();
          if (next) void next.subscribe(...this.channels).catch(() => undefined);
        }, REOPEN_DELAY_MS);
      }
    });
    this.connection = connection;
    return connection;
  }

  /** Every connect after the first is a resubscribe: subscribe again, then tell the waiters. */
  private ready(connection: Redis): void {
    if (!this.connectedBefore) {
      this.connectedBefore = true;
      return;
    }
    if (this.channels.size === 0) return;
    connection.subscribe(...this.channels).then(
      () => this.events.resubscribed(),
      () => undefined,
    );
  }

  /**
   * A connection of our own, without ioredis' automatic resubscribe (which gives no sign when it is done).
   * On a cluster, one to a master: a cluster delivers every PUBLISH on every node.
   */
  private duplicate(): Redis | undefined {
    if (!isCluster(this.client)) return this.client.duplicate({ autoResubscribe: false });
    const masters = this.client.nodes('master');
    const node = masters[Math.floor(Math.random() * masters.length)];
    // Cluster nodes never reconnect by themselves; this one tries a few times, then `end` moves it on.
    return node?.duplicate({ autoResubscribe: false, retryStrategy: (attempt: number) => (attempt > 5 ? null : attempt * 100) });
  }
}
