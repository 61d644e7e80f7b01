// `cyredis limiters`: the named rate limiters used under the prefix within a day.
import { RateLimiter } from '@cyredis/ratelimit';
import type { CommandSpec } from '../command.js';
import { parseCount, table, time } from '../output.js';

export const limiters: CommandSpec = {
  name: 'limiters',
  args: [],
  summary: 'list the named rate limiters used within the last day',
  options: [{ flags: '--limit <n>', description: 'most limiters to list (1-1000)', default: '100' }],
  async run(ctx, _args, options) {
    const { prefix, timeoutMs } = ctx.options;
    const entries = await RateLimiter.list(await ctx.redis(), { prefix, timeoutMs, limit: parseCount('--limit', options.limit as string, 1, 1000) });
    ctx.print(entries, (list) =>
      table(
        ['limiter', 'last seen'],
        list.map((e) => [e.name, time(e.lastSeenMs)]),
        '(no named limiter used under this prefix within the last day)',
      ),
    );
  },
};
