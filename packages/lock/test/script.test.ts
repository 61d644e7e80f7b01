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
  const serverMicros = async () => {
    const [s, us] = (await redis.call('TIME')) as [string, string];
    return Number(s) * 1_000_000 + Number(us);
  };
  const serverMillis = async () => Math.floor((await serverMicros()) / 1_000);

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
    const before = await serverMicros();
    const [ok, owner, ttl, token] = await call('a', 30_000);
    expect([ok, owner, ttl]).toEqual([1, 'a', 30_000]);
    // A new token is the server's clock in µs (or the last token + 1 when that is higher).
    expect(token).toBeGreaterThanOrEqual(before);
    expect(token).toBeLessThanOrEqual(await serverMicros());
    const refused = await call('b', 30_000);
    expect(refused.slice(0, 2)).toEqual([0, 'a']);
    expect(refused[2]).toBeGreaterThan(29_000);
    expect(refused[3]).toBe(token);
    expect(await call('a', 60_000, 'extend')).toEqual([1, 'a', 60_000, token]);
    expect((await call('b', 60_000, 'extend')).slice(0, 2)).toEqual([0, 'a']);
    const status = await call('', 0, 'status');
    expect(status.slice(0, 2)).toEqual([1, 'a']);
    expect(status[2]).toBeGreaterThan(59_000);
    expect((await call('b', 0, 'release')).slice(0, 2)).toEqual([0, 'a']);
    expect(await call('a', 0, 'release')).toEqual([1, 'a', 0, token]);
    expect(await call('', 0, 'status')).toEqual([0, '', 0, token]);
  });

  it('is idempotent: a resent acquire keeps its token, a second release and force unlock change nothing', async () => {
    const first = (await call('a', 1_000))[3];
    expect(await call('a', 5_000)).toEqual([1, 'a', 5_000, first]);
    expect(await call('a', 0, 'release')).toEqual([1, 'a', 0, first]);
    expect(await call('a', 0, 'release')).toEqual([1, 'a', 0, first]);
    const second = (await call('a', 1_000))[3];
    expect(second).toBeGreaterThan(first);
    expect(await call('', 0, '', 'force')).toEqual([1, 'a', 0, second]);
    expect(await call('', 0, '', 'force')).toEqual([0, '', 0, second]);
    // After a force unlock the old owner's release is a refusal, not "already released".
    expect(await call('a', 0, 'release')).toEqual([0, '', 0, second]);
  });

  it('keeps tokens increasing across expiry and force unlock; extend never re-creates an expired lock', async () => {
    const first = (await call('a', 20))[3];
    await waitFor(async () => (await call('', 0, 'status'))[0] === 0);
    expect(await call('a', 1_000, 'extend')).toEqual([0, '', 0, first]);
    expect(await call('a', 0, 'release')).toEqual([0, '', 0, first]);
    const second = (await call('b', 1_000))[3];
    expect(second).toBeGreaterThan(first);
    await call('', 0, '', 'force');
    const third = (await call('c', 1_000))[3];
    expect(third).toBeGreaterThan(second);
    expect(await redis.exists(`${key}:fence`)).toBe(0);
  });

  it('issues a token above the last one even when the key is gone, and runs ahead of a clock that is behind', async () => {
    const first = (await call('a', 300_000))[3];
    // What an eviction does to a lock in the middle of its lease.
    await redis.del(key);
    const second = (await call('b', 300_000))[3];
    expect(second).toBeGreaterThan(first);
    // A token ahead of the server clock (a clock stepped back, a Redlock fence): the next is last + 1.
    const ahead = (await serverMicros()) + 3_600_000_000;
    await redis.hset(key, { o: 'b', e: 0, f: ahead });
    expect((await call('c', 1_000))[3]).toBe(ahead + 1);
  });

  it('keeps the key 25 s or more past its lease and at most 60 s past its end, moving the expiry rarely', async () => {
    const expiresAt = () => redis.call('PEXPIRETIME', key) as Promise<number>;
    const lease = 5_000;
    const before = await serverMillis();
    await call('a', lease);
    // A short lease: the key lives until a minute from now, which is more than 25 s past the lease end.
    const first = await expiresAt();
    expect(first).toBeGreaterThanOrEqual(before + lease + 25_000);
    expect(first).toBeLessThanOrEqual((await serverMillis()) + 60_000);
    // Released, taken again and extended inside that minute: the expiry is not rewritten (a cheaper write).
    await call('a', 0, 'release');
    await call('b', lease);
    await call('b', 10_000, 'extend');
    expect(await expiresAt()).toBe(first);
    await call('b', 0, 'release');
    // A lease that ends past the expiry less 25 s moves it.
    await call('a', 600_000);
    expect(await expiresAt()).toBeGreaterThanOrEqual((await serverMillis()) + 600_000 + 25_000 - 1_000);
    // Released early: gone within a minute of the release.
    await call('a', 0, 'release');
    const released = await serverMillis();
    expect(await expiresAt()).toBeLessThanOrEqual(released + 60_000);
    expect(await expiresAt()).toBeGreaterThan(released + 60_000 - 1_000);
    // Extending moves the expiry with the lease.
    await call('a', 1_000);
    await call('a', 120_000, 'extend');
    expect(await expiresAt()).toBeGreaterThanOrEqual((await serverMillis()) + 120_000 + 25_000 - 1_000);
    // Waiting, fencing and force unlock never make the key permanent.
    await call('', 0, '', 'force');
    expect(await redis.pttl(key)).toBeLessThanOrEqual(60_000);
    await call('b', 1_000);
    await call('c', 1_000, 'wait');
    await call('b', 0, 'fence', 1);
    await call('', 0, '', 'force');
    expect(await redis.pttl(key)).toBeGreaterThan(0);
    expect(await redis.pttl(key)).toBeLessThanOrEqual(60_000);
  });

  it('raises a held token with fence, for the holder only', async () => {
    const token = (await call('a', 1_000))[3];
    expect((await call('a', 0, 'fence', token + 41))[3]).toBe(token + 41);
    expect((await call('a', 0, 'fence', 7))[3]).toBe(token + 41);
    expect((await call('b', 0, 'fence', token + 99))[0]).toBe(0);
    await call('a', 0, 'release');
    expect((await call('b', 1_000))[3]).toBeGreaterThan(token + 41);
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
      const b = (await call('b', 1_000, 'wait'))[3];
      expect((await call('c', 1_000, 'wait')).slice(0, 2)).toEqual([0, 'b']);
      // The mark (a negative x) survives moves of the expiry: out by a long extend, back by the release.
      await call('b', 100_000, 'extend');
      expect(Number(await redis.hget(key, 'x'))).toBeLessThan(0);
      expect(await redis.pttl(key)).toBeGreaterThan(100_000);
      await call('b', 0, 'release');
      await call('b', 0, 'release');
      expect(Number(await redis.hget(key, 'x'))).toBeLessThan(0);
      expect(await redis.pttl(key)).toBeLessThanOrEqual(60_000);
      const c = (await call('c', 1_000))[3];
      await call('', 0, '', 'force');
      // A held hash with no field x (written by hand, or an earlier layout): a refused wait marks it
      // and gives the key an expiry past the lease.
      await redis.del(key);
      await redis.hset(key, 'o', 'd', 'e', String(Date.now() + 600_000), 'f', '7');
      expect((await call('e', 1_000, 'wait')).slice(0, 2)).toEqual([0, 'd']);
      expect(Number(await redis.hget(key, 'x'))).toBeLessThan(0);
      expect(await redis.pttl(key)).toBeGreaterThan(600_000);
      await waitFor(() => messages.length === 2);
      await sleep(50);
      expect(messages).toEqual([String(b), String(c)]);
    } finally {
      subscriber.disconnect();
    }
  });

  it('runs a batch of operations in order, one reply per key', async () => {
    // One hash tag, so the batch stays in one slot on the cluster too.
    const k = (name: string) => `${prefix}{batch}:${name}`;
    const batch = (keys: string[], ...args: (string | number)[]) => redis.evalsha(SHA, keys.length, ...keys, ...args) as Promise<Reply[]>;
    const first = await batch([k('a'), k('b'), k('a')], 'x', 1_000, 'acquire', 'y', 1_000, 'acquire', 'z', 1_000, 'acquire');
    // One clock reading per call: both new locks get its µs.
    const t = first[0]![3];
    expect(first).toEqual([
      [1, 'x', 1_000, t],
      [1, 'y', 1_000, t],
      [0, 'x', 1_000, t],
    ]);
    expect(await batch([k('a'), k('b')], 'x', 0, 'release', '', 0, 'force')).toEqual([
      [1, 'x', 0, t],
      [1, 'y', 0, t],
    ]);
    // Compact codes and full modes mix: each op replies in the shape its mode asks for.
    const [a, b, refused] = await batch([k('a'), k('b'), k('b')], 'x', 1_000, 'a', 'y', 1_000, 'acquire', 'x', 0, 'r');
    expect(a).toBeGreaterThan(t);
    expect(b).toEqual([1, 'y', 1_000, a]);
    expect(refused).toEqual([0, 'y', 1_000, a]);
    // Released and taken again within one call, at one clock reading: the second token is the first + 1.
    const tokens = await batch([k('h'), k('h'), k('h')], 'p', 1_000, 'a', 'p', 0, 'r', 'q', 1_000, 'a');
    expect(tokens[2]).toBe((tokens[0] as unknown as number) + 1);
    await expect(batch([k('a'), k('b')], 'x', 0, 'release')).rejects.toThrow(/^ERR/);
    await expect(batch([k('c'), k('d')], 'x', 1_000, 'acquire', 'y', 0, 'acquire')).rejects.toThrow(/^ERR/);
    await expect(batch([k('c'), k('d')], 'x', 1_000, 'acquire', 'y', 0, 'fence')).rejects.toThrow(/^ERR/);
    // A key that does not hold a lock fails the whole batch before the first write.
    await redis.hset(k('e'), 'f', 'not a token');
    await expect(batch([k('c'), k('e')], 'x', 1_000, 'acquire', 'y', 1_000, 'acquire')).rejects.toThrow(/^ERR .* does not hold a lock/);
    await redis.set(k('f'), 'x');
    await expect(batch([k('c'), k('f')], 'x', 1_000, 'acquire', 'y', 1_000, 'acquire')).rejects.toThrow(/WRONGTYPE/);
    expect(await redis.exists(k('c'))).toBe(0);
  });

  it('answers the compact codes with the token alone on success, the four values on refusal', async () => {
    const token = (await call('a', 1_000, 'a')) as unknown as number;
    expect(typeof token).toBe('number');
    expect(await call('a', 2_000, 'e')).toBe(token);
    const refused = await call('b', 1_000, 'w');
    expect(refused.slice(0, 2)).toEqual([0, 'a']);
    expect(refused[2]).toBeGreaterThan(1_000);
    expect(refused[3]).toBe(token);
    const notOwner = await call('b', 1_000, 'e');
    expect([notOwner[0], notOwner[1], notOwner[3]]).toEqual([0, 'a', token]);
    expect(await call('a', 0, 'r')).toBe(token);
    expect(await call('a', 0, 'r')).toBe(token);
    expect(await call('a', 1_000, 'e')).toEqual([0, '', 0, token]);
    expect(await call('b', 1_000, 'a')).toBeGreaterThan(token);
    // The wait code asked for a release message, like mode wait: field x (the key's expiry) is negative.
    expect(Number(await redis.hget(key, 'x'))).toBeLessThan(0);
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
      ['a', 0, 'fence', 2 ** 53],
    ];
    for (const args of bad) {
      await expect(call(...args), JSON.stringify(args)).rejects.toThrow(/^ERR distributed_lock: /);
    }
    expect(await redis.exists(key)).toBe(0);
  });
});
