// `LockManager.using`: runs a routine while a held lease is extended in the background, then releases it.
import { LockLostError } from './errors.js';
import { leaseLost, type Lock } from './lock.js';

/** Where a held lease's background trouble goes: its manager's `lost` and `error` events. */
export interface LeaseEvents {
  /** The lease is gone (an extension found it gone, or it ran out on the local clock). */
  readonly lost: (lock: Lock, error: LockLostError) => void;
  /** A best-effort background call (a release, a give-back) failed; `resource` names what it was for. */
  readonly error: (error: unknown, resource: string) => void;
}

/**
 * Keeps one lease alive: extends it at half its remaining time, and aborts `signal` with `LockLostError`
 * when an extension is refused or the local lease runs out before one is confirmed.
 */
class LeaseKeeper {
  private readonly controller = new AbortController();
  private stopped = false;
  private renewTimer: NodeJS.Timeout | undefined;
  private deadlineTimer: NodeJS.Timeout | undefined;
  /** The extension in flight, if any (settles, never rejects). */
  private renewing: Promise<void> = Promise.resolve();

  constructor(
    private readonly lock: Lock,
    private readonly events: LeaseEvents,
  ) {
    this.armDeadline();
    this.schedule();
  }

  /** Aborted with `LockLostError` once the lease is lost, or with the caller's reason. */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  abort(reason: unknown): void {
    if (!this.controller.signal.aborted) this.controller.abort(reason);
  }

  /** Marks the lease lost if it ran out on the local clock. */
  checkDeadline(): void {
    if (this.lock.remainingMs === 0) this.ranOut();
  }

  /** Stops extending; resolves once an extension in flight settled. */
  stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.renewTimer);
    clearTimeout(this.deadlineTimer);
    return this.renewing;
  }

  /** The lease ran out with no extension confirmed: lost, and reported as such once (unless aborted before). */
  private ranOut(): void {
    if (this.controller.signal.aborted) return;
    const error = new LockLostError(this.lock.resource, [], 'its lease ran out on the local clock before an extension was confirmed');
    this.abort(error);
    leaseLost(this.lock, error, this.events);
  }

  private armDeadline(): void {
    clearTimeout(this.deadlineTimer);
    this.deadlineTimer = setTimeout(() => this.ranOut(), this.lock.remainingMs);
  }

  private schedule(delayMs = this.lock.remainingMs / 2): void {
    if (!this.stopped && !this.controller.signal.aborted) this.renewTimer = setTimeout(() => this.renew(), delayMs);
  }

  private renew(): void {
    this.renewing = this.lock.extend().then(
      () => {
        if (this.stopped) return;
        this.armDeadline();
        this.schedule();
      },
      (err: unknown) => {
        // A refusal is final; for an unknown outcome keep trying while the local lease lasts.
        if (err instanceof LockLostError) this.abort(err);
        else this.schedule(Math.max(10, this.lock.remainingMs / 4));
      },
    );
  }
}

/**
 * Runs `routine` on a held lock (see `LockManager.using`): rejects with the routine's own error when it
 * throws; otherwise with `LockLostError` when the lease was lost while it ran (even if it returned), else
 * resolves with its result. The lock is released at the end; a lease that runs out and a release that fails
 * are told to `events`.
 */
export async function runHoldingLock<T, L extends Lock>(
  lock: L,
  routine: (signal: AbortSignal, lock: L) => Promise<T> | T,
  callerSignal: AbortSignal | undefined,
  events: LeaseEvents,
): Promise<T> {
  const keeper = new LeaseKeeper(lock, events);
  const onCallerAbort = () => keeper.abort(callerSignal?.reason);
  callerSignal?.addEventListener('abort', onCallerAbort, { once: true });
  const finish = async () => {
    callerSignal?.removeEventListener('abort', onCallerAbort);
    // An extension in flight and the release go out together: both are bounded by timeoutMs. A release
    // that cannot reach Redis leaves the lease to run out by itself; the manager's `error` event tells.
    const release = lock.release().catch((err: unknown) => events.error(err, lock.resource));
    const [, released] = await Promise.all([keeper.stop(), release]);
    return released;
  };
  let result: T;
  try {
    result = await routine(keeper.signal, lock);
  } catch (err) {
    // The routine's outcome matters more than the release's.
    await finish();
    throw err;
  }
  keeper.checkDeadline();
  const released = await finish();
  const reason: unknown = keeper.signal.reason;
  if (reason instanceof LockLostError) throw reason;
  if (released === false) throw new LockLostError(lock.resource, [], 'the lease was gone when using() released it (it expired, was force-unlocked or taken)');
  return result;
}
