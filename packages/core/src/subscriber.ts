// The pub/sub connection lifecycle every package shares: own connection, error sink, reference-counted
// channels, resubscribe after each reconnect, close.
import type { Redis } from 'ioredis';
import { isCluster, type RedisClient } from './client.js';

/** What a `PubSubSubscriber` reports; every callback is optional. */
export interface SubscriberEvents {
  /** A message on a subscribed channel (channel name as the server sees it). */
  message?: (channel: string, message: string) => void;
  /**
   * The connection dropped after it had been subscribed: from now until `resubscribed`, messages are lost.
   * Stop trusting anything kept fresh by messages (an L1 tier), or fall back to polling.
   */
  lost?: () => void;
  /**
   * Subscribed again after a loss. Whatever was published in between is gone: wake waiters, flush caches.
   */
  resubscribed?: () => void;
  /** An error of the subscriber connection (it reconnects by itself); default: ignored. */
  error?: (error: Error) => void;
}

/** Waits before opening a new connection after the last one gave up. */
const REOPEN_DELAY_MS = 100;

/** Reconnect attempts of a connection to one cluster master before moving to another master. */
const CLUSTER_NODE_ATTEMPTS = 5;

interface Channel {
  /** References to this channel in this process; unsubscribed at 0. */
  count: number;
  /** Settles with whether the server confirmed the first subscribe. */
  confirmed: Promise<boolean>;
}

/**
 * Channel subscriptions on a dedicated connection, opened at the first `subscribe`. ioredis' own
 * resubscribe gives no sign when it is done, so this one is off and the subscriber resubscribes itself after
 * every reconnect (`CLIENT KILL TYPE pubsub`, the pubsub output-buffer limit, a restart, a failover), then
 * reports `resubscribed`, since messages published while it was away are lost. On a cluster it listens on
 * one master (a cluster forwards every `PUBLISH` to every node) and moves to another when that one is gone.
 *
 * Channel names are used as given: `SUBSCRIBE` is never prefixed by ioredis, so a channel named after a key
 * must carry the client's `keyPrefix` (`clientKeyPrefix(client)`).
 */
export class PubSubSubscriber {
  private connection: Redis | undefined;
  private readonly channels = new Map<string, Channel>();
  /** Bumped by every loss, so a confirmation from before it does not count as live. */
  private losses = 0;
  private subscribedNow = false;
  /** The current connection is ready (a `close` after it is a loss). */
  private up = false;
  private connectedBefore = false;
  private reopening: NodeJS.Timeout | undefined;
  /** Settle the `subscribe` calls made while no connection could be opened, with the next subscribe's result. */
  private waiting: ((confirmed: boolean) => void)[] = [];
  private closed = false;

  constructor(
    /** The client whose options (and, on a cluster, whose masters) the connection copies. */
    private readonly client: RedisClient,
    private readonly events: SubscriberEvents = {},
  ) {}

  /**
   * Whether the connection confirmed a subscription and has not dropped since: only then can a process trust
   * that it hears every message (for a channel added later, await its `subscribe`).
   */
  get live(): boolean {
    return this.subscribedNow && this.connection?.status === 'ready';
  }

  /** The channels subscribed (or being subscribed), as the server sees them. */
  get channelNames(): string[] {
    return [...this.channels.keys()];
  }

  /**
   * Adds one reference to `channel`, subscribing at the first. Resolves `true` once the server confirmed the
   * subscription (no later message is missed), `false` when it failed (reported to `events.error`; the next
   * reconnect tries again). While no connection can be opened (a cluster client that knows no master yet),
   * it waits for one. Never rejects; wrap it in `waitAtMost` not to wait on a node that is down.
   */
  subscribe(channel: string): Promise<boolean> {
    const known = this.channels.get(channel);
    if (known) {
      known.count++;
      return known.confirmed;
    }
    if (this.closed) return Promise.resolve(false);
    const connection = this.open();
    const confirmed = connection ? this.send(connection, [channel]) : new Promise<boolean>((resolve) => this.waiting.push(resolve));
    this.channels.set(channel, { count: 1, confirmed });
    if (!connection) this.reopenSoon();
    return confirmed;
  }

