// A held lease: its fencing token, local deadline, extend and release; and how a granted round becomes one.
import { RedisUnavailableError, type OperationContext } from '@cyredis/core';
import { LockLostError, LockUnavailableError } from './errors.js';
import { EXTEND, extendFailed, LOST, RELEASE } from './tracing.js';

/** What a `Lock` asks its manager to do (the manager implements it; users never need to). */
export interface LockBackend {
  /** Extends the lease to `ttlMs`; resolves with the new validity in ms or rejects with `LockLostError`. */
  extend(lock: Lock, ttlMs: number): Promise<number>;
  /** Releases the lease; false when it was already gone. */
  release(lock: Lock): Promise<boolean>;
  /** Told when an extension found the lease gone (the manager emits `lost`). */
  lost?(lock: Lock, error: LockLostError): void;
}

/** A held lease on one resource. Get one from `LockManager.acquire`, `tryAcquire` or `using`. */
export class Lock {
  /** Local deadline on the monotonic clock (`performance.now()`); never later than the servers' expiry. */
  private deadline: number;

  constructor(
    private readonly backend: LockBackend,
    /** The resource name given to `acquire`. */
    readonly resource: string,
    /** The Redis key of the lock. */
    readonly key: string,
    /** The unique value that identifies this holder. */
    readonly owner: string,
    /**
     * Strictly greater than every token issued earlier for this resource: pass it to the resource you
     * protect and have it refuse writes carrying a lower token than one it has seen.
     */
    readonly fencingToken: bigint,
    /** The lease length this lock was taken (or last extended) with, in ms. */
    public ttlMs: number,
    deadline: number,
  ) {
    this.deadline = deadline;
  }

  /** When the lease ends at the latest, as a `Date.now()` timestamp in ms (computed from the monotonic clock). */
  get validUntil(): number {
    return Date.now() + this.remainingMs;
  }

  /** The lease left on the local monotonic clock, in ms (0 once it ran out). */
  get remainingMs(): number {
    return Math.max(0, this.deadline - performance.now());
  }

  /**
   * Extends the lease to `ttlMs` from now (default: the ttl it was taken with). Rejects with `LockLostError`
   * when the lease is gone (expired, released, force-unlocked, taken); an expired lock is never re-created.
   */
  extend(ttlMs: number = this.ttlMs): Promise<void> {
    if (!EXTEND.active) return this.extendNow(ttlMs);
    return EXTEND.run(() => ({ key: this.resource, target: this }), () => this.extendNow(ttlMs), extended, extendFailed);
  }

  private async extendNow(ttlMs: number): Promise<void> {
    try {
      this.deadline = await this.backend.extend(this, ttlMs);
    } catch (err) {
      if (err instanceof LockLostError) leaseLost(this, err, this.backend);
      throw err;
    }
    this.ttlMs = ttlMs;
  }

  /**
   * Releases the lock if this owner still holds it. Resolves true when it is released (also when it already
   * was, by this owner), false when the lease had expired or another owner holds it; never throws for that.
   */
  release(): Promise<boolean> {
    this.deadline = 0;
    if (!RELEASE.active) return this.backend.release(this);
    return RELEASE.run(() => ({ key: this.resource, target: this }), () => this.backend.release(this), released);
  }
}

/** The leases already reported lost: a lease that ran out may still meet a refused extension later. */
const reportedLost = new WeakSet<Lock>();

/** A lease found gone: published on `cyredis:lock:lost` and told to its manager (which emits `lost`), once. */
export function leaseLost(lock: Lock, error: LockLostError, manager: { lost?(lock: Lock, error: LockLostError): void }): void {
  if (reportedLost.has(lock)) return;
  reportedLost.add(lock);
  LOST.publish(() => ({ lock, error }));
  manager.lost?.(lock, error);
}

function extended(ctx: OperationContext): void {
  ctx.outcome = 'extended';
}

function released(ctx: OperationContext, done: boolean): void {
  ctx.outcome = done ? 'released' : 'expired';
}

/** What a single-node primitive (semaphore, fair lock) knows of one granted round. */
export interface GrantedRound<L extends Lock> {
  /** What the messages call it, e.g. `semaphore "pdf"`. */
  readonly what: string;
  /** `performance.now()` before the request was sent. */
  readonly start: number;
  readonly ttlMs: number;
  /** The part of the lease taken off for clock drift, in ms. */
  readonly driftMs: number;
  readonly signal: AbortSignal | undefined;
  /** Best effort, never rejects: gives back what the round took. */
  readonly giveBack: () => Promise<unknown>;
  /** The held lease, valid until `deadline` on the monotonic clock. */
  readonly hold: (deadline: number) => L;
}

/**
 * A granted round becomes a held lease only while it is wanted and valid: aborted meanwhile, it is given
 * back and the signal's reason thrown; granted after its lease (minus drift) ran out, it is given back and
 * a `RedisUnavailableError` thrown.
 */
export async function holdGranted<L extends Lock>(round: GrantedRound<L>): Promise<L> {
  if (round.signal?.aborted) {
    await round.giveBack();
    round.signal.throwIfAborted();
  }
  const deadline = round.start + round.ttlMs - round.driftMs;
  if (deadline > performance.now()) return round.hold(deadline);
  await round.giveBack();
  throw new RedisUnavailableError(`${round.what}: the reply came after the ${round.ttlMs} ms lease (minus drift) had run out`);
}

/** `acquire` as one attempt: the lease, or null when it is held elsewhere (`LockUnavailableError`). */
export async function orNull<L>(acquiring: Promise<L>): Promise<L | null> {
  try {
    return await acquiring;
  } catch (err) {
    if (err instanceof LockUnavailableError) return null;
    throw err;
  }
}
