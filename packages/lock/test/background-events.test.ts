import { randomPrefix, waitFor } from '@cyredis/testing';
import { connect, deleteByPrefix, suiteClient, topologies } from '@cyredis/testing/context';
import type { Cluster, Redis } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LockLostError, LockManager, RedisUnavailableError, type Lock } from '../src/index.js';

describe.each(topologies)('LockManager background events on %s', (topology) => {
  const redis = suiteClient(topology);
  let prefix: string;
  /** The manager under test, on a client of its own that a test cuts off to make its calls fail for real. */
  let client: Redis | Cluster;
  let locks: LockManager;
  /** Another manager, on the suite's client, that keeps working. */
  let other: LockManager;
  let errors: [unknown, string][];
  let lost: [Lock, LockLostError][];

  beforeEach(() => {
    prefix = randomPrefix();
    client = connect(topology);
    locks = new LockManager(client, { prefix, timeoutMs: 1_000 });
    other = new LockManager(redis, { prefix });
    errors = [];
    lost = [];
    locks.on('error', (error, resource) => errors.push([error, resource]));
    locks.on('lost', (lock, error) => lost.push([lock, error]));
  });
  afterEach(async () => {
    client.disconnect();
    await locks.close();
    await other.close();
    await deleteByPrefix(redis, prefix);
  });

  it('a using() lease that runs out while Redis does not answer is reported lost once, and its failed release as error', async () => {
    const outcome = await locks
      .using(
        'job',
        (signal) => {
          client.disconnect();
          return new Promise<unknown>((resolve) => signal.addEventListener('abort', () => resolve(signal.reason), { once: true }));
        },
        { ttlMs: 1_000 },
      )
      .catch((err: unknown) => err);
    expect(outcome).toBeInstanceOf(LockLostError);
    expect((outcome as Error).message).toMatch(/ran out on the local clock/);
    expect(lost).toHaveLength(1);
    expect(lost[0]![0].resource).toBe('job');
    expect(lost[0]![1]).toBe(outcome);
    expect(errors).toHaveLength(1);
    expect(errors[0]![0]).toBeInstanceOf(RedisUnavailableError);
    expect(errors[0]![1]).toBe('job');
  });

  it('without an error listener a failed release throws nothing: using() resolves with the routine result', async () => {
    locks.removeAllListeners('error');
    const result = await locks.using('job', () => {
      client.disconnect();
      return 'done';
    });
    expect(result).toBe('done');
    expect(errors).toEqual([]);
  });

  it('a failed release of what acquireMany took before it gave up is reported as error', async () => {
    await other.acquire('b', { ttlMs: 30_000 });
    const controller = new AbortController();
    const many = locks.acquireMany(['a', 'b'], { waitMs: 20_000, signal: controller.signal, owner: 'me' }).catch((err: unknown) => err);
    // Held by "me" for half a second: the first round's lock was given back at once, so this is the lock
    // taken again while "b" is waited for.
    await waitFor(async () => {
      const status = await other.status('a');
      return status.locked && status.owner === 'me' && status.ttlMs <= 29_500;
    });
    client.disconnect();
    controller.abort(new Error('gave up'));
    expect(await many).toMatchObject({ message: 'gave up' });
    await waitFor(() => errors.length > 0);
    expect(errors.map(([, resource]) => resource)).toEqual(['a']);
  });

  it('failed give-backs of a semaphore and a fair lock are reported as error with their names', async () => {
    const semaphore = locks.semaphore('pool', { permits: 2 });
    const fair = locks.fair('door');
    client.disconnect();
    await expect(semaphore.acquire()).rejects.toBeInstanceOf(RedisUnavailableError);
    await expect(fair.acquire()).rejects.toBeInstanceOf(RedisUnavailableError);
    await waitFor(() => errors.length >= 2);
    expect(errors.map(([, resource]) => resource).sort()).toEqual(['door', 'pool']);
    expect(errors.every(([error]) => error instanceof RedisUnavailableError)).toBe(true);
  });
});
