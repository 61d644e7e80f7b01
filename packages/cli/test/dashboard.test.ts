import { JobQueue } from '@cyredis/queue';
import { randomPrefix, waitFor } from '@cyredis/testing';
import { deleteByPrefix, suiteClient, topologies } from '@cyredis/testing/context';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { follow, run, target } from './helpers.js';

// `cyredis dashboard`: the web dashboard on the CLI's connection, until Ctrl-C.
describe.each(topologies)('cyredis dashboard on %s', (topology) => {
  const redis = suiteClient(topology);
  let prefix: string;
  const stops: (() => Promise<unknown>)[] = [];
  beforeEach(() => {
    prefix = randomPrefix();
  });
  afterEach(async () => {
    for (const stop of stops.splice(0)) await stop();
    await deleteByPrefix(redis, prefix);
  });

  /** Starts the command and resolves with what it printed once it listens. */
  async function start(...flags: string[]): Promise<{ url: string; readOnly: boolean; stop: () => Promise<number | null> }> {
    const child = follow([...target(topology), '--prefix', prefix, '--json', 'dashboard', '--port', '0', ...flags]);
    stops.push(() => child.stop());
    const printed = await waitFor(() => (child.stdout().trim().endsWith('}') ? child.stdout() : undefined), { timeoutMs: 20_000, message: `it listens (stderr: ${child.stderr()})` });
    return { ...(JSON.parse(printed) as { url: string; readOnly: boolean }), stop: child.stop };
  }

  it('serves the queues used under the prefix and stops on Ctrl-C', async () => {
    const queue = new JobQueue(redis, 'mail', { prefix });
    await queue.push({ to: 'a' }, { id: 'a' });
    await waitFor(async () => (await JobQueue.list(redis, { prefix })).length === 1, { message: 'the queue is recorded' });
    const { url, readOnly, stop } = await start();
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    expect(readOnly).toBe(false);
    expect(await (await fetch(url)).text()).toContain('assets/app.js');
    const queues = (await (await fetch(new URL('api/queues', url))).json()) as { name: string; counts: { waiting: number } }[];
    expect(queues).toMatchObject([{ name: 'mail', counts: { waiting: 1 } }]);
    const paused = await fetch(new URL('api/queues/mail/pause', url), { method: 'POST', headers: { 'x-cyredis-dashboard': '1' } });
    expect(paused.status).toBe(200);
    expect(await queue.isPaused()).toBe(true);
    expect(await stop()).toBe(0);
    await expect(fetch(url)).rejects.toThrow();
  });

  it('--read-only refuses changes', async () => {
    await new JobQueue(redis, 'mail', { prefix }).push({ to: 'a' });
    const { url, readOnly } = await start('--read-only');
    expect(readOnly).toBe(true);
    const refused = await fetch(new URL('api/queues/mail/pause', url), { method: 'POST', headers: { 'x-cyredis-dashboard': '1' } });
    expect(refused.status).toBe(403);
  });

  it('refuses a bad port with the usage exit code', async () => {
    const result = await run([...target(topology), 'dashboard', '--port', '70000']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('--port');
  });
});
