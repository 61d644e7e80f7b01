// `cyredis retry|promote|remove <queue> <id>`: one job back from the dead letters, made ready now, or removed.
import type { JobQueue } from '@cyredis/queue';
import type { CommandSpec } from '../command.js';
import { jobAction, openQueue } from './shared.js';

/** A command that moves one job: `act` answers false when the job is unknown or not in the state it needs. */
function moveJob(name: string, summary: string, act: (queue: JobQueue, id: string) => Promise<boolean>, needs: string, done: string, field: string): CommandSpec {
  return {
    name,
    args: ['<queue>', '<id>'],
    summary,
    async run(ctx, [queue, id]) {
      const q = await openQueue(ctx, queue!);
      await jobAction(q, id!, () => act(q, id!), needs);
      ctx.print({ queue: queue!, id: id!, [field]: true }, () => `job "${id}" ${done}`);
    },
  };
}

export const retry = moveJob('retry', 'move one dead job back to waiting, its attempts reset', (q, id) => q.retryJob(id), 'only a dead job can be retried', 'is waiting again', 'retried');

export const promote = moveJob(
  'promote',
  'make a delayed job (or one waiting for its retry) ready now',
  (q, id) => q.promote(id),
  'only a delayed job can be promoted',
  'is ready now',
  'promoted',
);

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
