import { randomPrefix } from '@cyredis/testing';
import { deleteByPrefix, suiteClient, topologies } from '@cyredis/testing/context';
import { JobQueue } from '@cyredis/queue';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createDashboard, type DashboardHandler } from '../src/index.js';
import { act, frameworks, mount, readEvents, type Mounted } from './helpers.js';

// Issue 18: one handler that mounts in node:http, Express, Fastify and Hono under any base path.
describe.each(topologies)('the handler mounted on %s', (topology) => {
  const redis = suiteClient(topology);
  let prefix: string;
  let handler: DashboardHandler;
  let mounted: Mounted;

  beforeEach(() => {
    prefix = randomPrefix();
  });
  afterEach(async () => {
    await mounted?.close();
    await handler?.close();
    await deleteByPrefix(redis, prefix);
  });

  describe.each(frameworks)('in %s', (framework) => {
    const base = '/ops/jobs';
    const start = async (): Promise<JobQueue> => {
      handler = createDashboard({ redis, prefix, queues: ['mail'], basePath: framework === 'express' ? undefined : base, title: 'Ops <board>' });
      mounted = await mount(framework, handler, base);
      return new JobQueue(redis, 'mail', { prefix });
    };

    it('serves the page, its assets and the API under the base path', async () => {
      const queue = await start();
      await queue.push({ to: 'a' }, { id: 'a' });
      await queue.push({ to: 'b' }, { id: 'b', delayMs: 60_000 });

      const page = await fetch(mounted.url);
      expect(page.status).toBe(200);
      expect(page.headers.get('content-security-policy')).toContain("script-src 'self'");
      const html = await page.text();
      expect(html).toContain('<title>Ops &#60;board&#62;</title>');
      expect(html).toContain('src="assets/app.js"');
      const script = await fetch(new URL('assets/app.js', mounted.url));
      expect(script.headers.get('content-type')).toMatch(/^text\/javascript/);
      expect(await script.text()).toContain('textContent');
      expect((await fetch(new URL('assets/app.css', mounted.url))).status).toBe(200);

      const withoutSlash = await fetch(mounted.url.slice(0, -1), { redirect: 'manual' });
      expect(withoutSlash.status).toBe(308);
      expect(withoutSlash.headers.get('location')).toBe(base + '/');

      const queues = (await (await fetch(new URL('api/queues', mounted.url))).json()) as { name: string; counts: Record<string, number> }[];
      expect(queues).toMatchObject([{ name: 'mail', counts: { waiting: 1, delayed: 1 }, paused: false }]);
      const jobs = (await (await fetch(new URL('api/queues/mail/jobs?state=delayed', mounted.url))).json()) as { jobs: { id: string }[] };
      expect(jobs.jobs.map((j) => j.id)).toEqual(['b']);
      expect((await fetch(new URL('api/nothing', mounted.url))).status).toBe(404);
    });

    it('runs actions sent with the page header only', async () => {
      const queue = await start();
      const pause = new URL('api/queues/mail/pause', mounted.url).href;
      expect((await fetch(pause, { method: 'POST' })).status).toBe(403);
      expect(await queue.isPaused()).toBe(false);
      expect(await (await act(pause)).json()).toEqual({ done: true });
      expect(await queue.isPaused()).toBe(true);
      await act(new URL('api/queues/mail/resume', mounted.url).href);
      expect(await queue.isPaused()).toBe(false);
    });

    it('pushes job events and counts over the event stream', async () => {
      const queue = await start();
      const frames = readEvents(new URL('api/events', mounted.url).href, (seen) =>
        seen.some((f) => f.event === 'job' && f.data.jobId === 'live' && f.data.event === 'added') &&
        seen.some((f) => f.event === 'counts' && (f.data.counts as { waiting: number }).waiting === 1));
      // Pushed before or after the stream connects: the reader starts minutes back in the queue's events.
      await queue.push({ to: 'live' }, { id: 'live' });
      const seen = await frames;
      expect(seen.find((f) => f.event === 'counts')!.data).toMatchObject({ queue: 'mail', paused: false });
    });
  });

  it('leaves other paths to the framework', async () => {
    handler = createDashboard({ redis, prefix, queues: [] });
    mounted = await mount('express', handler, '/ops');
    const other = await fetch(new URL('/other', mounted.url));
    expect(await other.text()).toBe('other route');
  });

  it('answers 404 outside its base path when nothing comes next', async () => {
    handler = createDashboard({ redis, prefix, queues: [], basePath: '/ops' });
    mounted = await mount('node:http', handler, '/ops');
    expect((await fetch(new URL('/elsewhere', mounted.url))).status).toBe(404);
    expect((await fetch(new URL('/opsx/', mounted.url))).status).toBe(404);
    expect((await fetch(mounted.url)).status).toBe(200);
  });
});
