// `cyredis force-unlock <name> --yes`: ends whoever's lease on a lock (the fencing counter is kept).
import type { CommandSpec } from '../command.js';
import { CliError, EXIT } from '../errors.js';
import { lockManager } from './locks.js';

export const forceUnlock: CommandSpec = {
  name: 'force-unlock',
  args: ['<name>'],
  summary: "end whoever's lease on a lock (mutex, or --kind fair); its next acquirer gets a higher fencing token",
  destructive: true,
  options: [{ flags: '--kind <kind>', description: 'mutex or fair', default: 'mutex' }],
  async run(ctx, [name], options) {
    const kind = options.kind as string;
    if (kind !== 'mutex' && kind !== 'fair') throw new CliError(`--kind: expected mutex or fair, got "${kind}"`, EXIT.usage);
    const manager = await lockManager(ctx);
    await ctx.confirm(`force-unlock ${kind} "${name}"`, options.yes === true);
    const ended = kind === 'fair' ? await manager.fair(name!).forceUnlock() : await manager.forceUnlock(name!);
    if (!ended) throw new CliError(`${kind} "${name}" is not held`, EXIT.notFound);
    ctx.print({ name: name!, kind, unlocked: true }, () => `${kind} "${name}" unlocked`);
  },
};
