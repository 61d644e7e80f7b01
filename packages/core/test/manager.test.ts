import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomPrefix, RedisServer, startCluster, waitFor } from '@cyredis/testing';
import { connect, suiteClient, topologies } from '@cyredis/testing/context';
import { Cluster, type Redis } from 'ioredis';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  CrossSlotError,
  CyRedisError,
  InvalidArgumentError,
  LuaScriptManager,
  RedisTimeoutError,
  RedisUnavailableError,
  ScriptError,
  UnknownScriptError,
  type RedisClient,
} from '../src/index.js';

const INCR_BY = `-- KEYS[1] counter; ARGV[1] increment
return redis.call('INCRBY', KEYS[1], ARGV[1])`;
const GET_ALL = `#!lua flags=no-writes
local out = {}
for i, k in ipairs(KEYS) do out[i] = redis.call('GET', k) or false end
return out`;
const ECHO = `return ARGV`;

function masters(redis: RedisClient): Redis[] {
  return redis instanceof Cluster ? redis.nodes('master') : [redis];
}

async function flushScripts(redis: RedisClient): Promise<void> {
  await Promise.all(masters(redis).map((node) => node.script('FLUSH')));
}

async function commandCalls(redis: RedisClient, command: string): Promise<number> {
  let total = 0;
  for (const node of masters(redis)) {
    const info = await node.info('commandstats');
    const match = new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(info);
    total += match ? Number(match[1]) : 0;
  }
  return total;
}

