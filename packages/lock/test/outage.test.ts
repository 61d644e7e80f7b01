import { randomPrefix, RedisServer, waitFor } from '@cyredis/testing';
import type { Redis } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CyRedisError, LockManager, QuorumUnreachableError, RedisTimeoutError, RedisUnavailableError, type Lock } from '../src/index.js';

// What a dead server costs a caller: every public call settles within timeoutMs plus this, on a loaded machine.
const SLACK_MS = 750;

/** Runs `call`, returns what it threw and how long it took; fails if it resolved. */
async function timed(call: () => Promise<unknown>): Promise<{ err: unknown; ms: number }> {
  const start = performance.now();
  const err = await call().then(
    (value) => new Error(`resolved with ${String(value)}`),
    (e: unknown) => e,
  );
  return { err, ms: performance.now() - start };
}

function expectOutage({ err, ms }: { err: unknown; ms: number }, timeoutMs: number, what: string): void {
  expect(err, what).toBeInstanceOf(RedisUnavailableError);
  // One node: its own error, never "fewer than 1 of 1 node(s)".
  expect(err, what).not.toBeInstanceOf(QuorumUnreachableError);
  expect((err as Error).message, what).not.toMatch(/quorum|fewer than/i);
  expect(ms, what).toBeLessThan(timeoutMs + SLACK_MS);
}

describe('a single node that stops answering', () => {
  let server: RedisServer;
  let redis: Redis;
  const prefix = randomPrefix();

  beforeEach(async () => {
    server = await RedisServer.start();
    redis = server.client();
    redis.on('error', () => undefined);
  });
  afterEach(async () => {
    server.resume();
    redis.disconnect();
    await server.stop();
  });

  it('paused (SIGSTOP): every call rejects with RedisTimeoutError within timeoutMs', async () => {
    const timeoutMs = 300;
    const locks = new LockManager(redis, { prefix, timeoutMs });
    try {
      const held = await locks.acquire('held', { ttlMs: 60_000 });
      server.pause();
      const calls: [string, () => Promise<unknown>][] = [
        ['acquire', () => locks.acquire('r')],
        ['acquire with waitMs', () => locks.acquire('held', { waitMs: 200 })],
        ['tryAcquire', () => locks.tryAcquire('r')],
        ['extend', () => held.extend()],
        ['release', () => held.release()],
        ['status', () => locks.status('r')],
        ['forceUnlock', () => locks.forceUnlock('r')],
        ['using', () => locks.using('r', () => 'never runs')],
      ];
      for (const [what, call] of calls) {
        const result = await timed(call);
        expect(result.err, what).toBeInstanceOf(RedisTimeoutError);
        expectOutage(result, what === 'acquire with waitMs' ? timeoutMs + 200 : timeoutMs, what);
      }
    } finally {
      await locks.close();
    }
  });

  it('has a default timeoutMs of 1000 ms', async () => {
    const locks = new LockManager(redis, { prefix });
    try {
      await (await locks.acquire('warm-up')).release();
      server.pause();
      const result = await timed(() => locks.status('r'));
      expect(result.err).toBeInstanceOf(RedisTimeoutError);
      expect(result.ms).toBeGreaterThanOrEqual(990);
      expectOutage(result, 1_000, 'status');
    } finally {
      await locks.close();
    }
  });

  it("paused inside using(): its final release gives up after timeoutMs and the routine's result stands", async () => {
    const timeoutMs = 300;
    const locks = new LockManager(redis, { prefix, timeoutMs });
    try {
      let returnedAt = 0;
      const result = await locks.using(
        'r',
        () => {
          server.pause();
          returnedAt = performance.now();
          return 42;
        },
        { ttlMs: 30_000 },
      );
      // The lease was valid when the routine returned; the release got no answer, so the lease runs out.
      expect(result).toBe(42);
      expect(performance.now() - returnedAt).toBeLessThan(timeoutMs + SLACK_MS);
    } finally {
      await locks.close();
    }
  });

  it('killed: every call rejects with RedisUnavailableError, and works again once it is back', async () => {
    const timeoutMs = 300;
    const locks = new LockManager(redis, { prefix, timeoutMs });
    let held: Lock | undefined;
    try {
      held = await locks.acquire('held', { ttlMs: 60_000 });
      await server.kill();
      for (const [what, call] of [
        ['acquire', () => locks.acquire('r')],
        ['extend', () => held!.extend()],
        ['release', () => held!.release()],
        ['status', () => locks.status('r')],
        ['forceUnlock', () => locks.forceUnlock('r')],
        ['using', () => locks.using('r', () => 'never runs')],
      ] as const) {
        const result = await timed(call);
        expect(result.err, what).toBeInstanceOf(CyRedisError);
        expectOutage(result, timeoutMs, what);
      }
      await server.restart();
      // Back empty (no persistence): the client reconnects and the lock works again.
      const lock = await waitFor(() => locks.tryAcquire('r').catch(() => null), { timeoutMs: 10_000 });
      expect(await lock.release()).toBe(true);
    } finally {
      await locks.close();
    }
  });
});
