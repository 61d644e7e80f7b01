// `cyredis job <queue> <id>`: one job with its data, progress, result, error, times and logs.
import type { CommandSpec } from '../command.js';
import { fields, parseCount, time, toJson } from '../output.js';
import { getJob, openQueue } from './shared.js';

export const job: CommandSpec = {
  name: 'job',
  args: ['<queue>', '<id>'],
  summary: 'show one job: state, data, progress, return value, error, attempts, times and logs',
  options: [{ flags: '--logs <n>', description: 'most log lines to show', default: '100' }],
  async run(ctx, [name, id], options) {
    const limit = parseCount('--logs', options.logs as string, 1, 1000);
    const q = await openQueue(ctx, name!);
    const info = await getJob(q, id!);
    const logs = await q.getLogs(id!, { limit });
    ctx.print({ ...info, logs }, (j) =>
      [
        fields([
          ['id', j.id],
          ['state', j.state],
          ['attempts', `${j.attempts} of ${j.maxRetries + 1}`],
          ['priority', j.priority],
          ['created', time(j.createdAt)],
          ['processed', time(j.processedAt)],
          ['finished', time(j.finishedAt)],
          ['ready at', time(j.readyAt)],
          ['progress', j.progress],
          ['failed reason', j.failedReason],
        ]),
        'data:',
        toJson(j.data),
        ...(j.returnValue === undefined ? [] : ['return value:', toJson(j.returnValue)]),
        `logs (${j.logs.length}):`,
        ...j.logs.map((line) => `  ${line}`),
      ].join('\n'),
    );
  },
};
