// `cyredis jobs <queue> <state>`: a page of a queue's jobs in one state, in that state's order.
import type { CommandSpec } from '../command.js';
import { CliError, EXIT } from '../errors.js';
import { parseCount, table } from '../output.js';
import { JOB_HEADERS, JOB_STATES, jobRow, openQueue } from './shared.js';

export const jobs: CommandSpec = {
  name: 'jobs',
  args: ['<queue>', '<state>'],
  summary: `list a queue's jobs in one state (${JOB_STATES.join(', ')})`,
  details: 'Order: waiting in the order they will run; delayed by ready time; active by lease deadline; completed and dead newest first.',
  options: [
    { flags: '--limit <n>', description: 'most jobs to list (1-1000)', default: '50' },
    { flags: '--offset <n>', description: 'jobs to skip first', default: '0' },
  ],
  async run(ctx, [name, state], options) {
    if (!(JOB_STATES as readonly string[]).includes(state!)) throw new CliError(`<state>: expected one of ${JOB_STATES.join(', ')}, got "${state}"`, EXIT.usage);
    const limit = parseCount('--limit', options.limit as string, 1, 1000);
    const offset = parseCount('--offset', options.offset as string, 0, Number.MAX_SAFE_INTEGER);
    const q = await openQueue(ctx, name!);
    const page = await q.getJobs(state as (typeof JOB_STATES)[number], { limit, offset });
    ctx.print(page, (list) => table(JOB_HEADERS, list.map(jobRow), `(no ${state} jobs)`));
  },
};
