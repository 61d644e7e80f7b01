import { RedisServer, sleep, waitFor } from '@cyredis/testing';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { underLoad } from '../src/scenario.js';
import { workloads } from '../src/workloads.js';

// The server refuses work: out of memory, or busy with someone else's slow script.
let server: RedisServer;
let client: Redis;
let admin: Redis;

beforeAll(async () => {
  server = await RedisServer.start({ args: ['--maxmemory-policy', 'noeviction', '--busy-reply-threshold', '200'] });
  client = server.client();
  admin = server.client();
  client.on('error', () => undefined);
});
afterAll(async () => {
  client.disconnect();
  admin.disconnect();
  await server.stop();
});

/** Fills memory past a tight maxmemory so writes are refused, then lifts the limit after a while. */
async function outOfMemory(): Promise<void> {
  const used = Number((await server.info('memory')).used_memory);
  await admin.config('SET', 'maxmemory', String(used + 512 * 1024));
  const ballast = 'x'.repeat(64 * 1024);
  for (let i = 0; i < 64; i++) {
    try {
      await admin.set(`ballast:${i}`, ballast);
    } catch {
      break;
    }
  }
  await sleep(500);
  await admin.config('SET', 'maxmemory', '0');
  for (let i = 0; i < 64; i++) await admin.del(`ballast:${i}`);
}

describe.each(workloads)('$name when the server refuses work', (w) => {
  it('out of memory (noeviction): each call fully happens or fails with a typed error; nothing half-written', async () => {
    const report = await underLoad(w, client, outOfMemory);
    expect(Object.keys(report.byKind).every((kind) => /OOM|Unavailable|Unreachable|Timeout/.test(kind))).toBe(true);
  });

  it('busy with a slow script past busy-reply-threshold: typed errors, then recovery', async () => {
    const report = await underLoad(w, client, async () => {
      const blocker = server.client();
      blocker.on('error', () => undefined);
      const slow = blocker.eval('local i = 0 while true do i = i + 1 end', 0).catch(() => undefined);
      await waitFor(async () => String(await admin.ping().catch((e: Error) => e.message)).startsWith('BUSY'), { intervalMs: 20 });
      await sleep(300);
      await admin.call('SCRIPT', 'KILL');
      await slow;
      blocker.disconnect();
    });
    expect(Object.keys(report.byKind).every((kind) => /BUSY|Unavailable|Unreachable|Timeout/.test(kind))).toBe(true);
  });
});
