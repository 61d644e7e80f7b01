import { SmartCache } from '@cyredis/cache';
import { LockManager } from '@cyredis/lock';
import { JobQueue } from '@cyredis/queue';
import { RateLimiter } from '@cyredis/ratelimit';
import { freePort, randomPrefix, RedisServer, testCertificates, waitFor } from '@cyredis/testing';
import { deleteByPrefix, suiteClient, topologies } from '@cyredis/testing/context';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { COMMANDS, EXIT, main, processIo, type Io } from '../src/index.js';
import { follow, json, run, target, until } from './helpers.js';

interface QueueRow {
  name: string;
  paused: boolean;
  counts: { waiting: number; delayed: number; processing: number; dead: number; completed: number };
}

// Every command against real Redis, through the built executable, on a single node and a 3-master cluster.
describe.each(topologies)('cyredis on %s', (topology) => {
  const redis = suiteClient(topology);
  let prefix: string;
  const cli = (...args: string[]) => run([...target(topology), '--prefix', prefix, ...args]);
  const closers: (() => Promise<unknown>)[] = [];
  beforeEach(() => {
    prefix = randomPrefix();
  });
  afterEach(async () => {
    for (const close of closers.splice(0)) await close();
    await deleteByPrefix(redis, prefix);
  });

  /** A queue `mail` with a waiting, a delayed, a dead and a completed job, listed in the registry. */
  async function mailQueue(): Promise<JobQueue<{ to: string }, { sent: boolean }>> {
    const queue = new JobQueue<{ to: string }, { sent: boolean }>(redis, 'mail', { prefix, maxRetries: 0 });
    await queue.push({ to: 'done' }, { id: 'done' });
    const [first] = await queue.pop(1);
    await queue.log('done', 'rendered');
    await queue.complete(first!, { sent: true });
    await queue.push({ to: 'broken' }, { id: 'broken' });
    await queue.fail((await queue.pop(1))[0]!, new Error('smtp said no'));
    await queue.push({ to: 'a' }, { id: 'w1' });
    await queue.push({ to: 'later' }, { id: 'later', delayMs: 3_600_000 });
    await until(async () => (await JobQueue.list(redis, { prefix })).some((e) => e.name === 'mail'));
    return queue;
  }

  it('queues, queue, jobs and job show counts, pages and one job, as tables or JSON', async () => {
    await mailQueue();
    const rows = json<QueueRow[]>(await cli('queues', '--json'));
    expect(rows).toEqual([expect.objectContaining({ name: 'mail', paused: false, counts: expect.objectContaining({ waiting: 1, delayed: 1, dead: 1, completed: 1 }) })]);
    const table = await cli('queues');
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^QUEUE\s+WAITING\s+DELAYED/);
    expect(table.stdout).toMatch(/mail\s+1\s+1\s+0\s+0\s+1\s+1\s+no/);

    expect(json<QueueRow>(await cli('queue', 'mail', '--json'))).toMatchObject({ name: 'mail', paused: false, counts: { waiting: 1 }, schedulers: [] });
    expect((await cli('queue', 'mail')).stdout).toMatch(/paused:\s+no/);

    const waiting = json<{ id: string; state: string; data: unknown }[]>(await cli('jobs', 'mail', 'waiting', '--json'));
    expect(waiting).toEqual([expect.objectContaining({ id: 'w1', state: 'waiting', data: { to: 'a' } })]);
    expect((await cli('jobs', 'mail', 'dead')).stdout).toMatch(/broken\s+dead\s+1\/1.*smtp said no/);
    expect((await cli('jobs', 'mail', 'completed', '--limit', '1', '--offset', '1')).stdout).toBe('(no completed jobs)\n');

    const done = json<Record<string, unknown>>(await cli('job', 'mail', 'done', '--json'));
    expect(done).toMatchObject({ id: 'done', state: 'completed', data: { to: 'done' }, returnValue: { sent: true }, logs: ['rendered'] });
    expect(typeof done.finishedAt).toBe('number');
    const human = await cli('job', 'mail', 'broken');
    expect(human.stdout).toMatch(/state:\s+dead/);
    expect(human.stdout).toMatch(/failed reason:\s+smtp said no/);
  });

  it('unknown names, states and ids end with a one-line message and the documented exit code', async () => {
    await mailQueue();
    for (const [args, code, message] of [
      [['queue', 'nope'], EXIT.notFound, /no queue "nope"/],
      [['jobs', 'nope', 'waiting'], EXIT.notFound, /no queue "nope"/],
      [['job', 'mail', 'nope'], EXIT.notFound, /no job "nope" in queue "mail"/],
      [['jobs', 'mail', 'sleeping'], EXIT.usage, /expected one of waiting, delayed/],
      [['jobs', 'mail', 'waiting', '--limit', '5000'], EXIT.usage, /--limit/],
      [['retry', 'mail', 'w1'], EXIT.notFound, /job "w1" is waiting: only a dead job/],
      [['promote', 'mail', 'w1'], EXIT.notFound, /only a delayed job/],
      [['cache', 'nope'], EXIT.notFound, /no cache "nope"/],
      [['limit', 'nope', 'u', '--rule', '5/1m'], EXIT.notFound, /no rate limiter "nope"/],
      [['nonsense'], EXIT.usage, /unknown command/],
      [['jobs', 'mail'], EXIT.usage, /missing required argument/],
    ] as const) {
      const result = await cli(...args);
      expect(result.code, args.join(' ')).toBe(code);
      expect(result.stderr, args.join(' ')).toMatch(message);
      expect(result.stderr).not.toMatch(/\n\s+at /);
    }
    // The lookups recorded no queue of the unknown names.
    expect((await JobQueue.list(redis, { prefix })).map((e) => e.name)).toEqual(['mail']);
  });

  it('pause, resume, retry, retry-dead, promote, remove and clean steer the queue', async () => {
    const queue = await mailQueue();
    expect(json(await cli('pause', 'mail', '--json'))).toEqual({ queue: 'mail', paused: true });
    expect(await queue.isPaused()).toBe(true);
    expect((await cli('resume', 'mail')).stdout).toBe('queue "mail" resumed\n');
    expect(await queue.isPaused()).toBe(false);

    expect((await cli('retry', 'mail', 'broken')).code).toBe(0);
    expect((await queue.getJob('broken'))?.state).toBe('waiting');
    await queue.fail((await queue.pop(2)).find((j) => j.id === 'broken')!, new Error('again'));
    expect(json(await cli('retry-dead', 'mail', '--json'))).toEqual({ queue: 'mail', moved: 1 });

    expect((await cli('promote', 'mail', 'later')).code).toBe(0);
    expect((await queue.getJob('later'))?.state).toBe('waiting');

    // Destructive: refused without --yes when no terminal can ask, and nothing removed.
    const refused = await cli('remove', 'mail', 'later');
    expect(refused.code).toBe(EXIT.notConfirmed);
    expect(refused.stderr).toMatch(/without --yes/);
    expect(await queue.getJob('later')).toBeDefined();
    expect((await cli('remove', 'mail', 'later', '--yes')).stdout).toBe('job "later" removed\n');
    expect(await queue.getJob('later')).toBeUndefined();

    expect((await cli('clean', 'mail', 'completed', '--yes')).code).toBe(EXIT.usage);
    expect((await cli('clean', 'mail', 'completed', '--older-than', '0')).code).toBe(EXIT.notConfirmed);
    expect(json(await cli('clean', 'mail', 'completed', '--older-than', '1h', '--yes', '--json'))).toMatchObject({ removed: 0 });
    expect(json(await cli('clean', 'mail', 'completed', '--older-than', '0', '--yes', '--json'))).toMatchObject({ removed: 1 });
    expect(await queue.getJob('done')).toBeUndefined();
  });

  it('events follows the stream until Ctrl-C, one JSON document per line', async () => {
    const queue = await mailQueue();
    const follower = follow([...target(topology), '--prefix', prefix, 'events', 'mail', '--json']);
    closers.push(async () => follower.stop());
    await waitFor(() => follower.stderr().includes('following the events'), { timeoutMs: 20_000 });
    await queue.push({ to: 'b' }, { id: 'new' });
    await queue.pause();
    await waitFor(() => follower.stdout().includes('"paused"'), { timeoutMs: 20_000 });
    const lines = follower
      .stdout()
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { event: string; jobId?: string; id: string });
    expect(lines.map((l) => [l.event, l.jobId])).toEqual([
      ['added', 'new'],
      ['paused', undefined],
    ]);
    expect(lines[0]!.id).toMatch(/^\d+-\d+$/);
    expect(await follower.stop()).toBe(0);
  });

  it('locks, lock and force-unlock show and end held locks', async () => {
    const locks = new LockManager(redis, { prefix, ttlMs: 60_000 });
    closers.push(() => locks.close());
    const held = await locks.acquire('orders:1', { owner: 'worker-1' });
    await locks.semaphore('pool', { permits: 3 }).acquire({ owner: 's1', count: 2 });

    const listed = json<{ kind: string; resource: string; fencingToken: string; holders: { owner: string }[] }[]>(await cli('locks', '--json'));
    expect(listed.map((l) => [l.kind, l.resource]).sort()).toEqual([
      ['mutex', 'orders:1'],
      ['semaphore', 'pool'],
    ]);
    // Fencing tokens are bigints: JSON carries them as strings, every digit kept.
    expect(listed.find((l) => l.kind === 'mutex')!.fencingToken).toBe(held.fencingToken.toString());
    expect((await cli('locks', '--match', 'orders:*')).stdout).toMatch(/^KIND\s+RESOURCE[^\n]*\nmutex\s+orders:1\s+worker-1\s/);

    expect(json(await cli('lock', 'orders:1', '--json'))).toMatchObject({ name: 'orders:1', locked: true, held: [{ kind: 'mutex', owner: 'worker-1' }] });
    expect((await cli('lock', 'free-one')).stdout).toMatch(/held:\s+no/);

    expect((await cli('force-unlock', 'orders:1')).code).toBe(EXIT.notConfirmed);
    expect((await locks.status('orders:1')).locked).toBe(true);
    expect((await cli('force-unlock', 'orders:1', '--yes')).stdout).toBe('mutex "orders:1" unlocked\n');
    expect((await locks.status('orders:1')).locked).toBe(false);
    const again = await cli('force-unlock', 'orders:1', '--yes');
    expect(again.code).toBe(EXIT.notFound);
    expect(again.stderr).toMatch(/is not held/);
  });

  it('limiters, limit and reset-limit read and reset an id without consuming', async () => {
    const limiter = new RateLimiter(redis, { name: 'api', limit: 5, windowMs: 60_000, prefix });
    for (let i = 0; i < 3; i++) await limiter.limit('user:1');
    await until(async () => (await RateLimiter.list(redis, { prefix })).length === 1);
    expect(json<{ name: string }[]>(await cli('limiters', '--json')).map((e) => e.name)).toEqual(['api']);

    const usage = json<{ rules: { used: number; remaining: number }[]; next: { allowed: boolean } }>(await cli('limit', 'api', 'user:1', '--rule', '5/1m', '--json'));
    expect(usage.rules).toEqual([expect.objectContaining({ used: 3, remaining: 2 })]);
    expect(usage.next.allowed).toBe(true);
    expect((await cli('limit', 'api', 'user:1', '--rule', '5/1m')).stdout).toMatch(/next request:\s+allowed/);
    // Reading consumed nothing.
    expect((await limiter.usage('user:1')).rules[0]!.used).toBe(3);

    expect((await cli('reset-limit', 'api', 'user:1', '--rule', '5/1m')).code).toBe(EXIT.notConfirmed);
    expect((await limiter.usage('user:1')).rules[0]!.used).toBe(3);
    expect((await cli('reset-limit', 'api', 'user:1', '--rule', '5/1m', '--yes')).code).toBe(0);
    expect((await limiter.usage('user:1')).rules[0]!.used).toBe(0);
  });

  it('limit and reset-limit read the rules a named limiter stored, without --rule', async () => {
    const limiter = new RateLimiter(redis, { name: 'login', rules: [{ limit: 3, windowMs: 3_600_000 }, { limit: 2, windowMs: 600_000 }], algorithm: 'gcra', prefix });
    await limiter.limit('ann');
    await limiter.limit('ann');
    await until(async () => (await RateLimiter.open(redis, 'login', { prefix })) !== undefined);
    const usage = json<{ rules: { limit: number; used: number }[]; next: { allowed: boolean } }>(await cli('limit', 'login', 'ann', '--json'));
    expect(usage.rules.map((r) => [r.limit, r.used])).toEqual([
      [3, 2],
      [2, 2],
    ]);
    expect(usage.next.allowed).toBe(false);
    expect((await cli('limit', 'login', 'ann')).stdout).toMatch(/next request:\s+refused/);
    // --rule still overrides what is stored: one rule of 5 per hour reads the first rule's counts.
    const overridden = json<{ rules: { limit: number }[] }>(await cli('limit', 'login', 'ann', '--rule', '5/1h', '--algorithm', 'gcra', '--json'));
    expect(overridden.rules.map((r) => r.limit)).toEqual([5]);
    expect((await cli('reset-limit', 'login', 'ann', '--yes')).code).toBe(0);
    expect((await limiter.usage('ann')).rules.map((r) => r.used)).toEqual([0, 0]);
    // An unknown limiter: a clear message and exit 3, with or without --rule.
    for (const args of [['limit', 'nope', 'u'], ['reset-limit', 'nope', 'u', '--yes']]) {
      const result = await cli(...args);
      expect(result.code).toBe(EXIT.notFound);
      expect(result.stderr).toMatch(/no rate limiter "nope".*--rule/);
    }
  });

  it('caches, cache and clear-cache show statistics and one entry, and clear', async () => {
    const cache = new SmartCache<string>(redis, { name: 'pages', maxSize: 100, prefix });
    closers.push(() => cache.close());
    await cache.set('home', '<html>', { ttlMs: 60_000, tags: ['front'] });
    await cache.get('home');
    await cache.get('missing');
    await until(async () => (await SmartCache.list(redis, { prefix })).length === 1);

    expect(json(await cli('caches', '--json'))).toEqual([expect.objectContaining({ name: 'pages', size: 1, hits: 1, misses: 1, hitRate: 0.5 })]);
    expect((await cli('cache', 'pages')).stdout).toMatch(/hit rate:\s+50\.0%/);
    expect(json(await cli('cache', 'pages', '--key', 'home', '--json'))).toMatchObject({ cache: 'pages', key: 'home', tags: ['front'], stale: false });
    expect((await cli('cache', 'pages', '--key', 'nope')).code).toBe(EXIT.notFound);

    expect((await cli('clear-cache', 'pages')).code).toBe(EXIT.notConfirmed);
    expect(await cache.has('home')).toBe(true);
    expect((await cli('clear-cache', 'pages', '--yes')).code).toBe(0);
    expect(await cache.has('home')).toBe(false);
  });
});

