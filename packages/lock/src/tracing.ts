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
  /** What the extension rejected with. */
  error: LockLostError;
}

/** `cyredis:lock:lost`: every lease an extension found gone, in any manager of the process. */
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
   * An extension (by `lock.extend()` or the keeper of `using`) found the lease of one of this manager's locks,
   * permits or fair locks gone: expired, force-unlocked or taken.
   */
  lost: [lock: Lock, error: LockLostError];
}
