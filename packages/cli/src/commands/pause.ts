// `cyredis pause <queue>` and `cyredis resume <queue>`: stop or restart leasing for every worker in every process.
import type { CommandSpec } from '../command.js';
import { openQueue } from './shared.js';

function pausing(paused: boolean): CommandSpec {
  const verb = paused ? 'pause' : 'resume';
  return {
    name: verb,
    args: ['<queue>'],
    summary: paused ? 'pause a queue: no worker in any process leases a job until resume (running jobs finish)' : 'resume a paused queue',
    async run(ctx, [name]) {
      const q = await openQueue(ctx, name!);
      await (paused ? q.pause() : q.resume());
      ctx.print({ queue: name!, paused }, () => `queue "${name}" ${paused ? 'paused' : 'resumed'}`);
    },
  };
}

export const pause = pausing(true);
export const resume = pausing(false);