  /** Drops one reference to `channel`, unsubscribing at the last. */
  unsubscribe(channel: string): void {
    const entry = this.channels.get(channel);
    if (!entry || --entry.count > 0) return;
    this.channels.delete(channel);
    this.connection?.unsubscribe(channel).catch((err: unknown) => this.events.error?.(err as Error));
  }

  /** Closes the connection and forgets every channel. The client it copied stays open. */
  close(): void {
    this.closed = true;
    this.subscribedNow = false;
    clearTimeout(this.reopening);
    this.channels.clear();
    for (const settle of this.waiting.splice(0)) settle(false);
    const connection = this.connection;
    this.connection = undefined;
    // A subscriber has nothing to flush, and QUIT could wait forever for a node that is down.
    connection?.disconnect();
  }

  /** Subscribes `channels` on `connection`; resolves whether the server confirmed while nothing was lost. */
  private send(connection: Redis, channels: string[]): Promise<boolean> {
    const losses = this.losses;
    return connection.subscribe(...channels).then(
      () => {
        const current = losses === this.losses && this.connection === connection && !this.closed;
        if (current) this.subscribedNow = true;
        return current;
      },
      (err: unknown) => {
        this.events.error?.(err as Error);
        return false;
      },
    );
  }

  private open(): Redis | undefined {
    if (this.connection || this.closed) return this.connection;
    const connection = this.duplicate();
    if (!connection) return undefined;
    connection.on('error', (err: Error) => this.events.error?.(err));
    connection.on('message', (channel: string, message: string) => {
      if (this.channels.has(channel)) this.events.message?.(channel, message);
    });
    connection.on('close', () => {
      if (this.connection === connection) this.lose();
    });
    connection.on('ready', () => this.ready(connection));
    connection.once('end', () => this.ended(connection));
    this.connection = connection;
    return connection;
  }

  private lose(): void {
    if (!this.up) return;
    this.up = false;
    this.losses++;
    if (!this.subscribedNow) return;
    this.subscribedNow = false;
    this.events.lost?.();
  }

  /**
   * Subscribes every channel on each connect: on the first, in case the subscribes queued before it failed
   * (retries exhausted while the server was down); on every later one, because the server forgot them, and
   * then reports `resubscribed`.
   */
  private ready(connection: Redis): void {
    if (this.connection !== connection) return;
    this.up = true;
    const reconnect = this.connectedBefore;
    this.connectedBefore = true;
    if (this.channels.size === 0) return;
    const waiting = this.waiting.splice(0);
    void this.send(connection, [...this.channels.keys()]).then((current) => {
      for (const settle of waiting) settle(current);
      if (current && reconnect) this.events.resubscribed?.();
    });
  }

  /** The connection gave up reconnecting (or its node is gone): open another one while channels remain. */
  private ended(connection: Redis): void {
    if (this.connection !== connection) return;
    this.lose();
    this.connection = undefined;
    this.reopenSoon();
  }

  /**
   * Opens a new connection shortly while channels remain (also when a cluster client knows no master yet).
   * Its `ready` subscribes the channels (and reports `resubscribed` if an earlier connection was ready).
   */
  private reopenSoon(): void {
    if (this.channels.size === 0 || this.closed || this.reopening !== undefined) return;
    this.reopening = setTimeout(() => {
      this.reopening = undefined;
      if (this.channels.size === 0 || this.closed || this.connection) return;
      const connection = this.open();
      if (!connection) return this.reopenSoon();
      // Cluster node connections are lazy: a command makes this one connect.
      void this.send(connection, [...this.channels.keys()]);
    }, REOPEN_DELAY_MS);
  }

  /** A connection of our own; on a cluster, to one random master. */
  private duplicate(): Redis | undefined {
    if (!isCluster(this.client)) return this.client.duplicate({ autoResubscribe: false });
    const masters = this.client.nodes('master');
    const node = masters[Math.floor(Math.random() * masters.length)];
    // Cluster nodes never reconnect by themselves; this one tries a few times, then `end` moves it on.
    return node?.duplicate({
      autoResubscribe: false,
      retryStrategy: (attempt: number) => (attempt > CLUSTER_NODE_ATTEMPTS ? null : attempt * 100),
    });
  }
}
