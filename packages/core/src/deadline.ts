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
