// Semaphore: a counting semaphore with leased permits and fencing tokens, on one Redis (node or cluster).
import { randomUUID } from 'node:crypto';
import { assertFiniteNumber, assertInteger, assertNonEmptyString, assertOptions, InvalidArgumentError, RedisUnavailableError } from '@cyredis/core';
import { LockLostError, LockUnavailableError } from './errors.js';
import { holdGranted, Lock, orNull, type LockBackend } from './lock.js';
import type { LockNode } from './node.js';
import {
  decodePermitReply,
  decodeReleaseReply,
  decodeResizeReply,
  decodeStatusReply,
  MAX_PERMITS,
  type PermitHolder,
  type PermitReply,
  type SemaphoreRequest,
} from './protocol.js';
import { SEMAPHORE_ACQUIRE, acquired, notAcquired } from './tracing.js';
import { runHoldingLock } from './using.js';
import type { WaitQueues } from './waiting.js';

const ACQUIRE_OPTIONS = ['count', 'ttlMs', 'waitMs', 'signal', 'owner'] as const;
const MAX_OWNER_LENGTH = 1024;

/** Options of `LockManager.semaphore(name, options)`. */
export interface SemaphoreOptions {
  /** How many permits the semaphore has: 1 … 1 000 000. Required. */
  permits: number;
}

/** Options of `Semaphore.acquire`, `tryAcquire` and `using`. */
export interface PermitOptions {
  /** Permits to take at once, all or none: 1 … `permits`. Default 1. */
  count?: number;
  /** Lease length in ms: 10 … 2^40. Default: the manager's `ttlMs`. */
  ttlMs?: number;
  /** How long to wait for enough permits, in ms. Default 0 (one attempt). */
  waitMs?: number;
  /** Cancels the wait; `acquire` then rejects with the signal's reason (and holds nothing). */
  signal?: AbortSignal;
  /** The holder's unique value. Default: a random UUID. Acquiring again with the same owner and count renews its lease; another count is a `ScriptError`. */
  owner?: string;
}

/** What `Semaphore.status()` reports. */
export interface SemaphoreStatus {
  /** The semaphore's permits (as last set by `setPermits`, while its key exists). */
  permits: number;
  /** Permits free now (negative after `setPermits` below what holders keep). */
  available: number;
  /** Every live lease. */
  holders: PermitHolder[];
  /** The last token issued (0n if never acquired, or once the idle semaphore's key expired). */
  fencingToken: bigint;
}

/** What a manager lends its semaphores, read-write and fair locks (built by `LockManager`; users never need one). */
export interface SemaphoreContext {
  readonly node: LockNode;
  readonly waiting: WaitQueues;
  readonly ttlMs: number;
  /** Checks and rounds a lease length (`InvalidArgumentError` naming `name`). */
  readonly ttl: (name: string, value: unknown) => number;
  /** The part of a lease taken off the local deadline for clock drift, in ms. */
  readonly drift: (ttlMs: number) => number;
  /** Called before each acquire: the manager's once-per-process eviction warning. */
  readonly beforeAcquire: () => void;
  /** Told when an extension found a lease gone (the manager emits `lost`). */
  readonly lost: (lock: Lock, error: LockLostError) => void;
}

/** Permits held under one lease: a `Lock` (fencing token, extend, release, deadline) with its `count`. */
export class Permit extends Lock {
  constructor(
    backend: LockBackend,
    resource: string,
    key: string,
    owner: string,
    fencingToken: bigint,
    ttlMs: number,
    deadline: number,
    /** How many permits this lease holds. */
    readonly count: number,
  ) {
    super(backend, resource, key, owner, fencingToken, ttlMs, deadline);
  }
}

/** Not enough permits were free within `waitMs`. A `LockUnavailableError`, so one `catch` serves both. */
export class PermitsUnavailableError extends LockUnavailableError {
  constructor(
    resource: string,
    /** Permits asked for. */
    readonly requested: number,
    /** Permits free at the last attempt. */
    readonly available: number,
    /** The semaphore's permits at the last attempt. */
    readonly permits: number,
    waitMs: number,
  ) {
    super(resource, [{ node: 0, state: 'refused', ttlMs: waitMs }]);
    this.message = `semaphore "${resource}": ${requested} permit(s) asked, ${available} of ${permits} free`;
  }
}

function permitsArgument(name: string, value: unknown): number {
  assertInteger(name, value, { min: 1, max: MAX_PERMITS });
  return value;
}

/**
 * A counting semaphore: at most `permits` permits are held at once, each acquire takes `count` of them
 * under a lease, and the permits of a crashed holder come back when its lease ends. Get one from
 * `LockManager.semaphore(name, { permits })`.
 */
export class Semaphore {
  private permits: number;
  private readonly backend: LockBackend = {
    extend: (permit, ttlMs) => this.extendPermit(permit, ttlMs),
    release: (permit) => this.releasePermit(permit),
    lost: (permit, error) => this.context.lost(permit, error),
  };

  /** @hidden Built by `LockManager`. */
  constructor(
    private readonly context: SemaphoreContext,
    /** The name given to `LockManager.semaphore`. */
    readonly name: string,
    /** The Redis key of the semaphore. */
    readonly key: string,
    permits: number,
    /** Read-write lock: a request for all permits is a writer, and a waiting writer holds new readers back. */
    private readonly writerPreference = false,
  ) {
    this.permits = permitsArgument('options.permits', permits);
  }

  /**
   * Takes `count` permits (default 1), waiting up to `waitMs` for enough of them to come free; settles within
   * `waitMs` plus `timeoutMs`. Rejects with `PermitsUnavailableError` (a `LockUnavailableError`) when still
   * too few are free after `waitMs`, a `RedisUnavailableError` when Redis does not answer in time, or the
   * signal's reason when aborted.
   */
  acquire(options: PermitOptions = {}): Promise<Permit> {
    const context = () => ({ key: this.name, count: options?.count ?? 1 });
    return SEMAPHORE_ACQUIRE.run(context, () => this.acquireNow(options), acquired, notAcquired);
  }

