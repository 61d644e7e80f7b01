import { freePort, randomPrefix, waitFor } from '@cyredis/testing';
import { deleteByPrefix, suiteClient, topologies } from '@cyredis/testing/context';
import { Redis } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { InvalidArgumentError, JobQueue, RedisUnavailableError } from '../src/index.js';

// Discovery: every queue records its name in the prefix's registry when it calls Redis, for tools to list.
describe.each(topologies)('JobQueue.list on %s', (topology) => {
  const redis = suiteClient(topology);
  // Another connection stands for another process.
  const other = suiteClient(topology);
  let prefix: string;
  beforeEach(() => {
    prefix = randomPrefix();
  });
  afterEach(() => deleteByPrefix(redis, prefix));
  const names = async (p = prefix) => (await JobQueue.list(redis, { prefix: p })).map((e) => e.name).sort();

  it('lists the queues used under a prefix, from any process, most recently used first', async () => {
    await new JobQueue(redis, 'emails', { prefix }).push({ to: 'a' });
    await waitFor(async () => (await names()).length === 1, { timeoutMs: 10_000 });
    await new JobQueue(other, 'reports', { prefix }).stats();
    await waitFor(async () => (await names()).length === 2, { timeoutMs: 10_000 });
    expect(await names()).toEqual(['emails', 'reports']);
    const entries = await JobQueue.list(redis, { prefix });
    expect(entries[0]!.lastSeenMs).toBeGreaterThanOrEqual(entries[1]!.lastSeenMs);
    expect(entries[0]!.lastSeenMs).toBeGreaterThan(Date.now() - 60_000);
    expect(await JobQueue.list(redis, { prefix, limit: 1, offset: 1 })).toHaveLength(1);
    expect(await JobQueue.list(redis, { prefix, offset: 2 })).toEqual([]);
    // A queue never used is not listed; another prefix lists nothing of these.
    new JobQueue(redis, 'idle', { prefix });
    expect(await names()).toEqual(['emails', 'reports']);
    expect(await names(randomPrefix())).toEqual([]);
  });

  it('refuses bad options', async () => {
    await expect(JobQueue.list(redis, { limit: 0 })).rejects.toThrow(InvalidArgumentError);
    await expect(JobQueue.list(redis, { prefix: 'a{b' })).rejects.toThrow(InvalidArgumentError);
    await expect(JobQueue.list(redis, { prefx: 'p' } as never)).rejects.toThrow(/did you mean "prefix"/);
  });
});

describe('JobQueue.list when Redis does not answer', () => {
  it('rejects with RedisUnavailableError within the deadline', async () => {
    const dead = new Redis({ port: await freePort(), lazyConnect: true, maxRetriesPerRequest: null, retryStrategy: () => 50 });
    dead.on('error', () => undefined);
    await expect(JobQueue.list(dead, { timeoutMs: 200 })).rejects.toThrow(RedisUnavailableError);
    dead.disconnect();
  });
});
