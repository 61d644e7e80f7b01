// `cyredis events <queue>`: follows a queue's event stream and prints each event as it happens, until Ctrl-C.
import { QueueEvents, type QueueEventMap } from '@cyredis/queue';
import type { CommandSpec } from '../command.js';
import { toJson } from '../output.js';
import { openQueue } from './shared.js';

/** Every event a queue emits (all but `error`). */
const EVENTS = ['added', 'delayed', 'waiting', 'active', 'progress', 'completed', 'retrying', 'dead', 'removed', 'stalled', 'paused', 'resumed', 'drained'] as const;

/** An event's payload beyond its ids, as one line. */
function detail(payload: Record<string, unknown>): string {
  const { id: _id, jobId: _jobId, ...rest } = payload;
  return Object.keys(rest).length === 0 ? '' : ` ${toJson(rest).replace(/\s*\n\s*/g, ' ')}`;
}

export const events: CommandSpec = {
  name: 'events',
  args: ['<queue>'],
  summary: "print a queue's events as they happen, until Ctrl-C",
  details: 'With --json, one JSON document per line: { event, id, jobId?, … }. --from resumes after an event id.',
  options: [{ flags: '--from <event-id>', description: 'start after this event id (default: only new events)' }],
  async run(ctx, [name], options) {
    await openQueue(ctx, name!);
    const redis = await ctx.redis();
    const from = options.from as string | undefined;
    const reader = new QueueEvents(redis, name!, { prefix: ctx.options.prefix, ...(from === undefined ? {} : { lastEventId: from }) });
    ctx.onClose(() => reader.close());
    for (const event of EVENTS) {
      reader.on(event, (payload: QueueEventMap[typeof event][0]) => {
        const record = payload as unknown as Record<string, unknown>;
        ctx.stream({ event, ...record }, () => `${new Date().toISOString()} ${event.padEnd(9)} ${(record.jobId as string | undefined) ?? ''}${detail(record)}`);
      });
    }
    // The reader retries by itself: say so, and keep following.
    reader.on('error', (err) => ctx.io.stderr.write(`cyredis: reading events failed, retrying: ${err instanceof Error ? err.message : String(err)}\n`));
    await reader.ready();
    ctx.io.stderr.write(`following the events of "${name}" (Ctrl-C to stop)\n`);
    await ctx.io.interrupted();
  },
};