  private async acquireNow(options: PermitOptions): Promise<Permit> {
    assertOptions('options', options, ACQUIRE_OPTIONS);
    const count = options.count ?? 1;
    assertInteger('options.count', count, { min: 1, max: this.permits });
    const ttlMs = options.ttlMs === undefined ? this.context.ttlMs : this.context.ttl('options.ttlMs', options.ttlMs);
    const waitMs = options.waitMs ?? 0;
    assertFiniteNumber('options.waitMs', waitMs, { min: 0 });
    const owner = options.owner ?? randomUUID();
    assertNonEmptyString('options.owner', owner, MAX_OWNER_LENGTH);
    const signal = options.signal;
    signal?.throwIfAborted();
    const deadline = performance.now() + waitMs;
    this.context.beforeAcquire();
    const first = await this.attempt(owner, ttlMs, count, 'acquire', signal);
    if (first instanceof Permit) return first;
    if (waitMs === 0) throw first;
    const round = () => this.attempt(owner, ttlMs, count, 'wait', signal);
    return this.context.waiting.waitFor<Permit>(this.key, ttlMs, deadline, signal, round, { count });
  }

  /** One attempt, no waiting: the permits, or null when too few are free. */
  tryAcquire(options: Omit<PermitOptions, 'waitMs'> = {}): Promise<Permit | null> {
    return orNull(this.acquire({ ...options, waitMs: 0 }));
  }

  /**
   * Runs `routine` while holding the permits, like `LockManager.using`: the lease is extended in the
   * background, `signal` aborts with `LockLostError` when it is lost, and the permits are released at the end.
   */
  async using<T>(routine: (signal: AbortSignal, permit: Permit) => Promise<T> | T, options: PermitOptions = {}): Promise<T> {
    const permit = await this.acquire(options);
    return runHoldingLock(permit, routine, options.signal);
  }

  /** The permits, how many are free, and every live lease. */
  async status(): Promise<SemaphoreStatus> {
    const state = decodeStatusReply(await this.context.node.runSemaphore({ operation: 'status', key: this.key, permits: this.permits }));
    return { permits: state.permits, available: state.available, holders: [...state.holders], fencingToken: state.token };
  }

  /**
   * Sets the number of permits (1 … 1 000 000) for every process; holders keep what they hold, so fewer
   * may be free than the new number says until they release. Lasts while the semaphore's key exists: once
   * nobody has held a permit for a minute, the `permits` each process was created with apply again.
   */
  async setPermits(permits: number): Promise<void> {
    permitsArgument('permits', permits);
    this.permits = permits;
    decodeResizeReply(await this.context.node.runSemaphore({ operation: 'resize', key: this.key, permits }));
  }

  /**
   * One acquire round: the permit, or the refusal to wait on. A call whose outcome is unknown (no reply in
   * time) or granted too late is released, waiting for that only while its `timeoutMs` lasts.
   */
  private async attempt(
    owner: string,
    ttlMs: number,
    count: number,
    operation: 'acquire' | 'wait',
    signal: AbortSignal | undefined,
  ): Promise<Permit | PermitsUnavailableError> {
    const start = performance.now();
    const request: SemaphoreRequest = { operation, key: this.key, owner, ttlMs, count, permits: this.permits, writerPreference: this.writerPreference };
    let reply: PermitReply;
    try {
      reply = decodePermitReply(request, await this.context.node.runSemaphore(request));
    } catch (err) {
      if (err instanceof RedisUnavailableError) await this.releaseOwner(owner);
      throw err;
    }
    if (reply.state === 'refused') return new PermitsUnavailableError(this.name, count, reply.available, reply.permits, reply.waitMs);
    const { token, count: held } = reply;
    return holdGranted({
      what: `semaphore "${this.name}"`,
      start,
      ttlMs,
      driftMs: this.context.drift(ttlMs),
      signal,
      giveBack: () => this.releaseOwner(owner),
      hold: (deadline) => new Permit(this.backend, this.name, this.key, owner, token, ttlMs, deadline, held),
    });
  }

  /** Best effort: releases whatever `owner` may hold; never rejects. */
  private releaseOwner(owner: string): Promise<unknown> {
    return this.context.node.runSemaphore({ operation: 'release', key: this.key, owner }).catch(() => undefined);
  }

  private async extendPermit(permit: Lock, ttlMs: number): Promise<number> {
    ttlMs = this.context.ttl('ttlMs', ttlMs);
    const start = performance.now();
    const request: SemaphoreRequest = { operation: 'extend', key: this.key, owner: permit.owner, ttlMs };
    const reply = decodePermitReply(request, await this.context.node.runSemaphore(request));
    const deadline = start + ttlMs - this.context.drift(ttlMs);
    if (reply.state === 'granted' && deadline > performance.now()) return deadline;
    throw new LockLostError(this.name, [{ node: 0, state: 'refused' }], 'the lease of its permits ended (expired, or released)');
  }

  private async releasePermit(permit: Lock): Promise<boolean> {
    return decodeReleaseReply(await this.context.node.runSemaphore({ operation: 'release', key: this.key, owner: permit.owner }));
  }
}

/** A semaphore needs one Redis: `semaphore()` on a Redlock manager is refused with this. */
export function redlockUnsupported(): InvalidArgumentError {
  return new InvalidArgumentError(
    'redis',
    'semaphores, read-write and fair locks run on one Redis (node, Sentinel or cluster); Redlock over several clients is not supported for them yet',
  );
}
