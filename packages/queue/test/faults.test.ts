import { FaultProxy, randomPrefix, sleep, waitFor } from '@cyredis/testing';
import { connect, deleteByPrefix, redisUrl } from '@cyredis/testing/context';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobQueue, Worker } from '../src/index.js';

describe('Worker through connection resets (single node)', () => {
  let direct: Redis;
  let proxy: FaultProxy;
  let prefix: string;

  beforeAll(async () => {
    direct = connect('single') as Redis;
    const { hostname, port } = new URL(redisUrl());
    proxy = await FaultProxy.start({ host: hostname, port: Number(port) });
    prefix = randomPrefix();
  });
  afterAll(async () => {
    await proxy.close();
    await deleteByPrefix(direct, prefix);
    await direct.quit();
  });

  it('completes every job exactly once while its connections are reset (resent calls are harmless)', async () => {
    const jobs = 1500;
    const producer = new JobQueue<number>(direct, 'resets', { prefix });
    await producer.pushBulk(Array.from({ length: jobs }, (_, i) => ({ data: i, maxRetries: 50 })));
    const viaProxy = new Redis(proxy.port, '127.0.0.1');
    viaProxy.on('error', () => undefined);
    const runs = new Map<number, number>();
    let completed = 0;
    const worker = new Worker(
      new JobQueue<number>(viaProxy, 'resets', { prefix }),
      async (job) => {
        runs.set(job.data, (runs.get(job.data) ?? 0) + 1);
        await sleep(job.data % 3);
      },
      { concurrency: 16, leaseMs: 500 },
    );
    worker.on('completed', () => completed++);
    worker.on('error', () => undefined);
    try {
      for (let i = 0; i < 6; i++) {
        await waitFor(() => completed >= (i + 1) * 150, { timeoutMs: 30_000 });
        proxy.resetAll();
      }
      await waitFor(async () => (await producer.stats()).completed === jobs, { timeoutMs: 60_000 });
    } finally {
      await worker.close({ timeoutMs: 1000 });
      viaProxy.disconnect();
    }
    expect(await producer.stats()).toMatchObject({ completed: jobs, waiting: 0, processing: 0, failed: 0, dead: 0, delayed: 0 });
    // Every job ran, and the completion counter counted each once although some calls were resent.
    expect(runs.size).toBe(jobs);
  });
});
