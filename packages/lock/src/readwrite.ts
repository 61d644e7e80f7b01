// ReadWriteLock: many readers or one writer, writer-preferring, built on the semaphore script (readers take one permit, a writer all).
import { assertOptions } from '@cyredis/core';
import type { AcquireOptions } from './manager.js';
import { MAX_PERMITS } from './protocol.js';
import { Semaphore, type Permit, type SemaphoreContext } from './semaphore.js';

const SIDE_OPTIONS = ['ttlMs', 'waitMs', 'signal', 'owner'] as const;

/** One side of a read-write lock: readers share it, a writer holds it alone. */
export class ReadWriteSide {
  constructor(
    private readonly semaphore: Semaphore,
    /** Permits this side takes: 1 for a reader, all of them for the writer. */
    private readonly count: number,
  ) {}

  /**
   * Takes this side, waiting up to `waitMs`; the `Lock` it resolves with has a fencing token (for a writer,
   * one that orders the writes). Rejects like `LockManager.acquire` (`LockUnavailableError` when still
   * blocked after `waitMs`).
   */
  acquire(options: AcquireOptions = {}): Promise<Permit> {
    assertOptions('options', options, SIDE_OPTIONS);
    return this.semaphore.acquire({ ...options, count: this.count });
  }

  /** One attempt, no waiting: the lock, or null when blocked. */
  tryAcquire(options: Omit<AcquireOptions, 'waitMs'> = {}): Promise<Permit | null> {
    assertOptions('options', options, SIDE_OPTIONS);
    return this.semaphore.tryAcquire({ ...options, count: this.count });
  }

  /** Runs `routine` while holding this side, like `LockManager.using`. */
  using<T>(routine: (signal: AbortSignal, lock: Permit) => Promise<T> | T, options: AcquireOptions = {}): Promise<T> {
    assertOptions('options', options, SIDE_OPTIONS);
    return this.semaphore.using(routine, { ...options, count: this.count });
  }
}

/** What `ReadWriteLock.status()` reports. */
export interface ReadWriteStatus {
  /** Owners of the live read leases. */
  readers: string[];
  /** Owner of the live write lease, if any. */
  writer?: string;
  /** The last token issued, to a reader or a writer (0n if never locked, or once the idle key is gone). */
  fencingToken: bigint;
}

/**
 * Many readers or one writer, across processes, writer-preferring: once a writer waits, new readers are
 * held back (for at most that writer's lease) so writers are not starved. Get one from
 * `LockManager.readWrite(name)`.
 */
export class ReadWriteLock {
  /** Shared: any number of readers at once, none while a writer holds the lock. */
  readonly read: ReadWriteSide;
  /** Exclusive: one writer, no reader. */
  readonly write: ReadWriteSide;
  private readonly semaphore: Semaphore;

  /** @hidden Built by `LockManager`. */
  constructor(
    context: SemaphoreContext,
    /** The name given to `LockManager.readWrite`. */
    readonly name: string,
    /** The Redis key of the lock. */
    readonly key: string,
  ) {
    this.semaphore = new Semaphore(context, name, key, MAX_PERMITS, true);
    this.read = new ReadWriteSide(this.semaphore, 1);
    this.write = new ReadWriteSide(this.semaphore, MAX_PERMITS);
  }

  /** Who holds the lock now. */
  async status(): Promise<ReadWriteStatus> {
    const { holders, fencingToken } = await this.semaphore.status();
    const writer = holders.find((h) => h.count === MAX_PERMITS)?.owner;
    return { readers: holders.filter((h) => h.count !== MAX_PERMITS).map((h) => h.owner), ...(writer ? { writer } : {}), fencingToken };
  }
}
