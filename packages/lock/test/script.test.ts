import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { randomPrefix, sleep, waitFor } from '@cyredis/testing';
import { connect, deleteByPrefix, topologies } from '@cyredis/testing/context';
import { Cluster, type Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';

const SOURCE = readFileSync(new URL('../lua/distributed_lock.lua', import.meta.url), 'utf8');
const SHA = createHash('sha1').update(SOURCE).digest('hex');

type Reply = [number, string, number, number];

describe.each(topologies)('distributed_lock.lua called raw on %s', (topology) => {
  let redis: Redis | Cluster;
  let prefix: string;
  // A raw user's key, as in the seed: no hash tag.
  let key: string;
  const call = (...args: (string | number)[]) => redis.evalsha(SHA, 1, key, ...args) as Promise<Reply>;

  beforeAll(async () => {
    redis = connect(topology);
    await redis.ping();
    const nodes = redis instanceof Cluster ? redis.nodes('master') : [redis];
    for (const node of nodes) expect(await node.script('LOAD', SOURCE)).toBe(SHA);
  });
  afterAll(async () => {
    await redis.quit();
  });
  beforeEach(() => {
    prefix = randomPrefix();
    key = `${prefix}lock:key`;
  });
  afterEach(async () => {
    await deleteByPrefix(redis, prefix);
  });

  it('acquires, refuses another owner, extends, reports status and releases with the seed call shapes', async () => {
    expect(await call('a', 30_000)).toEqual([1, 'a', 30_000, 1]);
    const refused = await call('b', 30_000);
    expect(refused.slice(0, 2)).toEqual([0, 'a']);
    expect(refused[2]).toBeGreaterThan(29_000);
    expect(refused[3]).toBe(1);
    expect(await call('a', 60_000, 'extend')).toEqual([1, 'a', 60_000, 1]);
    expect((await call('b', 60_000, 'extend')).slice(0, 2)).toEqual([0, 'a']);
    const status = await call('', 0, 'status');
    expect(status.slice(0, 2)).toEqual([1, 'a']);
    expect(status[2]).toBeGreaterThan(59_000);
    expect((await call('b', 0, 'release')).slice(0, 2)).toEqual([0, 'a']);
    expect(await call('a', 0, 'release')).toEqual([1, 'a', 0, 1]);
    expect(await call('', 0, 'status')).toEqual([0, '', 0, 1]);
  });

  it('is idempotent: a resent acquire keeps its token, a second release and force unlock change nothing', async () => {
    expect(await call('a', 1_000)).toEqual([1, 'a', 1_000, 1]);
    expect(await call('a', 5_000)).toEqual([1, 'a', 5_000, 1]);
    expect(await call('a', 0, 'release')).toEqual([1, 'a', 0, 1]);
    expect(await call('a', 0, 'release')).toEqual([1, 'a', 0, 1]);
    expect(await call('a', 1_000)).toEqual([1, 'a', 1_000, 2]);
    expect(await call('', 0, '', 'force')).toEqual([1, 'a', 0, 2]);
    expect(await call('', 0, '', 'force')).toEqual([0, '', 0, 2]);
    // After a force unlock the old owner's release is a refusal, not "already released".
    expect(await call('a', 0, 'release')).toEqual([0, '', 0, 2]);
  });

  it('keeps the fencing counter across expiry and force unlock; extend never re-creates an expired lock', async () => {
    expect((await call('a', 20))[3]).toBe(1);
    await waitFor(async () => (await call('', 0, 'status'))[0] === 0);
    expect(await call('a', 1_000, 'extend')).toEqual([0, '', 0, 1]);
    expect(await call('a', 0, 'release')).toEqual([0, '', 0, 1]);
    expect(await call('b', 1_000)).toEqual([1, 'b', 1_000, 2]);
    await call('', 0, '', 'force');
    expect(await call('c', 1_000)).toEqual([1, 'c', 1_000, 3]);
    expect(await redis.exists(`${key}:fence`)).toBe(0);
  });

  it('raises a held token with fence, for the holder only', async () => {
    await call('a', 1_000);
    expect((await call('a', 0, 'fence', 41))[3]).toBe(41);
    expect((await call('a', 0, 'fence', 7))[3]).toBe(41);
    expect((await call('b', 0, 'fence', 99))[0]).toBe(0);
    await call('a', 0, 'release');
    expect((await call('b', 1_000))[3]).toBe(42);
  });

  it('publishes on channel KEYS[1] when a live lease ends after someone waited', async () => {
    const subscriber = (redis as Redis).duplicate();
    const messages: string[] = [];
    subscriber.on('message', (channel: string, message: string) => {
      if (channel === key) messages.push(message);
    });
    try {
      await subscriber.subscribe(key);
      // Nobody waited: no message.
      await call('a', 1_000);
      await call('a', 0, 'release');
      expect((await call('b', 1_000, 'wait'))[0]).toBe(1);
      expect((await call('c', 1_000, 'wait')).slice(0, 2)).toEqual([0, 'b']);
      await call('b', 0, 'release');
      await call('b', 0, 'release');
      await call('c', 1_000);
      await call('', 0, '', 'force');
      await waitFor(() => messages.length === 2);
      await sleep(50);
      expect(messages).toEqual(['2', '3']);
    } finally {
      subscriber.disconnect();
    }
  });

  it('runs a batch of operations in order, one reply per key', async () => {
    // One hash tag, so the batch stays in one slot on the cluster too.
    const k = (name: string) => `${prefix}{batch}:${name}`;
    const batch = (keys: string[], ...args: (string | number)[]) => redis.evalsha(SHA, keys.length, ...keys, ...args) as Promise<Reply[]>;
    expect(await batch([k('a'), k('b'), k('a')], 'x', 1_000, 'acquire', 'y', 1_000, 'acquire', 'z', 1_000, 'acquire')).toEqual([
      [1, 'x', 1_000, 1],
      [1, 'y', 1_000, 1],
      [0, 'x', 1_000, 1],
    ]);
    expect(await batch([k('a'), k('b')], 'x', 0, 'release', '', 0, 'force')).toEqual([
      [1, 'x', 0, 1],
      [1, 'y', 0, 1],
    ]);
    // Compact codes and full modes mix: each op replies in the shape its mode asks for.
    expect(await batch([k('a'), k('b'), k('b')], 'x', 1_000, 'a', 'y', 1_000, 'acquire', 'x', 0, 'r')).toEqual([2, [1, 'y', 1_000, 2], [0, 'y', 1_000, 2]]);
    await expect(batch([k('a'), k('b')], 'x', 0, 'release')).rejects.toThrow(/^ERR/);
    await expect(batch([k('c'), k('d')], 'x', 1_000, 'acquire', 'y', 0, 'acquire')).rejects.toThrow(/^ERR/);
    await expect(batch([k('c'), k('d')], 'x', 1_000, 'acquire', 'y', 0, 'fence')).rejects.toThrow(/^ERR/);
    expect(await redis.exists(k('c'))).toBe(0);
  });

  it('answers the compact codes with the token alone on success, the four values on refusal', async () => {
    expect(await call('a', 1_000, 'a')).toBe(1);
    expect(await call('a', 2_000, 'e')).toBe(1);
    const refused = await call('b', 1_000, 'w');
    expect(refused.slice(0, 2)).toEqual([0, 'a']);
    expect(refused[2]).toBeGreaterThan(1_000);
    expect(refused[3]).toBe(1);
    const notOwner = await call('b', 1_000, 'e');
    expect([notOwner[0], notOwner[1], notOwner[3]]).toEqual([0, 'a', 1]);
    expect(await call('a', 0, 'r')).toBe(1);
    expect(await call('a', 0, 'r')).toBe(1);
    expect(await call('a', 1_000, 'e')).toEqual([0, '', 0, 1]);
    expect(await call('b', 1_000, 'a')).toBe(2);
    // The wait code asked for a release message, like mode wait.
    expect(await redis.hget(key, 'w')).toBe('1');
    await expect(call('b', 0, 'a')).rejects.toThrow(/^ERR/);
    await expect(call('', 1_000, 'r')).rejects.toThrow(/^ERR/);
  });

  it('answers bad input with ERR and writes nothing', async () => {
    const bad: (string | number)[][] = [
      ['a', 0],
      ['a', -5],
      ['a', 1.5],
      ['a', 'abc'],
      ['a', 2 ** 41],
      ['', 1_000],
      ['', 1_000, 'extend'],
      ['', 0, 'release'],
      ['a', 0, 'bogus'],
      ['a', 1_000, '', 'nope'],
      ['a', 0, 'fence', -1],
      ['a', 0, 'fence', 'x'],
      ['a'],
    ];
    for (const args of bad) {
      await expect(call(...args), JSON.stringify(args)).rejects.toThrow(/^ERR/);
    }
    expect(await redis.exists(key)).toBe(0);
  });
});
