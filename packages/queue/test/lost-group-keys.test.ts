import { randomPrefix, waitFor } from '@cyredis/testing';
import { deleteByPrefix, suiteClient, topologies } from '@cyredis/testing/context';
import type { Redis } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { JobQueue } from '../src/index.js';
import { masters } from './helpers.js';

interface Item {
  n: number;
}

// Group keys taken away (a DEL stands for an allkeys-* eviction, see RECOVERY in the script): every job
// still runs exactly once, and no group stops being served.
describe.each(topologies)('lost group keys on %s', (topology) => {
  const redis = suiteClient(topology);
  let prefix: string;
  let queue: JobQueue<Item>;
  let key: (suffix: string) => string;

  beforeEach(() => {
    prefix = randomPrefix();
    queue = new JobQueue<Item>(redis, 'g', { prefix });
    key = (suffix) => `${queue.keys[0]}${suffix}`;
  });
  afterEach(() => deleteByPrefix(redis, prefix));

  /** Pushes `n` jobs into each group: their ids, per group in push order. */
  async function pushGroups(groups: readonly string[], n: number): Promise<Map<string, string[]>> {
    const out = new Map<string, string[]>();
    for (const group of groups) {
      out.set(group, await queue.pushBulk(Array.from({ length: n }, (_, i) => ({ data: { n: i }, group }))));
    }
    return out;
  }

  /**
   * Pops and completes until every id in `want` completed (a recovery may take a pop that returns none):
   * the ids in completion order, repeats included, so a caller sees a job run twice.
   */
  async function completeAll(want: readonly string[], during?: (done: string[]) => Promise<void>): Promise<string[]> {
    const done: string[] = [];
    await waitFor(
      async () => {
        for (const job of await queue.pop(100, { leaseMs: 30_000 })) {
          if (await queue.complete(job)) done.push(job.id);
        }
        await during?.(done);
        return want.every((id) => done.includes(id)) ? true : undefined;
      },
      { timeoutMs: 30_000, message: `completed ${done.length} of ${want.length}` },
    );
    return done;
  }

  async function expectEmpty(): Promise<void> {
    expect(await queue.stats()).toMatchObject({ waiting: 0, delayed: 0, processing: 0, failed: 0, dead: 0 });
    expect(await queue.pop(10)).toEqual([]);
    // Empty groups leave nothing behind but what they are configured with.
    expect(await (redis as Redis).zcard(key(':gwait'))).toBe(0);
    expect(await (redis as Redis).zcard(key(':gready'))).toBe(0);
  }

  it('a deleted group list: its jobs go back to their group and each runs once; the other groups are served meanwhile', async () => {
    const ids = await pushGroups(['a', 'b'], 5);
    await redis.del(key(':g:a'));
    const done = await completeAll([...ids.values()].flat());
    expect(done).toHaveLength(10);
    // Group b's jobs ran in their order; a's came back after the audit found them in no place.
    expect(done.filter((id) => ids.get('b')!.includes(id))).toEqual(ids.get('b'));
    await expectEmpty();
    expect(await queue.stats()).toMatchObject({ completed: 10 });
  });

  it('a deleted `groups` hash (job groups, leased counters, options): nothing lost, no group wedged, later pushes run', async () => {
    await queue.setGroupOptions('a', { concurrency: 2 });
    const ids = await pushGroups(['a', 'b'], 6);
    const leased = await queue.pop(10);
    expect(leased.map((j) => j.id).sort()).toEqual([ids.get('a')![0]!, ids.get('a')![1]!, ids.get('b')![0]!].sort());
    await redis.del(key(':groups'));
    for (const job of leased) expect(await queue.complete(job)).toBe(true);
    const rest = [...ids.values()].flat().filter((id) => !leased.some((j) => j.id === id));
    const done = await completeAll(rest);
    expect(done.sort()).toEqual(rest.sort());
    await expectEmpty();
    // Both groups still take work (their lost options are back to the defaults).
    const later = await pushGroups(['a', 'b'], 2);
    expect((await completeAll([...later.values()].flat())).sort()).toEqual([...later.values()].flat().sort());
    await expectEmpty();
  });

  it('a deleted leased counter: the count never goes below 0, so the group keeps its concurrency', async () => {
    const ids = await pushGroups(['a'], 3);
    const [first] = await queue.pop(10);
    expect(first!.id).toBe(ids.get('a')![0]);
    await redis.hdel(key(':groups'), 's:a');
    expect(await queue.complete(first!)).toBe(true);
    // Concurrency 1: one job at a time, in order (a counter at -1 would let two go at once).
    const [second] = await queue.pop(10);
    expect(second!.id).toBe(ids.get('a')![1]);
    expect(await queue.pop(10)).toEqual([]);
    expect(await queue.complete(second!)).toBe(true);
    expect((await queue.pop(10)).map((j) => j.id)).toEqual([ids.get('a')![2]]);
  });

  it('deleted `gready` and `gwait`: the waiting groups are found again and served', async () => {
    const ids = await pushGroups(['a', 'b', 'c'], 3);
    await redis.del(key(':gready'), key(':gwait'));
    // Nothing names the groups as ready or waiting: the pop that finds no job audits the records (in no set
    // while `gwait` is empty), which finds the lists and indexes them again.
    const done = await completeAll([...ids.values()].flat());
    expect(done.sort()).toEqual([...ids.values()].flat().sort());
    await expectEmpty();
  });

  it('a deleted `gready`: the pop that finds no group ready re-places the waiting groups at once', async () => {
    const ids = await pushGroups(['a', 'b', 'c'], 2);
    await redis.del(key(':gready'));
    const first = await queue.pop(10);
    expect(first.map((j) => j.id).sort()).toEqual([ids.get('a')![0]!, ids.get('b')![0]!, ids.get('c')![0]!].sort());
  });

  it('a deleted `glimited`: a group held by its rate limit is served again once no group is ready', async () => {
    await queue.setGroupOptions('r', { concurrency: 5, rateLimit: { limit: 1, windowMs: 300 } });
    const ids = await pushGroups(['r', 'o'], 3);
    const [first] = await queue.pop(1);
    expect(first!.id).toBe(ids.get('r')![0]);
    expect(await queue.complete(first!)).toBe(true);
    // r waits for its next slot in `glimited`, which goes; o keeps the queue busy meanwhile.
    await redis.del(key(':glimited'));
    const done = await completeAll([...ids.get('r')!.slice(1), ...ids.get('o')!]);
    expect(done.filter((id) => ids.get('r')!.includes(id))).toEqual(ids.get('r')!.slice(1));
    await expectEmpty();
  });

  it('obliterate deletes the lists of groups no index names any more, in bounded steps', async () => {
    await queue.pushBulk(Array.from({ length: 1500 }, (_, n) => ({ data: { n }, group: `g${n}` })));
    await queue.push({ n: -1 }, { group: 'lost' });
    const [leased] = await queue.pop(1);
    expect(leased).toBeDefined();
    await redis.del(key(':gwait'), key(':gready'), key(':glimited'));
    expect(await queue.obliterate({ force: true })).toBe(true);
    // The registry of queue names is no key of the queue: obliterate leaves it (see the README's registry section).
    const registry = `${prefix}:registry:`;
    for (const node of masters(redis)) expect((await node.keys(`${prefix}*`)).filter((k) => !k.startsWith(registry))).toEqual([]);
  });
});