describe('cyredis without a server, and --help', () => {
  it('says in one line that Redis is unreachable, exit code 4', async () => {
    const port = await freePort();
    for (const args of [['--url', `redis://127.0.0.1:${port}`, 'queues'], ['--cluster', '--url', `redis://127.0.0.1:${port}`, 'locks']]) {
      const result = await run(args);
      expect(result.code).toBe(EXIT.unreachable);
      expect(result.stderr.trim().split('\n')).toHaveLength(1);
      expect(result.stderr).toMatch(/^cyredis: (cannot reach Redis at 127\.0\.0\.1:\d+|Redis is unreachable)/);
    }
    // REDIS_URL is the default of --url.
    expect((await run(['queues'], { REDIS_URL: `redis://127.0.0.1:${port}` })).stderr).toContain(`:${port}`);
    expect((await run(['--url', 'http://x', 'queues'])).code).toBe(EXIT.usage);
  });

  it('has --help on every command', async () => {
    const top = await run(['--help']);
    expect(top.code).toBe(0);
    expect(top.stdout).toMatch(/Exit codes: 0 ok/);
    // In-process for the rest: the same program, without a process start per command.
    for (const spec of COMMANDS) {
      let out = '';
      const io: Io = { ...processIo(), stdout: { write: (text: string) => (out += text) } };
      expect(await main([spec.name, '--help'], io), spec.name).toBe(EXIT.ok);
      expect(out).toContain(`Usage: cyredis ${spec.name}`);
      if (spec.destructive) expect(out).toContain('--yes');
    }
  });
});

