// `cyredis cache <name>`: one cache's shared statistics, or with --key one entry's TTL, size and tags.
import type { CommandSpec } from '../command.js';
import { CliError, EXIT } from '../errors.js';
import { duration, fields } from '../output.js';
import { openCache } from './shared.js';

export const cache: CommandSpec = {
  name: 'cache',
  args: ['<name>'],
  summary: "show a cache's statistics (hits, misses, size, hit rate), or one entry's with --key",
  options: [{ flags: '--key <key>', description: "show this entry's TTL, size and tags instead" }],
  async run(ctx, [name], options) {
    const c = await openCache(ctx, name!);
    const key = options.key as string | undefined;
    if (key !== undefined) {
      const entry = await c.inspect(key);
      if (entry === undefined) throw new CliError(`no entry "${key}" in cache "${name}"`, EXIT.notFound);
      ctx.print({ cache: name!, key, ...entry }, (e) => fields(Object.entries(e).map(([k, v]) => [k, k.endsWith('Ms') && typeof v === 'number' ? (Number.isFinite(v) ? duration(v) : 'none') : v])));
      return;
    }
    const { hits, misses, sets, evictions, size, maxSize, hitRate } = await c.stats();
    ctx.print({ cache: name!, hits, misses, sets, evictions, size, maxSize, hitRate }, (s) =>
      fields([
        ['cache', s.cache],
        ['size', `${s.size} of ${s.maxSize}`],
        ['hit rate', `${(s.hitRate * 100).toFixed(1)}%`],
        ['hits', s.hits],
        ['misses', s.misses],
        ['sets', s.sets],
        ['evictions', s.evictions],
      ]),
    );
  },
};
