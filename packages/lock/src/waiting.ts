// Waiting for a held lock: the per-key queues of waiting acquires, and the retry loop each of them runs.
import { waitAtMost } from '@cyredis/core';
import { LockUnavailableError } from './errors.js';

/** One waiting `acquire`: `wake` makes it retry now. */
interface Waiter {
  wake: () => void;
  /** Semaphore waiters: the permits asked for (a release message says how many are available). */
  count: number | undefined;
  /** Fair-lock waiters: the owner a release message names when it is this waiter's turn. */
  owner: string | undefined;
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

/** Where waiters hear of releases: the key's release channel on every node. */
export interface ReleaseChannels {
  /** Subscribes; settles once every node confirmed, failed or took too long. Never rejects. */
  subscribe(key: string): Promise<void>;
  unsubscribe(key: string): void;
}

/** What a waiter retries: one acquire round, what it acquired or the refusal that names the lease left. */
export type AcquireRound<T> = () => Promise<T | LockUnavailableError>;

/** How a waiter is woken, beyond the first-in-line default of a lock. */
export interface WaitStyle {
  /** Semaphore: the permits asked for; a release wakes the waiters whose counts fit. */
  count?: number;
  /** Fair lock: a release wakes only the waiter its message names. */
  owner?: string;
  /** Retry at the latest this long after a refusal, in ms (a fair waiter keeps its place alive so). */
  retryWithinMs?: (refusal: LockUnavailableError) => number;
}

function wakeFirst(waiters: Set<Waiter>): void {
  for (const waiter of waiters) {
    if (waiter.woken) continue;
    waiter.woken = true;
    waiter.wake();
    return;
  }
}

/** Wakes the fair-lock waiter of `owner`, if it waits here. */
function wakeOwner(waiters: Set<Waiter>, owner: string): void {
  for (const waiter of waiters) {
    if (waiter.owner !== owner || waiter.woken) continue;
    waiter.woken = true;
    waiter.wake();
    return;
  }
}

/** Wakes, in arrival order, the semaphore waiters whose counts fit in `available` permits. */
function wakeFitting(waiters: Set<Waiter>, available: number): void {
  let left = available;
  for (const waiter of waiters) {
    if (left <= 0) return;
    if (waiter.woken || (waiter.count ?? 1) > left) continue;
    left -= waiter.count ?? 1;
    waiter.woken = true;
    waiter.wake();
  }
}

/**
 * The waiters of one manager, per lock key, in arrival order. A release message wakes the first waiter
 * only (a semaphore's: the waiters whose counts fit the permits it names; a fair lock's: the one owner it
 * names), so 5,000 waiters do not race for every hand-off; the end of a lease (a holder that never
 * releases) also wakes only the first, through one timer per key. A lost subscription wakes them all.
 */
export class WaitQueues {
  private readonly queues = new Map<string, Queue>();

  constructor(private readonly channels: ReleaseChannels) {}

  /**
   * Retries `round` whenever the lease that refused it may have ended (a release message, the end of the
   * lease, a resubscribe), until it returns a lock or `deadline` (on `performance.now()`) passes; then
   * throws the last refusal. An abort of `signal` rejects with its reason.
   */
  async waitFor<T>(
    key: string,
    ttlMs: number,
    deadline: number,
    signal: AbortSignal | undefined,
    round: AcquireRound<T>,
    style: WaitStyle = {},
  ): Promise<T> {
    let resolveSleep: (() => void) | undefined;
    const waiter: Waiter = { woken: false, count: style.count, owner: style.owner, wake: () => resolveSleep?.() };
    const onAbort = () => resolveSleep?.();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      // Subscribed before the next round, so a release after it cannot be missed; a node that does not
      // confirm in time must not hold the wait up (the lease-end timer and its resubscribe still wake us).
      await waitAtMost(this.join(key, waiter), Math.max(0, deadline - performance.now()));
      for (;;) {
        signal?.throwIfAborted();
        waiter.woken = false;
        // A `wait` round asks the holder's release to publish; this waiter is subscribed by now.
        const result = await round();
        if (!(result instanceof LockUnavailableError)) {
          // The next waiter retries when this new lease ends, should its holder never release it.
          this.leaseEndsIn(key, ttlMs + 1);
          return result;
        }
        // The holder may never release: the head waiter retries when its lease ends at the latest.
        const leaseLeft = Math.min(...result.nodes.map((n) => (n.state === 'refused' ? (n.ttlMs ?? 0) : Infinity)));
        if (Number.isFinite(leaseLeft)) this.leaseEndsIn(key, leaseLeft + 1);
        const left = deadline - performance.now();
        if (left <= 0) throw result;
        // Woken or aborted while the round was in flight: go round again at once.
        if (waiter.woken || signal?.aborted) continue;
        const sleepMs = Math.min(left, style.retryWithinMs?.(result) ?? Infinity);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, sleepMs);
          resolveSleep = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        resolveSleep = undefined;
      }
    } finally {
      signal?.removeEventListener('abort', onAbort);
      if (this.leave(key, waiter)) this.channels.unsubscribe(key);
    }
  }

  /**
   * A release was published on `key`: the first waiter not yet woken retries; for a semaphore (`message`
   * = the permits available), every waiter in arrival order whose count fits; for a fair lock (`message` =
   * the next owner in line), that owner's waiter only.
   */
  released(key: string, message: string): void {
    const queue = this.queues.get(key);
    if (!queue) return;
    const first = queue.waiters.values().next().value;
    if (first?.owner !== undefined) wakeOwner(queue.waiters, message);
    else if (first?.count !== undefined) wakeFitting(queue.waiters, Number(message));
    else wakeFirst(queue.waiters);
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

  /**
   * Adds a waiter; the key's first waiter subscribes. Resolves when the key's subscription settled, so the
   * waiter's next round cannot miss a release.
   */
  private join(key: string, waiter: Waiter): Promise<void> {
    const queue = this.queues.get(key);
    if (queue) {
      queue.waiters.add(waiter);
      return queue.subscribed;
    }
    const subscribed = this.channels.subscribe(key);
    this.queues.set(key, { waiters: new Set([waiter]), subscribed, leaseEnd: undefined });
    return subscribed;
  }

  /** Removes a waiter (a wake-up it did not use goes to the next); true when the key has no waiter left. */
  private leave(key: string, waiter: Waiter): boolean {
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

  /** The lease that holds `key` ends in `ms` at the latest (the newest news replaces older). */
  private leaseEndsIn(key: string, ms: number): void {
    const queue = this.queues.get(key);
    if (!queue) return;
    clearTimeout(queue.leaseEnd);
    queue.leaseEnd = setTimeout(() => wakeFirst(queue.waiters), ms);
  }
}
