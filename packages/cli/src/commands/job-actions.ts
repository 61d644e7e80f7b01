// `cyredis retry|promote|remove <queue> <id>`: one job back from the dead letters, made ready now, or removed.
import type { CommandSpec } from '../command.js';
import { jobAction, openQueue } from './shared.js';

export const retry: CommandSpec = {
  name: 'retry',
  args: ['<queue>', '<id>'],
  summary: 'move one dead job back to waiting, its attempts reset',
  async run(ctx, [name, id]) {
    const q = await openQueue(ctx, name!);
    await jobAction(q, id!, () => q.retryJob(id!), 'only a dead job can be retried');
    ctx.print({ queue: name!, id: id!, retried: true }, () => `job "${id}" is waiting again`);
  },
};

export const promote: CommandSpec = {
  name: 'promote',
  args: ['<queue>', '<id>'],
  summary: 'make a delayed job (or one waiting for its retry) ready now',
  async run(ctx, [name, id]) {
    const q = await openQueue(ctx, name!);
    await jobAction(q, id!, () => q.promote(id!), 'only a delayed job can be promoted');
    ctx.print({ queue: name!, id: id!, promoted: true }, () => `job "${id}" is ready now`);
  },
};

export const remove: CommandSpec = {
  name: 'remove',
  args: ['<queue>', '<id>'],
  summary: 'remove one job with everything kept of it (an active one only with --force)',
  destructive: true,
  options: [{ flags: '--force', description: 'remove it even while a worker runs it (its lease is then lost)', default: false }],
  async run(ctx, [name, id], options) {
    const q = await openQueue(ctx, name!);
    const force = options.force === true;
    await ctx.confirm(`remove job "${id}" from queue "${name}"`, options.yes === true);
    await jobAction(q, id!, () => q.remove(id!, { force }), 'a worker runs it: add --force to remove it anyway');
    ctx.print({ queue: name!, id: id!, removed: true }, () => `job "${id}" removed`);
  },
};
