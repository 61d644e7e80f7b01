import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { Redis } from 'ioredis';
import { runSuite, withServer, type BenchSuite, type CaseResult } from './harness.js';
import { startOtel } from './otel.js';

/**
 * `pnpm bench [suite …]`: runs every suite in `suites/` (or the named ones) against one private Redis,
 * RUNS rounds (default 5) of DURATION_MS (default 1000) per sample, prints markdown tables and writes
 * `results/latest.json`. With `OTEL=1`, @cyredis/otel is active (spans and metrics to an in-process SDK).
 */
const runs = Number(process.env.RUNS ?? 5);
const durationMs = Number(process.env.DURATION_MS ?? 1000);
const wanted = process.argv.slice(2);

const dir = new URL('./suites/', import.meta.url);
const files = readdirSync(dir).filter((f) => f.endsWith('.js')).sort();
const suites: BenchSuite[] = [];
for (const file of files) {
  const mod = (await import(new URL(file, dir).href)) as { default: BenchSuite };
  if (wanted.length === 0 || wanted.includes(mod.default.name)) suites.push(mod.default);
}
if (suites.length === 0) throw new Error(`no suite named ${wanted.join(', ')}; have ${files.join(', ')}`);

const stopOtel = process.env.OTEL === '1' ? startOtel() : undefined;
const results: CaseResult[] = await withServer(async (redisUrl) => {
  const all: CaseResult[] = [];
  const otel = stopOtel ? ', @cyredis/otel active' : '';
  console.log(`# cyredis bench — ${runs} interleaved rounds, ${durationMs} ms samples, Redis at ${redisUrl}${otel}`);
  for (const suite of suites) {
    const clients: Redis[] = [];
    const client = () => {
      const c = new Redis(redisUrl);
      clients.push(c);
      return c;
    };
    console.log(`\n## ${suite.name}`);
    try {
      all.push(...(await runSuite(suite, { redisUrl, client, durationMs }, runs, (line) => console.log(line))));
    } finally {
      await Promise.all(clients.map((c) => c.quit().catch(() => undefined)));
    }
  }
  return all;
});
await stopOtel?.();

const out = new URL('../results/', import.meta.url);
mkdirSync(out, { recursive: true });
writeFileSync(new URL('latest.json', out), JSON.stringify({ date: new Date().toISOString(), runs, durationMs, results }, null, 2));
console.log(`\nwrote ${new URL('latest.json', out).pathname}`);
