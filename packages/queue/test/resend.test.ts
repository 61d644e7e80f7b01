import { FaultProxy, randomPrefix, waitFor } from '@cyredis/testing';
import { connect, deleteByPrefix, redisUrl } from '@cyredis/testing/context';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { JobQueue, Worker } from '../src/index.js';

describe('Worker when replies are lost and calls resent (single node)', () => {
  let direct: Redis;
  let proxy: FaultProxy;
  let viaProxy: Redis;
  let prefix: string;
  let producer: JobQueue<number>;

  beforeAll(() => {
    direct = connect('single') as Redis;
  });
  afterAll(async () => {
    await direct.quit();
  });
  beforeEach(async () => {
    const { hostname, port } = new URL(redisUrl());
    proxy = await FaultProxy.start({ host: hostname, port: Number(port) });
    viaProxy = new Redis(proxy.port, '127.0.0.1');
    viaProxy.on('error', () => undefined);
    prefix = randomPrefix();
    producer = new JobQueue<number>(direct, 'resend', { prefix });
  });
  afterEach(async () => {
    viaProxy.disconnect();
    await proxy.close();
    await deleteByPrefix(direct, prefix);
  });

  function startWorker(handler: (job: number) => void, options: { leaseMs: number }) {
    const completed = new Map<number, number>();
    const lost: number[] = [];
    const errors: unknown[] = [];
    const worker = new Worker(new JobQueue<number>(viaProxy, 'resend', { prefix }), (job) => handler(job.data), { concurrency: 1, ...options });
    worker.on('completed', (job) => completed.set(job.data, (completed.get(job.data) ?? 0) + 1));
    worker.on('lost', (job) => lost.push(job.data));
    worker.on('error', (err) => errors.push(err));
    return { worker, completed, lost, errors };
  }

  it('reports a completion whose ack ran twice once, and runs the jobs that ack leased', async () => {
    await producer.pushBulk([0, 1, 2, 3].map((data) => ({ data })));
    // The ack of job 0 (which also leases job 1) runs, but its reply is lost; then the connection resets
    // and ioredis sends the same call again.
    const { worker, completed, lost } = startWorker(
      (job) => {
        if (job === 0) proxy.dropReplies = true;
      },
      { leaseMs: 60_000 },
    );
    try {
      await waitFor(async () => (await producer.stats()).completed === 1, { timeoutMs: 10_000 });
      proxy.resetAll();
      proxy.heal();
      // With a 60 s lease, job 1 can only run now if the resent ack hands it out again.
      await waitFor(async () => (await producer.stats()).completed === 4, { timeoutMs: 20_000 });
      await waitFor(() => completed.size === 4, { timeoutMs: 10_000, message: `completed events: ${JSON.stringify([...completed])}` });
    } finally {
      await worker.close({ timeoutMs: 1000 });
    }
    expect([...completed.values()]).toEqual([1, 1, 1, 1]);
    expect(lost).toEqual([]);
    expect(await producer.stats()).toMatchObject({ completed: 4, waiting: 0, processing: 0, failed: 0, dead: 0 });
  });

  it('picks up a stranded lease at its expiry while idle in its blocking wait', async () => {
    await producer.push(7);
    // A fetch whose reply never arrived: the job is leased to nobody until the lease runs out.
    expect(await producer.pop(1, { leaseMs: 300 })).toHaveLength(1);
    const { worker, completed } = startWorker(() => undefined, { leaseMs: 2000 });
    try {
      await waitFor(() => completed.get(7) === 1, { timeoutMs: 10_000 });
    } finally {
      await worker.close({ timeoutMs: 1000 });
    }
    expect(await producer.stats()).toMatchObject({ completed: 1, processing: 0, waiting: 0 });
  });

  it('closes while its blocking connection waits to reconnect', async () => {
    const { worker, errors } = startWorker(() => undefined, { leaseMs: 2000 });
    // Idle: one connection for fetches, one blocked on the wake-up list.
    await waitFor(() => proxy.connectionCount === 2, { timeoutMs: 10_000 });
    proxy.refuseConnections = true;
    proxy.resetAll();
    // The worker reports its blocking connection's errors: the reset, then a refused reconnection.
    await waitFor(() => errors.length >= 2, { timeoutMs: 10_000 });
    let closed = false;
    void worker.close({ timeoutMs: 1000 }).then(() => (closed = true));
    await waitFor(() => closed, { timeoutMs: 10_000, message: 'worker.close() did not settle' });
  });
});
