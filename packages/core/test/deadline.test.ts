import { spawn } from 'node:child_process';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { waitAtMost, withDeadline } from '../src/index.js';

const never = new Promise<never>(() => undefined);

/** A promise settled from outside. */
function deferred<T>(): { promise: Promise<T>; resolve: (value: T) => void; reject: (err: Error) => void } {
  let resolve!: (value: T) => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Starts a call that never settles and records when (by `performance.now()`) and in which order it timed out. */
function expiring(timeoutMs: number, log: string[], label: string): Promise<number> {
  const start = performance.now();
  return withDeadline(never, timeoutMs, () => new Error(label)).catch((err: Error) => {
    log.push(err.message);
    return performance.now() - start;
  });
}

describe('deadlines', () => {
  it('withDeadline settles like the promise, or rejects with onTimeout() once the deadline passes', async () => {
    await expect(withDeadline(Promise.resolve(7), 1_000, () => new Error('late'))).resolves.toBe(7);
    await expect(withDeadline(Promise.reject(new Error('boom')), 1_000, () => new Error('late'))).rejects.toThrow('boom');
    await expect(withDeadline(never, 10, () => new Error('late'))).rejects.toThrow('late');
  });

  it('calls with one timeout length expire in the order they were made, shorter lengths first', async () => {
    const log: string[] = [];
    const calls = [expiring(40, log, 'long')];
    for (let i = 0; i < 20; i++) calls.push(expiring(15, log, `short${i}`));
    calls.push(expiring(1, log, 'shortest'));
    await Promise.all(calls);
    expect(log).toEqual(['shortest', ...Array.from({ length: 20 }, (_, i) => `short${i}`), 'long']);
  });

  it('never fires early, with whole, fractional, tiny and interleaved timeout lengths', async () => {
    const lengths = [1, 2.5, 5, 7.3, 10, 20, 33.3, 50];
    const calls: Promise<number>[] = [];
    const wanted: number[] = [];
    const log: string[] = [];
    for (let i = 0; i < 400; i++) {
      const ms = lengths[(i * 7) % lengths.length]!;
      wanted.push(ms);
      calls.push(expiring(ms, log, String(i)));
      if (i % 50 === 49) await new Promise((resolve) => setImmediate(resolve));
    }
    const elapsed = await Promise.all(calls);
    elapsed.forEach((ms, i) => expect(ms).toBeGreaterThanOrEqual(wanted[i]!));
    expect(log).toHaveLength(400);
  });

  it('a call that settled in time never calls onTimeout or rejects later, and its lane goes on expiring', async () => {
    let timeouts = 0;
    const onTimeout = () => {
      timeouts++;
      return new Error('late');
    };
    const ok = deferred<number>();
    const failed = deferred<number>();
    const resolved = withDeadline(ok.promise, 30, onTimeout);
    const rejected = withDeadline(failed.promise, 30, onTimeout);
    ok.resolve(1);
    failed.reject(new Error('boom'));
    await expect(resolved).resolves.toBe(1);
    await expect(rejected).rejects.toThrow('boom');
    // A later call of the same length expires only after the settled ones' deadlines passed.
    await expect(withDeadline(never, 30, () => new Error('after'))).rejects.toThrow('after');
    expect(timeouts).toBe(0);
  });

  it('a late rejection of the promise is absorbed, never unhandled', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      const slow = deferred<number>();
      await expect(withDeadline(slow.promise, 5, () => new Error('late'))).rejects.toThrow('late');
      slow.reject(new Error('too late'));
      // Two macrotask turns let any unhandled rejection be reported.
      await new Promise((resolve) => setImmediate(resolve));
      await new Promise((resolve) => setImmediate(resolve));
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('an onTimeout that throws or starts another call does not disturb the other deadlines', async () => {
    const log: string[] = [];
    const thrower = withDeadline(never, 10, () => {
      throw new Error('thrown');
    });
    let nested: Promise<number> | undefined;
    const starter = withDeadline(never, 10, () => {
      nested = expiring(10, log, 'nested');
      return new Error('starter');
    });
    const after = expiring(10, log, 'after');
    await expect(thrower).rejects.toThrow('thrown');
    await expect(starter).rejects.toThrow('starter');
    await after;
    await nested;
    expect(log).toEqual(['after', 'nested']);
  });

  it('counts a timeout below 1 ms or not a number as 1 ms, like setTimeout', async () => {
    for (const ms of [0, -5, Number.NaN, 0.2]) await expect(withDeadline(never, ms, () => new Error(`late ${ms}`))).rejects.toThrow(`late ${ms}`);
  });

  it('model: a call resolves with its value if it settled first, else rejects no earlier than its deadline', async () => {
    const call = fc.record({ timeoutMs: fc.constantFrom(3, 8, 8.5, 20), settleAfterMs: fc.option(fc.integer({ min: 0, max: 30 }), { nil: undefined }) });
    await fc.assert(
      fc.asyncProperty(fc.array(call, { minLength: 1, maxLength: 30 }), async (calls) => {
        const outcomes = await Promise.all(
          calls.map(async ({ timeoutMs, settleAfterMs }, i) => {
            const start = performance.now();
            const source = settleAfterMs === undefined ? never : new Promise<number>((resolve) => setTimeout(() => resolve(i), settleAfterMs));
            let timedOut = false;
            const onTimeout = () => {
              timedOut = true;
              return new Error('late');
            };
            try {
              return { value: await withDeadline(source, timeoutMs, onTimeout), timedOut };
            } catch {
              return { elapsed: performance.now() - start, timeoutMs, timedOut };
            }
          }),
        );
        outcomes.forEach((outcome, i) => {
          if ('value' in outcome) {
            expect(outcome.value).toBe(i);
            expect(outcome.timedOut).toBe(false);
          } else {
            expect(outcome.timedOut).toBe(true);
            expect(outcome.elapsed).toBeGreaterThanOrEqual(outcome.timeoutMs);
          }
        });
        // A call that never settles always times out.
        calls.forEach(({ settleAfterMs }, i) => {
          if (settleAfterMs === undefined) expect('value' in outcomes[i]!).toBe(false);
        });
      }),
      { numRuns: 25 },
    );
  });

  it('pending deadlines do not keep the process alive', async () => {
    const dist = new URL('../dist/index.js', import.meta.url).href;
    const code = `
      const { withDeadline } = await import(${JSON.stringify(dist)});
      const never = new Promise(() => {});
      withDeadline(never, 600000, () => new Error('late')).catch(() => {});
      withDeadline(never, 300000.5, () => new Error('late')).catch(() => {});
      console.log('armed');`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    // Far below the deadlines: a timer that held the process would keep it running for 300 s.
    const killer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    try {
      expect(await exited).toBe(0);
      expect(out.trim()).toBe('armed');
    } finally {
      clearTimeout(killer);
    }
  }, 90_000);

  it('waitAtMost resolves when the promise settles either way, or at the deadline, and never rejects', async () => {
    await expect(waitAtMost(Promise.resolve(1), 1_000)).resolves.toBeUndefined();
    await expect(waitAtMost(Promise.reject(new Error('boom')), 1_000)).resolves.toBeUndefined();
    await expect(waitAtMost(never, 10)).resolves.toBeUndefined();
  });
});
