// A held lease: its fencing token, local deadline, extend and release.
/** What a `Lock` asks its manager to do (the manager implements it; users never need to). */
export interface LockBackend {
  /** Extends the lease to `ttlMs`; resolves with the new validity in ms or rejects with `LockLostError`. */
  extend(lock: Lock, ttlMs: number): Promise<number>;
  /** Releases the lease; false when it was already gone. */
  release(lock: Lock): Promise<boolean>;
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
  async extend(ttlMs: number = this.ttlMs): Promise<void> {
    this.deadline = await this.backend.extend(this, ttlMs);
    this.ttlMs = ttlMs;
  }

  /**
   * Releases the lock if this owner still holds it. Resolves true when it is released (also when it already
   * was, by this owner), false when the lease had expired or another owner holds it; never throws for that.
   */
  release(): Promise<boolean> {
    this.deadline = 0;
    return this.backend.release(this);
  }
}
