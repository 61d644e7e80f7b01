import { InvalidArgumentError } from '@cyredis/core';
import { randomPrefix } from '@cyredis/testing';
import { deleteByPrefix, suiteClient, topologies } from '@cyredis/testing/context';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { JobQueue } from '../src/index.js';

const TRACEPARENT = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';

// Issue 19: the trace context a job carries from its push to each of its runs.
describe.each(topologies)('traceContext on %s', (topology) => {
  const redis = suiteClient(topology);
  let prefix: string;
  let queue: JobQueue<{ n: number }>;

  beforeEach(() => {
    prefix = randomPrefix();
    queue = new JobQueue(redis, 'traced', { prefix });
  });
  afterEach(() => deleteByPrefix(redis, prefix));

  it('is handed to every run of the job, and only there: the data reads as pushed everywhere', async () => {
    const id = await queue.push({ n: 1 }, { traceContext: { traceparent: TRACEPARENT, tracestate: 'k=v' } });
    const plain = await queue.push({ n: 2 });
    const [job, other] = await queue.pop(2);
    expect(job).toMatchObject({ id, data: { n: 1 }, traceContext: { traceparent: TRACEPARENT, tracestate: 'k=v' } });
    expect(other!.id).toBe(plain);
    expect('traceContext' in other!).toBe(false);
    expect((await queue.getJob(id))?.data).toEqual({ n: 1 });
    expect(await queue.release(job!)).toBe(true);
    const [again] = await queue.pop(1);
    expect(again!.traceContext).toEqual({ traceparent: TRACEPARENT, tracestate: 'k=v' });
    expect(await queue.fail(again!, new Error('x'))).toBe('retry');
    const [bulk] = await queue.addBulk([{ data: { n: 3 }, traceContext: { traceparent: TRACEPARENT } }]);
    expect(bulk!.added).toBe(true);
  });

  it('refuses what is not a small object of string fields, writing nothing', async () => {
    const bad: unknown[] = [null, 'x', ['a'], { a: 1 }, Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`f${i}`, 'v'])), { big: 'x'.repeat(3000) }];
    for (const traceContext of bad) {
      await expect(queue.push({ n: 0 }, { traceContext } as never)).rejects.toBeInstanceOf(InvalidArgumentError);
    }
    expect((await queue.stats()).waiting).toBe(0);
  });
});
