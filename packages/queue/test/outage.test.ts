import { RedisServer, waitFor } from '@cyredis/testing';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { JobQueue, RedisUnavailableError, Worker } from '../src/index.js';

describe('JobQueue against an unreachable or evicting server', () => {
  it('settles every call within timeoutMs (default 2000) with a typed outage while Redis is stopped', async () => {
    const server = await RedisServer.start();
    const redis = new Redis(server.port, server.host);
    redis.on('error', () => undefined);
    const queue = new JobQueue<number>(redis, 'down', { timeoutMs: 300 });
    expect(new JobQueue(redis, 'x').timeoutMs).toBe(2000);
    const errors: unknown[] = [];
    const worker = new Worker(queue, () => undefined, { blockMs: 100 });
    worker.on('error', (err) => errors.push(err));
    try {
      await queue.push(1);
      await server.stop();
      const calls: [string, () => Promise<unknown>][] = [
        ['push', () => queue.push(2)],
        ['pop', () => queue.pop(1)],
        ['stats', () => queue.stats()],
        ['deadJobs', () => queue.deadJobs()],
      ];
      for (const [name, call] of calls) {
        const started = Date.now();
        const err = await call().catch((e: unknown) => e);
        expect(err, name).toBeInstanceOf(RedisUnavailableError);
        expect(Date.now() - started, name).toBeLessThan(300 + 1000);
      }
      // The worker keeps trying and says so, once per distinct error, each an outage.
      await waitFor(() => (errors.length > 0 ? true : undefined));
      for (const err of errors) expect(err).toBeInstanceOf(RedisUnavailableError);
      expect(new Set(errors.map(String)).size).toBe(errors.length);
    } finally {
      await worker.close({ timeoutMs: 0 });
      redis.disconnect();
      await server.stop();
    }
  });

  it('warns once at first use when the server may evict keys', async () => {
    const server = await RedisServer.start({ args: ['--maxmemory-policy', 'allkeys-lru'] });
    const redis = new Redis(server.port, server.host);
    const seen: string[] = [];
    const listener = (w: Error & { code?: string }) => {
      if (w.code === 'CYREDIS_EVICTION') seen.push(w.message);
    };
    process.on('warning', listener);
    try {
      const queue = new JobQueue<number>(redis, 'evict');
      await queue.push(1);
      await queue.pop(1);
      await waitFor(() => (seen.length > 0 ? true : undefined), { timeoutMs: 5000 });
      expect(seen).toHaveLength(1);
      expect(seen[0]).toContain('@cyredis/queue');
      expect(seen[0]).toContain('record lost');
    } finally {
      process.off('warning', listener);
      await redis.quit();
      await server.stop();
    }
  });
});
