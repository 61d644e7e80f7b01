import { describe, expect, it } from 'vitest';
import { CyRedisError, InvalidArgumentError, TickBatcher } from '../src/index.js';

/** A batcher that doubles numbers and records the batches it was asked to send. */
function doubler(maxBatch: number, fail?: (items: number[]) => Error | undefined) {
  const calls: number[][] = [];
  const batcher = new TickBatcher<number, number>((items) => {
    calls.push(items);
    const err = fail?.(items);
    return err ? Promise.reject(err) : Promise.resolve(items.map((i) => 2 * i));
  }, maxBatch);
  return { batcher, calls };
}

describe('TickBatcher', () => {
  it('sends the operations of a tick together at the end of the tick, in order', async () => {
    const { batcher, calls } = doubler(64);
    const pending = [1, 2, 3, 4].map((i) => batcher.add(i));
    expect(calls).toEqual([]);
    expect(await Promise.all(pending)).toEqual([2, 4, 6, 8]);
    expect(calls).toEqual([[1, 2, 3, 4]]);
    // A later tick starts over with a call of its own.
    expect(await batcher.add(5)).toBe(10);
    expect(calls.at(-1)).toEqual([5]);
  });

  it('sends posted operations with the added ones of their tick, in order, and drops their results and errors', async () => {
    const { batcher, calls } = doubler(3, (items) => (items.includes(6) ? new Error('boom') : undefined));
    const first = batcher.add(1);
    batcher.post(2);
    const third = batcher.add(3);
    expect(await Promise.all([first, third])).toEqual([2, 6]);
    expect(calls).toEqual([[1, 2, 3]]);
    // A posted operation counts toward maxBatch, and a failed call rejects only the added ones.
    batcher.post(4);
    batcher.post(5);
    const failed = batcher.add(6);
    await expect(failed).rejects.toThrow('boom');
    expect(calls.at(-1)).toEqual([4, 5, 6]);
  });

  it('sends a batch as soon as maxBatch operations wait', async () => {
    const { batcher, calls } = doubler(2);
    const pending = [1, 2, 3, 4, 5].map((i) => batcher.add(i));
    expect(calls).toEqual([
      [1, 2],
      [3, 4],
    ]);
    expect(await Promise.all(pending)).toEqual([2, 4, 6, 8, 10]);
    expect(calls).toEqual([[1, 2], [3, 4], [5]]);
  });

  it("rejects every operation of a failed call with the call's error, and only those", async () => {
    const boom = new Error('boom');
    const { batcher } = doubler(2, (items) => (items.includes(3) ? boom : undefined));
    const settled = await Promise.allSettled([1, 2, 3, 4].map((i) => batcher.add(i)));
    expect(settled).toEqual([
      { status: 'fulfilled', value: 2 },
      { status: 'fulfilled', value: 4 },
      { status: 'rejected', reason: boom },
      { status: 'rejected', reason: boom },
    ]);
  });

  it('turns a synchronous throw and a short reply into rejections', async () => {
    const thrower = new TickBatcher<number, number>(() => {
      throw new Error('sync');
    }, 8);
    await expect(thrower.add(1)).rejects.toThrow('sync');
    const short = new TickBatcher<number, number>(() => Promise.resolve([]), 8);
    await expect(short.add(1)).rejects.toBeInstanceOf(CyRedisError);
  });

  it('refuses a maxBatch below 1', () => {
    expect(() => new TickBatcher<number, number>(() => Promise.resolve([]), 0)).toThrow(InvalidArgumentError);
  });
});
