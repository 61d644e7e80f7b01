import { CliError, COMMANDS, EXIT, main, type Io } from '@cyredis/cli';

// The command line in-process, its output captured: `queues --json` against the test server.
let out = '';
const io: Io = {
  stdout: { write: (text: string) => (out += text) },
  stderr: process.stderr,
  stdin: process.stdin,
  interactive: false,
  interrupted: () => new Promise<void>(() => undefined),
};
const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const code = await main(['--url', url, '--prefix', process.env.KEY_PREFIX ?? 'user', '--json', 'queues'], io);
if (code !== EXIT.ok || !Array.isArray(JSON.parse(out))) throw new Error(`queues: exit ${code}, ${out}`);
if (!COMMANDS.some((c) => c.name === 'locks') || !(new CliError('x', EXIT.usage) instanceof Error)) throw new Error('exports');
