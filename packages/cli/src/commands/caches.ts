// `cyredis caches`: the caches used under the prefix within a day, with size and hit rate.
import { SmartCache } from '@cyredis/cache';
import type { CommandSpec } from '../command.js';
import { parseCount, table, time } from '../output.js';
import { cacheNamed } from './shared.js';

export const caches: CommandSpec = {
  name: 'caches',
  args: [],
  summary: 'list the caches used within the last day, with size and hit rate',
  options: [{ flags: '--limit <n>', description: 'most caches to list (1-1000)', default: '100' }],
  async run(ctx, _args, options) {
    const { prefix, timeoutMs } = ctx.options;
    const entries = await SmartCache.list(await ctx.redis(), { prefix, timeoutMs, limit: parseCount('--limit', options.limit as string, 1, 1000) });
    const rows = await Promise.all(
      entries.map(async ({ name, lastSeenMs }) => {
        const { hits, misses, sets, evictions, size, maxSize, hitRate } = await (await cacheNamed(ctx, name)).stats();
        return { name, lastSeenMs, hits, misses, sets, evictions, size, maxSize, hitRate };
      }),
    );
    ctx.print(rows, (list) =>
      table(
        ['cache', 'size', 'max size', 'hit rate', 'hits', 'misses', 'evictions', 'last seen'],
        list.map((c) => [c.name, c.size, c.maxSize, `${(c.hitRate * 100).toFixed(1)}%`, c.hits, c.misses, c.evictions, time(c.lastSeenMs)]),
        '(no cache used under this prefix within the last day)',
      ),
    );
  },
};
