// `cyredis locks`: the locks held now under the prefix, every kind, with holders, lease left and fencing token.
import { LockManager, type HeldLock } from '@cyredis/lock';
import type { CommandSpec } from '../command.js';
import { duration, parseCount, table } from '../output.js';

/** A lock manager for the prefix, closed with the command. */
export async function lockManager(ctx: Parameters<CommandSpec['run']>[0]): Promise<LockManager> {
  const manager = new LockManager(await ctx.redis(), { prefix: ctx.options.prefix, timeoutMs: ctx.options.timeoutMs });
  ctx.onClose(() => manager.close());
  return manager;
}

/** Who holds a lock, in one cell. */
export function holders(lock: HeldLock): string {
  return lock.holders.map((h) => `${h.owner}${h.mode === undefined ? '' : ` (${h.mode})`}${lock.kind === 'semaphore' ? ` ×${h.count}` : ''}`).join(', ');
}

export const locks: CommandSpec = {
  name: 'locks',
  args: [],
  summary: 'list the locks held now under --prefix (mutex, semaphore, read-write, fair)',
  details: 'A SCAN of every master (never KEYS), at most --limit locks.',
  options: [
    { flags: '--limit <n>', description: 'most locks to list (1-100000)', default: '1000' },
    { flags: '--match <pattern>', description: 'only resources matching this Redis glob, e.g. orders:*' },
  ],
  async run(ctx, _args, options) {
    const limit = parseCount('--limit', options.limit as string, 1, 100_000);
    const match = options.match as string | undefined;
    const manager = await lockManager(ctx);
    const held: HeldLock[] = [];
    let cursor: string | undefined;
    do {
      const page = await manager.listHeld({ limit: Math.min(1000, limit - held.length), ...(match === undefined ? {} : { match }), ...(cursor === undefined ? {} : { cursor }) });
      held.push(...page.locks);
      cursor = page.cursor;
    } while (cursor !== undefined && held.length < limit);
    ctx.print(held, (list) =>
      table(
        ['kind', 'resource', 'held by', 'ttl', 'fencing token'],
        list.map((l) => [l.kind, l.resource, holders(l), duration(l.ttlMs), l.fencingToken]),
        '(no lock held under this prefix)',
      ),
    );
  },
};
