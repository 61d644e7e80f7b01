import { describe, expect, it } from 'vitest';
import { waitAtMost, withDeadline } from '../src/index.js';

const never = new Promise<never>(() => undefined);

describe('deadlines', () => {
  it('withDeadline settles like the promise, or rejects with onTimeout() once the deadline passes', async () => {
    await expect(withDeadline(Promise.resolve(7), 1_000, () => new Error('late'))).resolves.toBe(7);
    await expect(withDeadline(Promise.reject(new Error('boom')), 1_000, () => new Error('late'))).rejects.toThrow('boom');
    await expect(withDeadline(never, 10, () => new Error('late'))).rejects.toThrow('late');
  });

  it('waitAtMost resolves when the promise settles either way, or at the deadline, and never rejects', async () => {
    await expect(waitAtMost(Promise.resolve(1), 1_000)).resolves.toBeUndefined();
    await expect(waitAtMost(Promise.reject(new Error('boom')), 1_000)).resolves.toBeUndefined();
    await expect(waitAtMost(never, 10)).resolves.toBeUndefined();
  });
});
