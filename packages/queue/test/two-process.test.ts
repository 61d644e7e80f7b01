import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { randomPrefix, waitFor } from '@cyredis/testing';
import { clusterSeeds, deleteByPrefix, redisUrl, suiteClient, topologies } from '@cyredis/testing/context';
import type { Redis } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isAfter } from '../src/events.js';
import { JobFailedError, JobQueue } from '../src/index.js';
import { decodeEventEntries } from '../src/protocol.js';
import { masters } from './helpers.js';

const WORKER = fileURLToPath(new URL('./fixtures/result-worker.mjs', import.meta.url));
const LISTENER = fileURLToPath(new URL('./fixtures/events-listener.mjs', import.meta.url));
const JOBS = 40;

/** A fixture process and the lines it prints. */
interface Child {
  process: ChildProcess;
  lines: string[];
}

// Issue 15: results awaited across processes, and a QueueEvents in a third process that sees every event in
// order, across a killed connection, a restart from its last event id and a SCRIPT FLUSH.
describe.each(topologies)('queue across processes on %s', (topology) => {
  const redis = suiteClient(topology);
  const target = () => (topology === 'cluster' ? JSON.stringify(clusterSeeds()) : redisUrl());
  const children = new Set<ChildProcess>();
  let prefix: string;

  beforeEach(() => {
    prefix = randomPrefix();
  });
  afterEach(async () => {
    for (const child of children) child.kill('SIGKILL');
    await waitFor(() => (children.size === 0 ? true : undefined));
    await deleteByPrefix(redis, prefix);
  });

  function start(file: string, ...args: string[]): Child {
    const child = spawn(process.execPath, [file, target(), prefix, 'xp', ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    children.add(child);
    child.once('exit', () => children.delete(child));
    const lines: string[] = [];
    createInterface({ input: child.stdout }).on('line', (line) => lines.push(line));
    return { process: child, lines };
  }

  /** Every event in the stream, as the listener prints them. */
  async function streamed(queue: JobQueue<number>): Promise<string[]> {
    const entries = decodeEventEntries([[queue.eventsKey, await (redis as Redis).xrange(queue.eventsKey, '-', '+')]]);
    return entries.flatMap((e) => e.events.map((x) => `${e.entryId} ${x.name} ${x.jobId}`));
  }

  it('a producer awaits results a worker process produces; a listener process sees every event in order and resumes without loss', async () => {
    const queue = new JobQueue<number, { doubled: number }>(redis, 'xp', { prefix });
    const listener = start(LISTENER, '0');
    await waitFor(() => (listener.lines.includes('ready') ? true : undefined), { timeoutMs: 20_000 });
    const ids = await queue.pushBulk(Array.from({ length: JOBS }, (_, n) => ({ data: n, maxRetries: 0 })));
    const results = ids.map((id) => queue.waitUntilFinished(id, { timeoutMs: 60_000 }).then((v) => v, (err: unknown) => err));
    start(WORKER);
    // Mid-run: the script cache is flushed and the listener's connection killed; both recover by themselves.
    await waitFor(async () => ((await queue.stats()).completed > 0 ? true : undefined), { timeoutMs: 30_000 });
    for (const node of masters(redis)) await node.script('FLUSH');
    let killed = 0;
    for (const node of masters(redis)) {
      const clients = String(await node.client('LIST'))
        .split('\n')
        .filter((line) => line.includes('name=events-listener') && line.includes('cmd=xread'));
      for (const line of clients) killed += Number(await node.client('KILL', 'ID', /id=(\d+)/.exec(line)![1]!));
    }
    expect(killed).toBeGreaterThan(0);
    const settled = await Promise.all(results);
    settled.forEach((result, n) => {
      if (n % 2 === 0) expect(result, `job ${n}`).toEqual({ doubled: n * 2 });
      else expect(result, `job ${n}`).toBeInstanceOf(JobFailedError);
    });
    expect((settled[1] as JobFailedError).failedReason).toBe('odd 1');
    const all = await streamed(queue as JobQueue<number>);
    await waitFor(() => (listener.lines.length - 1 >= all.length ? true : undefined), { timeoutMs: 30_000 });
    expect(listener.lines.slice(1)).toEqual(all);

    // A new listener from the first one's last event id sees only what came after, and nothing is lost.
    const lastSeen = listener.lines.at(-1)!.split(' ')[0]!;
    listener.process.kill('SIGKILL');
    await queue.push(100, { id: 'after' });
    expect(await queue.waitUntilFinished('after', { timeoutMs: 30_000 })).toEqual({ doubled: 200 });
    const resumed = start(LISTENER, lastSeen);
    const after = (await streamed(queue as JobQueue<number>)).filter((line) => isAfter(line.split(' ')[0]!, lastSeen));
    await waitFor(() => (resumed.lines.length - 1 >= after.length ? true : undefined), { timeoutMs: 30_000 });
    expect(resumed.lines.slice(1)).toEqual(after);
    expect(after.map((line) => line.split(' ').slice(1).join(' '))).toEqual(expect.arrayContaining(['added after', 'active after', 'completed after']));
  });
});
