import { LuaScriptManager } from '@cyredis/core';
import { throughput, type BenchSuite } from '../harness.js';

const INCR = `return redis.call('INCR', KEYS[1])`;

/**
 * `executeScript` against a raw ioredis `evalsha` of the same one-INCR script (target: within 10%), with and
 * without a per-call deadline (`timeoutMs`, which every package passes).
 */
const suite: BenchSuite = {
  name: 'core',
  groups: async ({ client, durationMs }) => {
    const redis = client();
    const scripts = new LuaScriptManager(redis);
    const s = scripts.registerScript('bench_incr', INCR);
    await scripts.loadAll();
    const keys = Array.from({ length: 1024 }, (_, i) => `bench:core:{${i}}`);
    return [1, 64].map((concurrency) => ({
      title: `one-INCR script, ${concurrency} in flight (ops/s)`,
      cases: [
        {
          name: 'ioredis evalsha (raw)',
          unit: 'ops/s',
          higherIsBetter: true,
          sample: () => throughput((i) => redis.evalsha(s.sha, 1, keys[i & 1023]!), concurrency, durationMs),
        },
        {
          name: 'LuaScriptManager.executeScript',
          unit: 'ops/s',
          higherIsBetter: true,
          sample: () => throughput((i) => scripts.executeScript(s, { keys: [keys[i & 1023]!] }), concurrency, durationMs),
        },
        {
          name: 'LuaScriptManager.executeScript, timeoutMs 1000',
          unit: 'ops/s',
          higherIsBetter: true,
          sample: () => throughput((i) => scripts.executeScript(s, { keys: [keys[i & 1023]!], timeoutMs: 1_000 }), concurrency, durationMs),
        },
      ],
    }));
  },
};

export default suite;