describe.each(topologies)('LuaScriptManager on %s', (topology) => {
  let scripts: LuaScriptManager;
  let prefix: string;
  // One hash tag per test so multi-key calls stay in one slot on the cluster.
  const key = (name: string) => `${prefix}:{t}:${name}`;

  const redis = suiteClient(topology);

  beforeEach(() => {
    prefix = randomPrefix();
    scripts = new LuaScriptManager(redis);
  });

  it('registers a script and computes the SHA that SCRIPT LOAD returns', async () => {
    const s = scripts.registerScript('incr_by', INCR_BY, { readOnly: false });
    expect(s).toMatchObject({ name: 'incr_by', source: INCR_BY, readOnly: false });
    for (const node of masters(redis)) expect(await node.script('LOAD', INCR_BY)).toBe(s.sha);
    expect(scripts.has('incr_by')).toBe(true);
    expect(scripts.get('incr_by')).toBe(s);
    expect(scripts.names()).toEqual(['incr_by']);
    expect(scripts.has('nope')).toBe(false);
    expect(scripts.get('nope')).toBeUndefined();
  });

  it('registers a script from a file', async () => {
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'cyredis-core-')), 'incr_by.lua');
    writeFileSync(file, INCR_BY);
    const s = await scripts.registerScriptFile('incr_by', file);
    expect(s).toEqual(scripts.registerScript('incr_by', INCR_BY));
    expect(await scripts.executeScript('incr_by', { keys: [key('c')], args: [5] })).toBe(5);
  });

  it('runs a script with keys and args, and passes numbers, bigints and Buffers through', async () => {
    scripts.registerScript('echo', ECHO);
    expect(await scripts.executeScript('echo', { args: ['a', 1.5, 2n ** 70n, Buffer.from('buf'), ''] })).toEqual([
      'a', '1.5', '1180591620717411303424', 'buf', '',
    ]);
    scripts.registerScript('incr_by', INCR_BY);
    expect(await scripts.executeScript('incr_by', { keys: [key('c')], args: [2] })).toBe(2);
    expect(await scripts.executeScript('incr_by', { keys: [key('c')], args: [3] })).toBe(5);
  });

  it('survives SCRIPT FLUSH on every master in the middle of a run with no caller error', async () => {
    const s = scripts.registerScript('incr_by', INCR_BY);
    const keys = Array.from({ length: 16 }, (_, i) => `${prefix}:{k${i}}`);
    let stop = false;
    const flusher = (async () => {
      let flushes = 0;
      while (!stop) {
        await flushScripts(redis);
        flushes++;
        await new Promise((r) => setTimeout(r, 2));
      }
      return flushes;
    })();
    const calls = Array.from({ length: 2_000 }, (_, i) => scripts.executeScript(s, { keys: [keys[i % 16]!], args: [1] }));
    const results = await Promise.allSettled(calls);
    stop = true;
    expect(await flusher).toBeGreaterThan(0);
    expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
    const totals = await Promise.all(keys.map((k) => redis.get(k)));
    expect(totals.reduce((sum, v) => sum + Number(v), 0)).toBe(2_000);
  });

  it('runs no-writes scripts as EVALSHA_RO, falls back to EVAL_RO and refuses writes', async () => {
    const s = scripts.registerScript('get_all', GET_ALL);
    expect(s.readOnly).toBe(true);
    await redis.set(key('a'), '1');
    await scripts.executeScript('get_all', { keys: [key('a')] });
    const ro = await commandCalls(redis, 'evalsha_ro');
    const evalRo = await commandCalls(redis, 'eval_ro');
    const plainEval = await commandCalls(redis, 'eval');
    expect(await scripts.executeScript('get_all', { keys: [key('a'), key('b')] })).toEqual(['1', null]);
    await flushScripts(redis);
    expect(await scripts.executeScript('get_all', { keys: [key('a')] })).toEqual(['1']);
    expect(await commandCalls(redis, 'evalsha_ro')).toBeGreaterThanOrEqual(ro + 1);
    expect(await commandCalls(redis, 'eval_ro')).toBe(evalRo + 1);
    expect(await commandCalls(redis, 'eval')).toBe(plainEval);
    scripts.registerScript('sneaky', `return redis.call('SET', KEYS[1], 'x')`, { readOnly: true });
    await expect(scripts.executeScript('sneaky', { keys: [key('x')] })).rejects.toBeInstanceOf(ScriptError);
    expect(await redis.exists(key('x'))).toBe(0);
  });

  it('works in pipelines and MULTI after a flush', async () => {
    const s = scripts.registerScript('incr_by', INCR_BY);
    await scripts.executeScript(s, { keys: [key('p')], args: [1] });
    await flushScripts(redis);
    const pipeline = redis.pipeline();
    scripts.queueScript(pipeline, s, { keys: [key('p')], args: [10] });
    scripts.queueScript(pipeline, 'incr_by', { keys: [key('p')], args: [100] });
    const piped = await pipeline.exec();
    expect(piped?.map(([err]) => err)).toEqual([null, null]);
    expect(piped?.map(([, v]) => v)).toEqual([11, 111]);

    await flushScripts(redis);
    const multi = redis.multi();
    scripts.queueScript(multi, s, { keys: [key('p')], args: [1] });
    multi.get(key('p'));
    scripts.queueScript(multi, s, { keys: [key('p')], args: [1] });
    const tx = await multi.exec();
    expect(tx).toEqual([[null, 112], [null, '112'], [null, 113]]);
  });

  it('refuses bad input before any round trip, naming the argument', async () => {
    scripts.registerScript('incr_by', INCR_BY, { numberOfKeys: 1 });
    const send = vi.spyOn(redis, 'sendCommand');
    const cases: [unknown[], unknown[], string][] = [
      [[''], [1], 'keys[0]'],
      [[42], [1], 'keys[0]'],
      [[key('a')], [undefined], 'args[0]'],
      [[key('a')], [1, Number.NaN], 'args[1]'],
      [[key('a')], [Number.POSITIVE_INFINITY], 'args[0]'],
      [[key('a')], [{ a: 1 }], 'args[0]'],
      [[key('a')], [null], 'args[0]'],
      [[key('a'), key('b')], [1], 'keys'],
    ];
    for (const [keys, args, argument] of cases) {
      const call = scripts.executeScript('incr_by', { keys: keys as string[], args: args as string[] });
      await expect(call).rejects.toBeInstanceOf(InvalidArgumentError);
      await expect(call).rejects.toMatchObject({ argument });
      expect(() => scripts.queueScript(redis.pipeline(), 'incr_by', { keys: keys as string[], args: args as string[] })).toThrow(InvalidArgumentError);
    }
    await expect(scripts.executeScript('missing')).rejects.toBeInstanceOf(UnknownScriptError);
    expect(() => scripts.registerScript('', 'return 1')).toThrow(InvalidArgumentError);
    expect(() => scripts.registerScript('x', '')).toThrow(InvalidArgumentError);
    expect(send).not.toHaveBeenCalled();
    send.mockRestore();
  });

  it('reports Lua errors as ScriptError with the script name and the Lua text', async () => {
    scripts.registerScript('boom', `return redis.error_reply('ERR bad limit')`);
    scripts.registerScript('crash', `return redis.call('INCR', KEYS[1], 'extra')`);
    const err = await scripts.executeScript('boom').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ScriptError);
    expect(err).toBeInstanceOf(CyRedisError);
    expect(err).toMatchObject({ scriptName: 'boom', redisMessage: 'ERR bad limit', code: 'ERR' });
    await expect(scripts.executeScript('crash', { keys: [key('c')] })).rejects.toMatchObject({
      scriptName: 'crash',
      redisMessage: expect.stringContaining('Wrong number of args') as unknown,
    });
  });

  it('keeps two versions of one script name apart', async () => {
    const v1 = scripts.registerScript('version', `return 'v1'`);
    const v2 = scripts.registerScript('version', `return 'v2'`);
    expect(v1.sha).not.toBe(v2.sha);
    expect(await scripts.executeScript(v1)).toBe('v1');
    expect(await scripts.executeScript(v2)).toBe('v2');
    expect(await scripts.executeScript('version')).toBe('v2');
  });

  it('loadAll puts every script on every master', async () => {
    const a = scripts.registerScript('a', `return 'a${prefix}'`);
    const b = scripts.registerScript('b', `return 'b${prefix}'`);
    await scripts.loadAll();
    for (const node of masters(redis)) expect(await node.script('EXISTS', a.sha, b.sha)).toEqual([1, 1]);
  });

  it('honours the client keyPrefix', async () => {
    const prefixed = connect(topology, { keyPrefix: `${prefix}:kp:` });
    try {
      const m = new LuaScriptManager(prefixed);
      m.registerScript('incr_by', INCR_BY);
      await m.executeScript('incr_by', { keys: ['{n}'], args: [7] });
      expect(await redis.get(`${prefix}:kp:{n}`)).toBe('7');
    } finally {
      await prefixed.quit();
    }
  });
});

