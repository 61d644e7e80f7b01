// The lock's tracing channels and typed events: what each operation publishes and what it fills in.
import { EventChannel, Operation, type OperationContext } from '@cyredis/core';
import { LockLostError, LockUnavailableError } from './errors.js';
import type { Lock } from './lock.js';

/**
 * `cyredis:lock:acquire` (`LockManager.acquire`, `tryAcquire`, `using`): `key` (the resource); then `outcome`
 * `acquired` with `waitedMs` and `target` (the `Lock`), or `refused` with `waitedMs` when still held after
 * `waitMs`.
 */
export const ACQUIRE = new Operation('lock', 'acquire');
/** `cyredis:lock:acquireMany`: `key` (the resources, comma-separated), `count`; outcomes as `acquire`. */
export const ACQUIRE_MANY = new Operation('lock', 'acquireMany');
/** `cyredis:lock:semaphore.acquire` (also each side of a read-write lock): `key` (its name), `count`; as `acquire`. */
export const SEMAPHORE_ACQUIRE = new Operation('lock', 'semaphore.acquire');
/** `cyredis:lock:fair.acquire`: `key` (its name); outcomes as `acquire`. */
export const FAIR_ACQUIRE = new Operation('lock', 'fair.acquire');
/**
 * `cyredis:lock:extend` (any lease: lock, permit, fair lock): `key`, `target` (the lease); `outcome` `extended`,
 * or `lost` when the lease was gone.
 */
export const EXTEND = new Operation('lock', 'extend');
/** `cyredis:lock:release` (any lease): `key`, `target`; `outcome` `released`, or `expired` when it was gone. */
export const RELEASE = new Operation('lock', 'release');

/** The message of `cyredis:lock:lost`: a lease found gone when extended. */
export interface LostLease {
  /** The lease. */
  lock: Lock;
  /** Why: what the extension rejected with, or that the lease ran out on the local clock. */
  error: LockLostError;
}

/** `cyredis:lock:lost`: every lease found gone (see the manager's `lost` event), in any manager of the process. */
export const LOST = new EventChannel<LostLease>('lock', 'lost');

/** An acquire that resolved: the lease, and how long it took. */
export function acquired(ctx: OperationContext, lock: object): void {
  ctx.outcome = 'acquired';
  ctx.target = lock;
  ctx.waitedMs = performance.now() - ctx.startedAt!;
}

/** An acquire that rejected: refused (still held after `waitMs`) or failed (Redis, abort). */
export function notAcquired(ctx: OperationContext, error: unknown): void {
  ctx.waitedMs = performance.now() - ctx.startedAt!;
  if (error instanceof LockUnavailableError) ctx.outcome = 'refused';
}

/** An extension that rejected: `lost` when the lease was gone. */
export function extendFailed(ctx: OperationContext, error: unknown): void {
  if (error instanceof LockLostError) ctx.outcome = 'lost';
}

/** The events a `LockManager` emits, with their arguments. */
export interface LockManagerEvents {
  /**
   * The lease of one of this manager's locks, permits or fair locks is gone: an extension (by `lock.extend()`
   * or the keeper of `using`) found it expired, force-unlocked or taken, or, in `using`, it ran out on the
   * local clock while no extension was confirmed (Redis did not answer). Once per lease.
   */
  lost: [lock: Lock, error: LockLostError];
  /**
   * A best-effort background call failed: the release at the end of `using`, the release of what a failed
   * `acquireMany` took, or the give-back of a semaphore's permits or a fair lock's lease or place in line
   * (after an abort, a late grant or an unknown outcome). Nothing is lost for good: what was not given back
   * ends with its lease. `resource` is the lock's resource, or the semaphore's or fair lock's name. Emitted
   * only while the manager has an `error` listener, so an unheard failure never throws.
   */
  error: [error: unknown, resource: string];
}
