// `cyredis queues`: every queue used under the prefix within a day, with its counts per state.
import { JobQueue } from '@cyredis/queue';
import type { CommandSpec } from '../command.js';
import { parseCount, table, time } from '../output.js';

export const queues: CommandSpec = {
  name: 'queues',
  args: [],
  summary: 'list the queues used within the last day, with their counts per state',
  options: [{ flags: '--limit <n>', description: 'most queues to list (1-1000)', default: '100' }],
  async run(ctx, _args, options) {
    const redis = await ctx.redis();
    const { prefix, timeoutMs } = ctx.options;
    const entries = await JobQueue.list(redis, { prefix, timeoutMs, limit: parseCount('--limit', options.limit as string, 1, 1000) });
    const rows = await Promise.all(
      entries.map(async ({ name, lastSeenMs }) => {
        const queue = new JobQueue(redis, name, { prefix, timeoutMs });
        const [counts, paused] = await Promise.all([queue.stats(), queue.isPaused()]);
        return { name, lastSeenMs, paused, counts };
      }),
    );
    ctx.print(rows, (list) =>
      table(
        ['queue', 'waiting', 'delayed', 'active', 'retrying', 'dead', 'completed', 'paused', 'last seen'],
        list.map((q) => [q.name, q.counts.waiting, q.counts.delayed, q.counts.processing, q.counts.failed, q.counts.dead, q.counts.completed, q.paused ? 'yes' : 'no', time(q.lastSeenMs)]),
        '(no queue used under this prefix within the last day)',
      ),
    );
  },
};
