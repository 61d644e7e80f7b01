// `cyredis lock <name>`: one lock's state: who holds it (every kind of that name), lease left, fencing token.
import type { CommandSpec } from '../command.js';
import { duration, fields } from '../output.js';
import { holders, lockManager } from './locks.js';

/** `name` as a Redis glob that matches only itself. */
function literal(name: string): string {
  return name.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}

export const lock: CommandSpec = {
  name: 'lock',
  args: ['<name>'],
  summary: 'show who holds a lock (any kind of that name), its lease left and fencing token',
  async run(ctx, [name]) {
    const manager = await lockManager(ctx);
    const [status, page] = await Promise.all([manager.status(name!), manager.listHeld({ match: literal(name!), limit: 1000 })]);
    // A held mutex is in both; the listing also has the semaphore, read-write and fair locks of that name.
    const held = page.locks.filter((l) => l.resource === name);
    const result = { name: name!, locked: held.length > 0, held, lastFencingToken: status.fencingToken };
    ctx.print(result, (r) =>
      [
        fields([
          ['lock', r.name],
          ['held', r.locked ? 'yes' : 'no'],
          ['last fencing token', r.held.length === 0 ? r.lastFencingToken : undefined],
        ]),
        ...r.held.map((l) =>
          fields([
            ['kind', l.kind],
            ['held by', holders(l)],
            ['ttl', duration(l.ttlMs)],
            ['fencing token', l.fencingToken],
            ['permits', l.permits],
            ['waiting', l.waiting],
          ]),
        ),
      ].join('\n\n'),
    );
  },
};
