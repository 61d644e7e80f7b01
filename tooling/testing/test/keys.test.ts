import type { Cluster, Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomPrefix, RedisClusterHandle, startPrivate, traceKeys, undeclaredKeys, type PrivateTopology } from '../src/index.js';

// Declares KEYS[1] but also writes a key built from it, the mistake the helper exists to catch.
const TOY = `
redis.call('SET', KEYS[1], ARGV[1])
redis.call('INCR', KEYS[1] .. ':undeclared')
redis.pcall('HSET', KEYS[1] .. ':also', 'f', 'v')
redis.call('MSET', KEYS[2], 'x', KEYS[1] .. ':third', 'y')
redis.call('PUBLISH', 'not-a-key', 'hi')
redis.call('TIME')
return redis.call('GET', KEYS[1])
`;

// Scripts cache redis.call in a local, or call it through Lua's pcall: both are traced too.
const CACHED_CALL = `
local call = redis.call
call('SET', KEYS[1] .. ':cached', 1)
local ok = pcall(redis.call, 'DEL', KEYS[1] .. ':protected')
local function helper() return call('EXISTS', KEYS[1]) end
return helper()
`;

const CLEAN = `#!lua flags=no-writes
local a = redis.call('GET', KEYS[1])
return a
`;

const FAILING = `
redis.call('DEL', KEYS[1] .. ':before-error')
return redis.error_reply('ERR toy: refused')
`;

describe.each(['single', 'cluster'] as const)('undeclaredKeys on %s', (topology) => {
  let topo: PrivateTopology;
  let client: Redis | Cluster;
  const prefix = `${randomPrefix()}{t}`;

  beforeAll(async () => {
    topo = await startPrivate(topology);
    client = topo.client;
  }, 30_000);
  afterAll(() => topo.stop());

  it('lists every key touched outside KEYS, once, in order, and passes the reply through', async () => {
    const keys = [`${prefix}a`, `${prefix}b`];
    const trace = await traceKeys(client, TOY, keys, ['v1']);
    expect(trace.reply).toBe('v1');
    expect(trace.undeclared).toEqual([`${prefix}a:undeclared`, `${prefix}a:also`, `${prefix}a:third`]);
    // Again, with the keys existing: still each key once.
    expect(await undeclaredKeys(client, TOY, keys, ['v2'])).toEqual([`${prefix}a:undeclared`, `${prefix}a:also`, `${prefix}a:third`]);
  });

  it('traces redis.call kept in a local and redis.call under pcall', async () => {
    expect(await traceKeys(client, CACHED_CALL, [`${prefix}a`], [])).toEqual({ reply: 1, undeclared: [`${prefix}a:cached`, `${prefix}a:protected`] });
  });

  it('finds nothing in a script that touches only its KEYS, shebang and all', async () => {
    expect(await traceKeys(client, CLEAN, [`${prefix}a`], [])).toEqual({ reply: 'v2', undeclared: [] });
    expect(await traceKeys(client, CLEAN, [`${prefix}missing`], [])).toEqual({ reply: null, undeclared: [] });
  });

  it('reports the keys a failing script touched, with its error as the reply', async () => {
    const trace = await traceKeys(client, FAILING, [`${prefix}a`], []);
    expect(trace.undeclared).toEqual([`${prefix}a:before-error`]);
    expect(trace.reply).toBeInstanceOf(Error);
    expect((trace.reply as Error).message).toMatch(/^ERR toy: refused/);
  });

  it('applies the client keyPrefix to KEYS as any EVAL does', async () => {
    const prefixed = topology === 'single' ? topo.nodes[0]!.client({ keyPrefix: 'kp:' }) : new RedisClusterHandle(topo.nodes).client({ keyPrefix: 'kp:' });
    try {
      expect(await undeclaredKeys(prefixed, TOY, [`${prefix}a`, `${prefix}b`], ['v'])).toEqual([
        `kp:${prefix}a:undeclared`,
        `kp:${prefix}a:also`,
        `kp:${prefix}a:third`,
      ]);
    } finally {
      await prefixed.quit();
    }
  });
});
