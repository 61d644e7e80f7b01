import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface, type Interface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { randomPrefix, waitFor } from '@cyredis/testing';
import { clusterSeeds, connect, deleteByPrefix, redisUrl, topologies } from '@cyredis/testing/context';
import type { Cluster, Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SmartCache } from '../src/index.js';

const WORKER = fileURLToPath(new URL('./fixtures/worker.mjs', import.meta.url));

/** A worker process (test/fixtures/worker.mjs, importing the built dist/) driven one JSON line at a time. */
class Worker {
  private readonly lines: Interface;
  private readonly replies: ((line: string) => void)[] = [];

  private constructor(readonly child: ChildProcessWithoutNullStreams) {
    this.lines = createInterface({ input: child.stdout });
    this.lines.on('line', (line) => this.replies.shift()?.(line));
  }

  static async start(config: object): Promise<Worker> {
    const worker = new Worker(spawn(process.execPath, [WORKER, JSON.stringify(config)], { stdio: 'pipe' }));
    let stderr = '';
    worker.child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const ready = worker.next();
    const exited = new Promise<never>((_, reject) => worker.child.once('exit', (code) => reject(new Error(`worker exited ${code}: ${stderr}`))));
    exited.catch(() => undefined);
    await Promise.race([ready, exited]);
    return worker;
  }

  private next(): Promise<Record<string, unknown>> {
    return new Promise((resolve) => this.replies.push((line) => resolve(JSON.parse(line) as Record<string, unknown>)));
  }

  send(...command: unknown[]): Promise<Record<string, unknown>> {
    const reply = this.next();
    this.child.stdin.write(`${JSON.stringify(command)}\n`);
    return reply;
  }

  kill(): void {
    if (this.child.pid !== undefined && this.child.exitCode === null) process.kill(this.child.pid, 'SIGKILL');
  }
}

describe.each(topologies)('SmartCache across processes on %s', (topology) => {
  let redis: Redis | Cluster;
  const prefix = randomPrefix();
  const workers: Worker[] = [];
  const start = async (config: object) => {
    const worker = await Worker.start({
      ...(topology === 'cluster' ? { seeds: clusterSeeds() } : { url: redisUrl() }),
      prefix,
      ...config,
    });
    workers.push(worker);
    return worker;
  };

  beforeAll(() => {
    redis = connect(topology);
  });
  afterEach(() => {
    for (const worker of workers.splice(0)) worker.kill();
  });
  afterAll(async () => {
    await deleteByPrefix(redis, prefix);
    await redis.quit();
  });

  it('runs the loader once for 50 concurrent getOrSet calls from two processes', async () => {
    const [a, b] = await Promise.all([start({ name: 'stampede' }), start({ name: 'stampede' })]);
    const counter = `${prefix}:{stampede}:loads`;
    const [ra, rb] = await Promise.all([a.send('getOrSet', 'hot', 25, 300, counter), b.send('getOrSet', 'hot', 25, 300, counter)]);
    const values = [...(ra.values as string[]), ...(rb.values as string[])];
    expect(values).toHaveLength(50);
    expect(new Set(values).size).toBe(1);
    expect(await redis.get(counter)).toBe('1');
  });

  it('invalidates L1 in the other process on set, both ways', async () => {
    const cache = new SmartCache<string>(redis, { name: 'l1', prefix, maxSize: 100, defaultTtlMs: 60_000, l1: { maxEntries: 100 } });
    try {
      const worker = await start({ name: 'l1', l1: true });
      await cache.set('k', 'v1');
      await waitFor(async () => (await worker.send('get', 'k')).value === 'v1' && (await worker.send('l1Size')).size === 1);
      await waitFor(async () => (await cache.get('k')) === 'v1' && (await cache.stats()).l1Size === 1);
      await cache.set('k', 'v2');
      await waitFor(async () => (await worker.send('get', 'k')).value === 'v2', { message: 'worker L1 kept v1' });
      await worker.send('set', 'k', 'v3');
      await waitFor(async () => (await cache.get('k')) === 'v3', { message: 'L1 kept v2' });
    } finally {
      await cache.close();
    }
  });

  it('deleteByTag in one process drops the entries of the tag from the other process\'s L1, both ways', async () => {
    const cache = new SmartCache<string>(redis, { name: 'tags', prefix, maxSize: 100, defaultTtlMs: 60_000, l1: { maxEntries: 100 } });
    try {
      const worker = await start({ name: 'tags', l1: true });
      await cache.set('a', 'A', { tags: ['t'] });
      await cache.set('b', 'B', { tags: ['u'] });
      await waitFor(async () => (await worker.send('get', 'a')).value === 'A' && (await worker.send('get', 'b')).value === 'B' && (await worker.send('l1Size')).size === 2);
      expect(await cache.deleteByTag('t')).toBe(1);
      await waitFor(async () => (await worker.send('get', 'a')).value === null, { message: 'worker L1 kept a' });
      expect((await worker.send('get', 'b')).value).toBe('B');
      await worker.send('set', 'c', 'C', ['u']);
      await waitFor(async () => (await cache.get('c')) === 'C' && (await cache.get('b')) === 'B' && (await cache.stats()).l1Size === 2);
      expect(await worker.send('deleteByTag', 'u')).toEqual({ removed: 2 });
      await waitFor(async () => (await cache.get('b')) === undefined && (await cache.get('c')) === undefined, { message: 'L1 kept b or c' });
    } finally {
      await cache.close();
    }
  });

  it('refuses lone-surrogate keys up front in every process, and invalidates well-formed look-alikes across them', async () => {
    const cache = new SmartCache<string>(redis, { name: 'uni', prefix, maxSize: 100, defaultTtlMs: 60_000, l1: { maxEntries: 100 } });
    try {
      const worker = await start({ name: 'uni', l1: true });
      // ioredis would send both as 'user\uFFFD': one entry that an L1 elsewhere never hears about.
      for (const key of ['user\uD800', 'user\uDBFF']) {
        expect(await worker.send('set', key, 'x')).toEqual({ error: 'InvalidArgumentError' });
        expect(await worker.send('get', key)).toEqual({ error: 'InvalidArgumentError' });
        await expect(cache.set(key, 'x')).rejects.toMatchObject({ name: 'InvalidArgumentError', argument: 'key' });
      }
      await cache.set('user😀', 'v1');
      await waitFor(async () => (await worker.send('get', 'user😀')).value === 'v1' && (await worker.send('l1Size')).size === 1);
      await cache.set('user😀', 'v2');
      await waitFor(async () => (await worker.send('get', 'user😀')).value === 'v2', { message: 'worker L1 kept v1' });
      expect((await worker.send('get', 'user😁')).value).toBeNull();
    } finally {
      await cache.close();
    }
  });
});
