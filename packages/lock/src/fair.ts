// FairLock: a lease lock whose waiters are served strictly in arrival order across processes, each woken individually.
import { randomUUID } from 'node:crypto';
import { assertFiniteNumber, assertNonEmptyString, assertOptions, RedisUnavailableError } from '@cyredis/core';
import { LockLostError, LockUnavailableError } from './errors.js';
import { holdGranted, Lock, orNull, type LockBackend } from './lock.js';
import type { AcquireOptions } from './manager.js';
import { decodeFairEnded, decodeFairReply, decodeFairStatus, type FairRequest, type LockReply } from './protocol.js';
import type { LockStatus } from './quorum.js';
import type { SemaphoreContext } from './semaphore.js';
import { FAIR_ACQUIRE, acquired, notAcquired } from './tracing.js';
import { runHoldingLock } from './using.js';

const ACQUIRE_OPTIONS = ['ttlMs', 'waitMs', 'signal', 'owner'] as const;
const MAX_OWNER_LENGTH = 1024;

/** What `FairLock.status()` reports: the lock's state and how many places in line are taken. */
export interface FairLockStatus extends LockStatus {
  /** Places taken in line (a waiter that gave up keeps its place until its lease length has passed). */
  waiting: number;
}

/** The refusal of one round, with what the waiter needs to know to retry in time. */
function refusal(name: string, reply: LockReply): LockUnavailableError {
  return new LockUnavailableError(name, [{ node: 0, state: 'refused', ...(reply.owner ? { owner: reply.owner } : {}), ttlMs: reply.ttlMs }]);
}

/**
 * A lock whose waiters are served strictly in arrival order, across processes: each `acquire` that has to
 * wait takes a place in line in Redis, and a release wakes exactly the waiter whose turn it is. Get one from
 * `LockManager.fair(name)`.
 */
export class FairLock {
  private readonly backend: LockBackend = {
    extend: (lock, ttlMs) => this.extendLock(lock, ttlMs),
    release: (lock) => this.releaseLock(lock),
    lost: (lock, error) => this.context.lost(lock, error),
  };

  /** @hidden Built by `LockManager`. */
  constructor(
    private readonly context: SemaphoreContext,
    /** The name given to `LockManager.fair`. */
    readonly name: string,
    /** The Redis key of the lock. */
    readonly key: string,
  ) {}

  /**
   * Takes the lock, waiting up to `waitMs` for its turn; settles within `waitMs` plus `timeoutMs`. Rejects
   * with `LockUnavailableError` when its turn has not come after `waitMs`, a `RedisUnavailableError` when
   * Redis does not answer in time, or the signal's reason when aborted.
   */
  acquire(options: AcquireOptions = {}): Promise<Lock> {
    if (!FAIR_ACQUIRE.active) return this.acquireNow(options);
    return FAIR_ACQUIRE.run(() => ({ key: this.name }), () => this.acquireNow(options), acquired, notAcquired);
  }

  private async acquireNow(options: AcquireOptions): Promise<Lock> {
    assertOptions('options', options, ACQUIRE_OPTIONS);
    const ttlMs = options.ttlMs === undefined ? this.context.ttlMs : this.context.ttl('options.ttlMs', options.ttlMs);
    const waitMs = options.waitMs ?? 0;
    assertFiniteNumber('options.waitMs', waitMs, { min: 0 });
    const owner = options.owner ?? randomUUID();
    assertNonEmptyString('options.owner', owner, MAX_OWNER_LENGTH);
    const signal = options.signal;
    signal?.throwIfAborted();
    const deadline = performance.now() + waitMs;
    this.context.beforeAcquire();
    const first = await this.attempt(owner, ttlMs, 'acquire', signal);
    if (first instanceof Lock) return first;
    if (waitMs === 0) throw first;
    // Each waiter renews its place at least every half lease: a place that is not renewed ends.
    const retryWithinMs = (r: LockUnavailableError) => Math.min((r.nodes[0]?.ttlMs ?? 0) + 1, ttlMs / 2);
    const round = () => this.attempt(owner, ttlMs, 'wait', signal);
    try {
      return await this.context.waiting.waitFor<Lock>(this.key, ttlMs, deadline, signal, round, { owner, retryWithinMs });
    } catch (err) {
      // Gave up (timeout, abort, outage): the place in line goes now, not when it would have ended.
      await this.context.node.runFair({ operation: 'leave', key: this.key, owner }).catch(this.giveBackFailed);
      throw err;
    }
  }

