// `cyredis clean <queue> <state> --older-than 1h`: remove finished jobs (completed or dead) older than an age.
import type { CommandSpec } from '../command.js';
import { CliError, EXIT } from '../errors.js';
import { parseDuration } from '../output.js';
import { openQueue } from './shared.js';

const STATES = ['completed', 'dead'] as const;
/** Jobs one `clean` call removes at most; the command calls again until fewer come back. */
const BATCH = 1000;

export const clean: CommandSpec = {
  name: 'clean',
  args: ['<queue>', '<state>'],
  summary: 'remove the completed or dead jobs finished more than --older-than ago',
  destructive: true,
  options: [{ flags: '--older-than <duration>', description: 'age of the jobs to remove: 30s, 15m, 1h, 7d (0: all)' }],
  async run(ctx, [name, state], options) {
    if (!(STATES as readonly string[]).includes(state!)) throw new CliError(`<state>: expected completed or dead, got "${state}"`, EXIT.usage);
    if (options.olderThan === undefined) throw new CliError('--older-than: required, e.g. --older-than 1h (0 removes all)', EXIT.usage);
    const olderThanMs = parseDuration('--older-than', options.olderThan as string);
    const q = await openQueue(ctx, name!);
    await ctx.confirm(`remove the ${state} jobs of "${name}" older than ${options.olderThan as string}`, options.yes === true);
    let removed = 0;
    for (;;) {
      const n = await q.clean(state as (typeof STATES)[number], { olderThanMs, limit: BATCH });
      removed += n;
      if (n < BATCH) break;
    }
    ctx.print({ queue: name!, state: state!, removed }, () => `${removed} ${state} job(s) removed from "${name}"`);
  },
};
