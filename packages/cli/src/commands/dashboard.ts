// `cyredis dashboard [--port 3000] [--read-only]`: serves the web dashboard on this connection until Ctrl-C.
import { serveDashboard } from '@cyredis/dashboard';
import type { CommandSpec } from '../command.js';
import { parseCount } from '../output.js';

export const dashboard: CommandSpec = {
  name: 'dashboard',
  args: [],
  summary: 'serve the web dashboard (queues, jobs, locks, caches, limits) until Ctrl-C',
  details:
    'Shows the queues and caches used under --prefix in the last day and the held locks, updated live. It listens on ' +
    '127.0.0.1 unless --host says otherwise: it has no login, so share it only behind your own access control. ' +
    'With --json, prints { url, readOnly } once it listens.',
  options: [
    { flags: '--port <port>', description: 'TCP port to listen on (0: any free one)', default: '3000' },
    { flags: '--host <host>', description: 'interface to listen on', default: '127.0.0.1' },
    { flags: '--read-only', description: 'hide every action and refuse every change', default: false },
  ],
  async run(ctx, _args, options) {
    const port = parseCount('--port', options.port as string, 0, 65_535);
    const readOnly = options.readOnly === true;
    const server = await serveDashboard({ redis: await ctx.redis(), prefix: ctx.options.prefix, port, host: options.host as string, readOnly });
    ctx.onClose(() => server.close());
    ctx.print({ url: server.url, readOnly }, ({ url }) => `dashboard on ${url}${readOnly ? ' (read-only)' : ''} (Ctrl-C to stop)`);
    await ctx.io.interrupted();
  },
};
