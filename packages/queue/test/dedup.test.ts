import { defaultCodec, InvalidArgumentError, LuaScriptManager, type ScriptArg } from '@cyredis/core';
import { randomPrefix, waitFor } from '@cyredis/testing';
import { deleteByPrefix, suiteClient, topologies } from '@cyredis/testing/context';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { JOB_QUEUE_LUA, JobQueue } from '../src/index.js';
import * as protocol from '../src/protocol.js';
import { snapshot } from './helpers.js';

// Deduplication by key: throttle drops repeats while the key lives, debounce keeps the latest data and
// runs once the pushes stop.
describe.each(topologies)('dedup on %s', (topology) => {
  const redis = suiteClient(topology);
  let prefix: string;
  let queue: JobQueue<{ n: number }>;

  beforeEach(() => {
    prefix = randomPrefix();
    queue = new JobQueue<{ n: number }>(redis, 'sync', { prefix });
  });
  afterEach(() => deleteByPrefix(redis, prefix));

  it('throttle: the first push queues, repeats within ttlMs are dropped and name the holder', async () => {
    const dedup = { key: 'user-7-sync', ttlMs: 60_000, mode: 'throttle' } as const;
    const first = await queue.add({ n: 1 }, { dedup });
    expect(first.added).toBe(true);
    // Repeats in the same tick share one script call, in order.
    const again = await Promise.all([queue.add({ n: 2 }, { dedup }), queue.add({ n: 3 }, { dedup }), queue.add({ n: 4 })]);
    expect(again.map((r) => r.added)).toEqual([false, false, true]);
    expect(again[0].id).toBe(first.id);
    expect(again[1].id).toBe(first.id);
    // Dropped even once the first job ran: the key holds for ttlMs.
    const [job] = await queue.pop(1);
    expect(job!.data).toEqual({ n: 1 });
    await queue.complete(job!);
    expect((await queue.add({ n: 5 }, { dedup })).added).toBe(false);
    expect((await queue.stats()).waiting).toBe(1);
  });

  it('throttle: once the key expires, the next push queues again', async () => {
    const dedup = { key: 'k', ttlMs: 50, mode: 'throttle' } as const;
    expect((await queue.add({ n: 1 }, { dedup })).added).toBe(true);
    await waitFor(async () => ((await queue.add({ n: 2 }, { dedup })).added ? true : undefined), { timeoutMs: 10_000 });
    expect((await queue.stats()).waiting).toBe(2);
  });

  it('debounce: keeps the latest data and restarts the wait; runs once quiet', async () => {
    const dedup = { key: 'user-7-sync', ttlMs: 300, mode: 'debounce' } as const;
    const first = await queue.add({ n: 1 }, { dedup });
    expect(first.added).toBe(true);
    expect(await queue.getJob(first.id)).toMatchObject({ state: 'delayed', data: { n: 1 } });
    const before = (await queue.getJob(first.id))!.readyAt!;
    const second = await queue.add({ n: 2 }, { dedup, priority: 3 });
    expect(second).toEqual({ id: first.id, added: false });
    const info = (await queue.getJob(first.id))!;
    expect(info).toMatchObject({ state: 'delayed', data: { n: 2 }, priority: 3 });
    expect(info.readyAt!).toBeGreaterThanOrEqual(before);
    expect(await queue.pop(1)).toEqual([]);
    const [job] = await waitFor(async () => {
      const got = await queue.pop(1);
      return got.length > 0 ? got : undefined;
    }, { timeoutMs: 10_000 });
    expect(job).toMatchObject({ id: first.id, data: { n: 2 } });
    // Its job started: the next push with the key is a new job.
    const third = await queue.add({ n: 3 }, { dedup });
    expect(third.added).toBe(true);
    expect(third.id).not.toBe(first.id);
    expect((await queue.stats()).delayed).toBe(1);
  });

  it('pushBulk: jobs with and without dedups keep their order', async () => {
    const dedup = { key: 'x', ttlMs: 60_000, mode: 'throttle' } as const;
    const out = await queue.addBulk([{ data: { n: 1 } }, { data: { n: 2 }, dedup }, { data: { n: 3 }, dedup }, { data: { n: 4 } }]);
    expect(out.map((r) => r.added)).toEqual([true, true, false, true]);
    expect((await queue.pop(10)).map((j) => j.data.n)).toEqual([1, 2, 4]);
  });

  it('refuses bad dedup options by name, before any call', async () => {
    const bad: [unknown, string][] = [
      [{ key: '', ttlMs: 1, mode: 'throttle' }, 'options.dedup.key'],
      [{ key: 'k', ttlMs: 0, mode: 'throttle' }, 'options.dedup.ttlMs'],
      [{ key: 'k', ttlMs: 1.5, mode: 'throttle' }, 'options.dedup.ttlMs'],
      [{ key: 'k', ttlMs: 1, mode: 'drop' }, 'options.dedup.mode'],
      [{ key: 'k', ttlMs: 1, mode: 'throttle', extra: 1 }, 'options.dedup'],
      ['k', 'options.dedup'],
    ];
    for (const [dedup, name] of bad) {
      await expect(queue.push({ n: 1 }, { dedup } as never)).rejects.toThrow(InvalidArgumentError);
      await expect(queue.push({ n: 1 }, { dedup } as never)).rejects.toThrow(name);
    }
    await expect(queue.push({ n: 1 }, { dedup: { key: 'k', ttlMs: 10, mode: 'debounce' }, delayMs: 5 })).rejects.toThrow('options.delayMs');
    expect(await snapshot(redis, prefix)).toEqual({});
  });

  it('the raw script answers ERR and writes nothing for a bad dedup', async () => {
    const scripts = new LuaScriptManager(redis);
    const script = scripts.registerScript('cyredis:queue:job_queue', JOB_QUEUE_LUA);
    const seed = ['waiting', 'processing', 'failed', 'dead'].map((k) => `${prefix}{d}:${k}`);
    const keys = protocol.declaredKeys(seed).keys;
    const dedupKey = `${seed[0]!}:dedup:k`;
    const run = (args: ScriptArg[], callKeys: readonly string[] = [...keys, dedupKey]) => scripts.executeScript(script, { keys: callKeys, args });
    const before = await snapshot(redis, prefix);
    const bad: [ScriptArg[], (readonly string[])?][] = [
      [['PUSHN', '*', 1, 1, 0, '1', 0, 2, 'drop', 10, 'k', 'x']],
      [['PUSHN', '*', 1, 1, 0, '1', 0, 2, 'throttle', 0, 'k', 'x']],
      [['PUSHN', '*', 1, 1, 0, '1', 0, 2, 'throttle', 10, '', 'x']],
      [['PUSHN', '*', 1, 1, 0, '1', 0, 2, 'throttle', 10, 'other', 'x']],
      [['PUSHN', '*', 1, 1, 0, '1', 5, 2, 'debounce', 10, 'k', 'x']],
      [['PUSHN', '*', 1, 1, 0, '1', 0, 2, 'throttle', 10, 'k', 'x'], keys],
      [['PUSHN', '*', 1, 1, 0, '1', 0, 2, 'throttle', 10, 'k', 'x'], seed],
      [['PUSHN', '*', 1, 1, 0, '1', 0, 4, 'x']],
      [['STATS', '*'], [...keys, dedupKey, dedupKey]],
    ];
    for (const [args, callKeys] of bad) await expect(run(args, callKeys), JSON.stringify(args)).rejects.toThrow(/ERR job_queue: /);
    expect(await snapshot(redis, prefix)).toEqual(before);
    // The contract form: encoder, keys and decoder.
    const jobs: protocol.PushSpec[] = [
      { id: undefined, text: defaultCodec.encode(1), priority: 0, policy: '1', delaySeconds: 0, dedup: { key: 'k', ttlMs: 1000, mode: 'throttle' } },
      { id: undefined, text: defaultCodec.encode(2), priority: 0, policy: '1', delaySeconds: 0, dedup: { key: 'k', ttlMs: 1000, mode: 'throttle' } },
    ];
    const reply = await run(protocol.encodePushMany(jobs), protocol.pushKeys(keys, jobs));
    const [a, b] = protocol.decodePushMany(jobs, reply);
    expect(a!.added).toBe(true);
    expect(b).toEqual({ id: a!.id, added: false });
  });
});