  /** One attempt, no waiting and no place in line: the lock, or null when it is held or someone waits. */
  tryAcquire(options: Omit<AcquireOptions, 'waitMs'> = {}): Promise<Lock | null> {
    return orNull(this.acquire({ ...options, waitMs: 0 }));
  }

  /** Runs `routine` while holding the lock, like `LockManager.using`. */
  async using<T>(routine: (signal: AbortSignal, lock: Lock) => Promise<T> | T, options: AcquireOptions = {}): Promise<T> {
    const lock = await this.acquire(options);
    return runHoldingLock(lock, routine, options.signal, this.context);
  }

  /** The lock's state and how many places in line are taken. */
  async status(): Promise<FairLockStatus> {
    const state = decodeFairStatus(await this.context.node.runFair({ operation: 'status', key: this.key }));
    const locked = state.state === 'granted';
    return { locked, ...(locked ? { owner: state.owner } : {}), ttlMs: state.ttlMs, fencingToken: state.token, waiting: state.waiting };
  }

  /** Ends whoever's lease (the next in line is woken); true when a live lease was ended. */
  async forceUnlock(): Promise<boolean> {
    const request: FairRequest = { operation: 'force', key: this.key };
    return decodeFairEnded(request, await this.context.node.runFair(request));
  }

  /** One round: the lock, or the refusal to wait on. An unknown outcome or a late grant is released. */
  private async attempt(owner: string, ttlMs: number, operation: 'acquire' | 'wait', signal: AbortSignal | undefined): Promise<Lock | LockUnavailableError> {
    const start = performance.now();
    const request: FairRequest = { operation, key: this.key, owner, ttlMs };
    let reply: LockReply;
    try {
      reply = decodeFairReply(request, await this.context.node.runFair(request));
    } catch (err) {
      if (err instanceof RedisUnavailableError) await this.releaseOwner(owner);
      throw err;
    }
    if (reply.state === 'refused') return refusal(this.name, reply);
    const token = reply.token;
    return holdGranted({
      what: `fair lock "${this.name}"`,
      start,
      ttlMs,
      driftMs: this.context.drift(ttlMs),
      signal,
      giveBack: () => this.releaseOwner(owner),
      hold: (deadline) => new Lock(this.backend, this.name, this.key, owner, token, ttlMs, deadline),
    });
  }

  /** Best effort: releases whatever `owner` may hold; never rejects. */
  private releaseOwner(owner: string): Promise<unknown> {
    return this.context.node.runFair({ operation: 'release', key: this.key, owner }).catch(this.giveBackFailed);
  }

  /** A give-back that failed: the lease or place in line ends by itself; the manager's `error` event tells. */
  private readonly giveBackFailed = (err: unknown): void => this.context.error(err, this.name);

  private async extendLock(lock: Lock, ttlMs: number): Promise<number> {
    ttlMs = this.context.ttl('ttlMs', ttlMs);
    const start = performance.now();
    const request: FairRequest = { operation: 'extend', key: this.key, owner: lock.owner, ttlMs };
    const reply = decodeFairReply(request, await this.context.node.runFair(request));
    const deadline = start + ttlMs - this.context.drift(ttlMs);
    if (reply.state === 'granted' && deadline > performance.now()) return deadline;
    throw new LockLostError(this.name, [{ node: 0, state: 'refused', ...(reply.owner ? { owner: reply.owner } : {}), ttlMs: reply.ttlMs }]);
  }

  private async releaseLock(lock: Lock): Promise<boolean> {
    const request: FairRequest = { operation: 'release', key: this.key, owner: lock.owner };
    return decodeFairEnded(request, await this.context.node.runFair(request));
  }
}
