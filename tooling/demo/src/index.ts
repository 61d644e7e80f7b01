import { readdirSync } from 'node:fs';
import { randomPrefix, RedisServer } from '@cyredis/testing';
import { Redis } from 'ioredis';
import type { DemoContext } from './context.js';
import { keepRunning } from './keep.js';

/**
 * `pnpm demo`: runs every section in `sections/` (in file-name order) against REDIS_URL, or against a
 * private redis-server it starts and stops. `pnpm demo --keep` instead leaves demo traffic running until
 * Ctrl-C, for the dashboard and the CLI to show.
 */
const keep = process.argv.includes('--keep');
const server = process.env.REDIS_URL ? undefined : await RedisServer.start();
const url = process.env.REDIS_URL ?? server!.url;
const redis = new Redis(url);
try {
  console.log(`cyredis demo against ${url}${server ? ' (private server, stopped at the end)' : ''}`);
  if (keep) await keepRunning(redis, url);
  const dir = new URL('./sections/', import.meta.url);
  for (const file of keep ? [] : readdirSync(dir).filter((f) => f.endsWith('.js')).sort()) {
    const section = (await import(new URL(file, dir).href)) as { title: string; default: (ctx: DemoContext) => Promise<void> };
    console.log(`\n== ${section.title}`);
    await section.default({ redis, prefix: randomPrefix('demo'), log: (line) => console.log(`   ${line}`) });
  }
  console.log('\ndemo finished');
} finally {
  redis.disconnect();
  await server?.stop();
}