describe('cyredis over TLS and with an ACL user', () => {
  const prefix = randomPrefix();

  it('connects with rediss:// and --tls-ca, and refuses an unverified certificate', async () => {
    const tls = testCertificates();
    const server = await RedisServer.start({ tls });
    try {
      const url = `rediss://127.0.0.1:${server.port}`;
      expect((await run(['--url', url, '--tls-ca', tls.ca, '--prefix', prefix, 'queues'])).code).toBe(0);
      const unverified = await run(['--url', url, '--prefix', prefix, 'queues']);
      expect(unverified.code).toBe(EXIT.unreachable);
      expect(unverified.stderr).toMatch(/certificate/);
      expect((await run(['--url', url, '--tls-insecure', '--prefix', prefix, 'queues'])).code).toBe(0);
    } finally {
      await server.stop();
    }
  });

  it('authenticates as the URL user, and says so when the password is wrong', async () => {
    const server = await RedisServer.start();
    try {
      await server.command('ACL', 'SETUSER', 'ops', 'on', '>s3cret', '~*', '&*', '+@all');
      await server.command('ACL', 'SETUSER', 'default', 'off');
      const ok = await run(['--url', `redis://ops:s3cret@127.0.0.1:${server.port}`, '--prefix', prefix, 'locks', '--json']);
      expect(ok.code).toBe(0);
      expect(JSON.parse(ok.stdout)).toEqual([]);
      const wrong = await run(['--url', `redis://ops:nope@127.0.0.1:${server.port}`, 'queues']);
      expect(wrong.code).toBe(EXIT.auth);
      expect(wrong.stderr).toMatch(/^cyredis: Redis refused the credentials/);
    } finally {
      await server.stop();
    }
  });
});
