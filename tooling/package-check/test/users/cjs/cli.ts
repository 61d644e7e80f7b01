// A CommonJS user (NestJS's layout): compiled with `"module": "nodenext"`, loaded through require().
import { EXIT, main } from '@cyredis/cli';

async function run(): Promise<void> {
  const code = await main(['--url', process.env.REDIS_URL ?? 'redis://localhost:6379', '--prefix', process.env.KEY_PREFIX ?? 'user', 'limiters']);
  if (code !== EXIT.ok) throw new Error(`limiters: exit ${code}`);
}
run().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
