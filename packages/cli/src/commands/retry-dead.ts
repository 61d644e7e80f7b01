// `cyredis retry-dead <queue>`: every dead job of a queue back to waiting.
import type { CommandSpec } from '../command.js';
import { openQueue } from './shared.js';

export const retryDead: CommandSpec = {
  name: 'retry-dead',
  args: ['<queue>'],
  summary: 'move every dead job of a queue back to waiting, attempts reset',
  async run(ctx, [name]) {
    const q = await openQueue(ctx, name!);
    const moved = await q.retryDead();
    ctx.print({ queue: name!, moved }, () => `${moved} dead job(s) of "${name}" waiting again`);
  },
};
