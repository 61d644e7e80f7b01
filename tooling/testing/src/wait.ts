export interface WaitOptions {
  /** Give up after this long; default 10 000 ms. */
  timeoutMs?: number;
  /** Time between checks; default 20 ms. */
  intervalMs?: number;
  /** Said in the error when the deadline passes. */
  message?: string;
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Polls `check` until it returns a truthy value (which is returned) or the deadline passes. Tests wait for
 * conditions this way rather than sleeping a fixed time, so they hold on a loaded machine.
 */
export async function waitFor<T>(check: () => T | Promise<T>, options: WaitOptions = {}): Promise<NonNullable<T>> {
  const { timeoutMs = 10_000, intervalMs = 20 } = options;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      const reason = lastError instanceof Error ? ` (last error: ${lastError.message})` : '';
      throw new Error(`waitFor timed out after ${timeoutMs} ms: ${options.message ?? 'condition not met'}${reason}`);
    }
    await sleep(intervalMs);
  }
}
