// `cyredis limit <limiter> <id>`: what an id consumed under each rule and what its next request would get; consumes nothing.
import type { CommandSpec } from '../command.js';
import { duration, fields, table } from '../output.js';
import { LIMITER_OPTIONS, openLimiter } from './shared.js';

export const limit: CommandSpec = {
  name: 'limit',
  args: ['<limiter>', '<id>'],
  summary: "show an id's usage under each rule of a limiter and whether its next request passes (consumes nothing)",
  details: "The limiter's rules are read from Redis (stored by a named limiter while in use); --rule 100/1m --rule 10/1s overrides them.",
  options: LIMITER_OPTIONS,
  async run(ctx, [name, id], options) {
    const limiter = await openLimiter(ctx, name!, options);
    const usage = await limiter.usage(id!);
    ctx.print({ limiter: name!, id: id!, ...usage }, (u) =>
      [
        table(
          ['rule', 'limit', 'window', 'used', 'remaining', 'full again in'],
          u.rules.map((r) => [r.rule, r.limit, duration(r.windowMs), r.used, r.remaining, duration(r.resetMs)]),
        ),
        '',
        fields([
          ['next request', u.next.allowed ? 'allowed' : 'refused'],
          ['retry after', u.next.allowed ? undefined : Number.isFinite(u.next.retryAfterMs) ? duration(u.next.retryAfterMs) : 'never (denied)'],
        ]),
      ].join('\n'),
    );
  },
};
