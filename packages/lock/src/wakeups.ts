// Release notifications over pub/sub: one subscriber connection per node, resubscribed after every reconnect.
import { clientKeyPrefix, isCluster, type RedisClient } from '@cyredis/core';
import type { Redis } from 'ioredis';

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