describe('LuaScriptManager on a cluster only', () => {
  let redis: RedisClient;
  let scripts: LuaScriptManager;
  const prefix = randomPrefix();

  beforeAll(() => {
    redis = connect('cluster');
    scripts = new LuaScriptManager(redis);
  });
  afterAll(async () => {
    await redis.quit();
  });

  it('checks a frozen key list once and a list that may change at every call', async () => {
    scripts.registerScript('get_all', GET_ALL);
    const frozen = Object.freeze([`${prefix}:{f}:1`, `${prefix}:{f}:2`]);
    for (let i = 0; i < 3; i++) expect(await scripts.executeScript('get_all', { keys: frozen })).toEqual([null, null]);
    // A frozen list that fails its check is refused at every call, never remembered as checked.
    const crossed = Object.freeze([`${prefix}:{a}`, `${prefix}:{b}`]);
    for (let i = 0; i < 2; i++) await expect(scripts.executeScript('get_all', { keys: crossed })).rejects.toBeInstanceOf(CrossSlotError);
    const open = [`${prefix}:{o}:1`, `${prefix}:{o}:2`];
    expect(await scripts.executeScript('get_all', { keys: open })).toEqual([null, null]);
    open[1] = `${prefix}:{x}:2`;
    await expect(scripts.executeScript('get_all', { keys: open })).rejects.toBeInstanceOf(CrossSlotError);
    open[1] = '';
    await expect(scripts.executeScript('get_all', { keys: open })).rejects.toBeInstanceOf(InvalidArgumentError);
  });

  it('throws CrossSlotError naming the keys whose slots differ', async () => {
    scripts.registerScript('get_all', GET_ALL);
    const err = await scripts.executeScript('get_all', { keys: [`${prefix}:{a}`, `${prefix}:{b}`] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CrossSlotError);
    expect((err as CrossSlotError).keys).toEqual([`${prefix}:{a}`, `${prefix}:{b}`]);
    expect((err as CrossSlotError).message).toContain(`${prefix}:{a}`);
    expect(await scripts.executeScript('get_all', { keys: [`${prefix}:{a}:1`, `${prefix}:{a}:2`] })).toEqual([null, null]);
  });
});

describe('LuaScriptManager failures', () => {
  it('turns a missing server into RedisUnavailableError', async () => {
    const server = await RedisServer.start();
    const client = server.client({ maxRetriesPerRequest: 0, retryStrategy: () => null, lazyConnect: true });
    client.on('error', () => undefined);
    await server.stop();
    const scripts = new LuaScriptManager(client);
    scripts.registerScript('one', 'return 1');
    await expect(scripts.executeScript('one')).rejects.toBeInstanceOf(RedisUnavailableError);
    client.disconnect();
  });

  it('times out with RedisTimeoutError while the server is paused, then works again', async () => {
    const server = await RedisServer.start();
    const client = server.client();
    try {
      const scripts = new LuaScriptManager(client);
      scripts.registerScript('one', 'return 1');
      expect(await scripts.executeScript('one', { timeoutMs: 5_000 })).toBe(1);
      expect(await client.client('PAUSE', 500, 'ALL')).toBe('OK');
      const err = await scripts.executeScript('one', { timeoutMs: 50 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RedisTimeoutError);
      expect(err).toBeInstanceOf(RedisUnavailableError);
      expect(await scripts.executeScript('one', { timeoutMs: 10_000 })).toBe(1);
    } finally {
      client.disconnect();
      await server.stop();
    }
  });

  it('carries on through a cluster failover to a replica with an empty script cache', async () => {
    const cluster = await startCluster({ masters: 3, replicasPerMaster: 1 });
    const client = cluster.client();
    try {
      const scripts = new LuaScriptManager(client);
      const s = scripts.registerScript('incr_by', INCR_BY);
      const prefix = randomPrefix();
      const keys = Array.from({ length: 30 }, (_, i) => `${prefix}:{${i}}`);
      await Promise.all(keys.map((k) => scripts.executeScript(s, { keys: [k], args: [1] })));
      const masterPorts = new Set((await cluster.masters()).map((m) => m.port));
      const replica = cluster.nodes.find((n) => !masterPorts.has(n.port))!;
      let stop = false;
      let calls = 0;
      const load = (async () => {
        while (!stop) {
          await Promise.all(keys.map((k) => scripts.executeScript(s, { keys: [k], args: [1] })));
          calls += keys.length;
        }
      })();
      expect(await replica.command('CLUSTER', 'FAILOVER')).toBe('OK');
      await waitFor(async () => (await replica.info('replication')).role === 'master', { message: 'replica was not promoted' });
      await waitFor(() => calls > keys.length * 5);
      stop = true;
      await load;
      expect(await replica.command('SCRIPT', 'EXISTS', s.sha)).toEqual([1]);
      const total = (await Promise.all(keys.map((k) => client.get(k)))).reduce((sum, v) => sum + Number(v), 0);
      expect(total).toBe(keys.length + calls);
    } finally {
      client.disconnect();
      await cluster.stop();
    }
  });
});
