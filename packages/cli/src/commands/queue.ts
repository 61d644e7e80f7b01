// `cyredis queue <name>`: one queue's counts, pause state and schedulers.
import type { CommandSpec } from '../command.js';
import { fields, table, time } from '../output.js';
import { openQueue } from './shared.js';

export const queue: CommandSpec = {
  name: 'queue',
  args: ['<name>'],
  summary: "show a queue's counts per state, whether it is paused, and its schedulers",
  async run(ctx, [name]) {
    const q = await openQueue(ctx, name!);
    const [counts, paused, schedulers] = await Promise.all([q.stats(), q.isPaused(), q.getSchedulers()]);
    const info = { name: name!, paused, counts, schedulers: schedulers.map((s) => ({ id: s.id, cron: s.cron, tz: s.tz, everyMs: s.everyMs, nextRunAt: s.nextRunAt })) };
    ctx.print(info, (i) =>
      [
        fields([
          ['queue', i.name],
          ['paused', i.paused ? 'yes' : 'no'],
          ['waiting', i.counts.waiting],
          ['delayed', i.counts.delayed],
          ['active', i.counts.processing],
          ['retrying', i.counts.failed],
          ['dead', i.counts.dead],
          ['completed', i.counts.completed],
        ]),
        '',
        table(
          ['scheduler', 'repeat', 'next run'],
          i.schedulers.map((s) => [s.id, s.cron === undefined ? `every ${s.everyMs} ms` : `${s.cron}${s.tz === undefined ? '' : ` (${s.tz})`}`, time(s.nextRunAt)]),
          '(no schedulers)',
        ),
      ].join('\n'),
    );
  },
};
