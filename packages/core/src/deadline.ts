// Deadlines for calls that must not wait on Redis forever: one shared timer per timeout length, not one per call.
import { MAX_TIMEOUT_MS } from './validate.js';

/** One call's deadline. `reject` is cleared once the call settled, which marks the entry to be skipped. */
interface Entry {
  readonly at: number;
  reject: ((err: Error) => void) | undefined;
  onTimeout: (() => Error) | undefined;
  next: Entry | undefined;
}

/**
 * The pending deadlines of one timeout length. Each is `performance.now()` at the call plus the same length,
 * so they come in non-decreasing order: a FIFO with one timer armed for its head replaces a timer per call.
 * Settled entries stay where they are (no O(n) removal) and are dropped when they reach the head.
 */
class Lane {
  private head: Entry | undefined;
  private tail: Entry | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly fire = (): void => this.expire();

  constructor(private readonly ms: number) {}

  push(entry: Entry): void {
    // Drop the settled calls at the head now, so a lane holds about as many entries as there are calls in
    // flight rather than every call of the last `ms`.
    let head = this.head;
    while (head !== undefined && head.reject === undefined) head = head.next;
    if (head === undefined) this.head = entry;
    else {
      this.head = head;
      this.tail!.next = entry;
    }
    this.tail = entry;
    // An armed timer is never later than the head's deadline; `expire` re-arms it for the next one.
    this.timer ??= setTimeout(this.fire, this.ms).unref();
  }

  /**
   * Unlinks every entry that is settled or due, re-arms for the first pending one (or retires the lane),
   * and only then rejects the due calls, so an `onTimeout` that starts another call finds a consistent lane.
   */
  private expire(): void {
    const now = performance.now();
    const first = this.head;
    let cut = first;
    while (cut !== undefined && (cut.reject === undefined || cut.at <= now)) cut = cut.next;
    this.head = cut;
    if (cut === undefined) {
      this.tail = undefined;
      this.timer = undefined;
      lanes.delete(this.ms);
    } else {
      // Node may fire a timer up to a loop iteration early by `performance.now()`; the check above then
      // finds the head not yet due and this re-arms for what is left.
      this.timer = setTimeout(this.fire, Math.max(1, Math.ceil(cut.at - now))).unref();
    }
    for (let e = first; e !== cut && e !== undefined; e = e.next) {
      const { reject, onTimeout } = e;
      if (reject === undefined) continue;
      e.reject = e.onTimeout = undefined;
      reject(timeoutError(onTimeout!));
    }
  }
}

const lanes = new Map<number, Lane>();

function timeoutError(onTimeout: () => Error): Error {
  try {
    return onTimeout();
  } catch (err) {
    // A throwing `onTimeout` must not stop the other deadlines of its lane; its error becomes the rejection.
    return err instanceof Error ? err : new Error(String(err));
  }
}

/**
 * Settles like `promise`, or rejects with `onTimeout()` once `timeoutMs` passed first. The work itself is
 * not cancelled: for a Redis call the outcome is then unknown. A late rejection of `promise` is absorbed,
 * never unhandled.
 *
 * Cheap on a hot path: calls with the same (whole-ms, rounded up) `timeoutMs` share one unref'd timer, so a
 * call arms and clears no timer of its own. A deadline never fires early; it fires at most about 2 ms late
 * (the rounding up, plus Node's millisecond timer resolution) plus whatever delays the event loop. Like
 * `setTimeout`, a `timeoutMs` below 1, above `MAX_TIMEOUT_MS` or not a number counts as 1 ms.
 */
export function withDeadline<T>(promise: Promise<T>, timeoutMs: number, onTimeout: () => Error): Promise<T> {
  const ms = timeoutMs >= 1 && timeoutMs <= MAX_TIMEOUT_MS ? Math.ceil(timeoutMs) : 1;
  return new Promise<T>((resolve, reject) => {
    const entry: Entry = { at: performance.now() + ms, reject, onTimeout, next: undefined };
    let lane = lanes.get(ms);
    if (lane === undefined) lanes.set(ms, (lane = new Lane(ms)));
    lane.push(entry);
    promise.then(
      (value) => {
        entry.reject = entry.onTimeout = undefined;
        resolve(value);
      },
      (err: Error) => {
        entry.reject = entry.onTimeout = undefined;
        reject(err);
      },
    );
  });
}

/**
 * Resolves once `promise` settles (either way) or `timeoutMs` passed, whichever comes first; never rejects.
 * For waits that help but must not hold a caller up, such as a subscription on a node that may be down.
 */
export function waitAtMost(promise: Promise<unknown>, timeoutMs: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, timeoutMs);
    const done = () => {
      clearTimeout(timer);
      resolve();
    };
    promise.then(done, done);
  });
}
