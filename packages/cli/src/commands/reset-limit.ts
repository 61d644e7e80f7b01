// `cyredis reset-limit <limiter> <id> --yes`: forget what an id consumed under every rule (and any block).
import type { CommandSpec } from '../command.js';
import { LIMITER_OPTIONS, openLimiter } from './shared.js';

export const resetLimit: CommandSpec = {
  name: 'reset-limit',
  args: ['<limiter>', '<id>'],
  summary: 'forget what an id consumed under every rule of a limiter, and any block',
  details: "The limiter's rules (they decide which keys hold the counts) are read from Redis; --rule 100/1m … overrides them.",
  destructive: true,
  options: LIMITER_OPTIONS,
  async run(ctx, [name, id], options) {
    const limiter = await openLimiter(ctx, name!, options);
    await ctx.confirm(`reset "${id}" in limiter "${name}"`, options.yes === true);
    await limiter.reset(id!);
    ctx.print({ limiter: name!, id: id!, reset: true }, () => `"${id}" reset in limiter "${name}"`);
  },
};
