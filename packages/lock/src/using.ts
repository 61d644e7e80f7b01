// `LockManager.using`: runs a routine while a held lease is extended in the background, then releases it.
import { LockLostError } from './errors.js';
import type { Lock } from './lock.js';

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

  constructor(private readonly lock: Lock) {
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
    if (this.lock.remainingMs === 0) this.abort(this.ranOut());
  }

  /** Stops extending; resolves once an extension in flight settled. */
  stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.renewTimer);
    clearTimeout(this.deadlineTimer);
    return this.renewing;
  }

  private ranOut(): LockLostError {
    return new LockLostError(this.lock.resource, [], 'its lease ran out on the local clock before an extension was confirmed');
  }

  private armDeadline(): void {
    clearTimeout(this.deadlineTimer);
    this.deadlineTimer = setTimeout(() => this.abort(this.ranOut()), this.lock.remainingMs);
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
 * resolves with its result. The lock is released at the end.
 */
export async function runHoldingLock<T, L extends Lock>(
  lock: L,
  routine: (signal: AbortSignal, lock: L) => Promise<T> | T,
  callerSignal: AbortSignal | undefined,
): Promise<T> {
  const keeper = new LeaseKeeper(lock);
  const onCallerAbort = () => keeper.abort(callerSignal?.reason);
  callerSignal?.addEventListener('abort', onCallerAbort, { once: true });
  const finish = async () => {
    callerSignal?.removeEventListener('abort', onCallerAbort);
    // An extension in flight and the release go out together: both are bounded by timeoutMs. A release
    // that cannot reach Redis leaves the lease to run out by itself.
    const [, released] = await Promise.all([keeper.stop(), lock.release().catch(() => undefined)]);
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
