/**
 * Settles like `promise`, or rejects with `onTimeout()` once `timeoutMs` passed first. The work itself is
 * not cancelled: for a Redis call the outcome is then unknown. Cheaper than `Promise.race` on a hot path,
 * and a late rejection of `promise` is absorbed, never unhandled.
 */
export function withDeadline<T>(promise: Promise<T>, timeoutMs: number, onTimeout: () => Error): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(onTimeout()), timeoutMs);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (err: Error) => {
        clearTimeout(timer);
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
