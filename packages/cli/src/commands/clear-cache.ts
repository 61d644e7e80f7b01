// `cyredis clear-cache <name> --yes`: removes every entry of a cache (its statistics stay).
import type { CommandSpec } from '../command.js';
import { openCache } from './shared.js';

export const clearCache: CommandSpec = {
  name: 'clear-cache',
  args: ['<name>'],
  summary: 'remove every entry of a cache',
  destructive: true,
  async run(ctx, [name], options) {
    const c = await openCache(ctx, name!);
    await ctx.confirm(`clear cache "${name}"`, options.yes === true);
    await c.clear();
    ctx.print({ cache: name!, cleared: true }, () => `cache "${name}" cleared`);
  },
};
