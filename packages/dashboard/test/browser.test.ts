import { mkdirSync } from 'node:fs';
import { SmartCache } from '@cyredis/cache';
import { randomPrefix, waitFor } from '@cyredis/testing';
import { deleteByPrefix, suiteClient, topologies } from '@cyredis/testing/context';
import { LockManager } from '@cyredis/lock';
import { JobQueue, Worker } from '@cyredis/queue';
import { RateLimiter } from '@cyredis/ratelimit';
import { chromium, type Browser, type Page, type Route } from 'playwright-core';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { serveDashboard, type DashboardServer, type ServeOptions } from '../src/index.js';

/** Debian's chromium (installed by .ci/run); CHROMIUM_PATH points elsewhere. */
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'];
/** What the tests read in the page (the test project has no DOM types). */
interface BrowserGlobals {
  document: { body: { dataset: Record<string, string | undefined> } };
  __pwned?: number;
}
/** Screenshots of the main pages, kept as test artifacts (gitignored). */
const ARTIFACTS = new URL('../test-artifacts/', import.meta.url);

// Issue 18: the dashboard in a real browser, against a private Redis with real queues and workers.
describe.each(topologies)('the dashboard in Chromium on %s', (topology) => {
  const redis = suiteClient(topology);
  let browser: Browser;
  let prefix: string;
  let server: DashboardServer | undefined;
  let page: Page;
  /** What the page's CSP refused: the page must need nothing it refuses. */
  let refused: string[];
  const closers: (() => Promise<unknown>)[] = [];

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
  });
  afterAll(async () => {
    await browser?.close();
  });
  beforeEach(async () => {
    prefix = randomPrefix();
    page = await browser.newPage({ viewport: { width: 1200, height: 720 } });
    // Actions that remove something ask first; the tests say yes.
    page.on('dialog', (dialog) => void dialog.accept());
    refused = [];
    page.on('console', (message) => {
      if (message.text().includes('Content Security Policy')) refused.push(message.text());
    });
  });
  afterEach(async () => {
    expect(refused).toEqual([]);
    await page.close();
    for (const close of closers.splice(0).reverse()) await close();
    await server?.close();
    server = undefined;
    await deleteByPrefix(redis, prefix);
  });

  const start = async (options: Partial<ServeOptions> = {}): Promise<string> => {
    server = await serveDashboard({ redis, prefix, queues: ['mail'], port: 0, ...options });
    return server.url;
  };
  const open = () => new JobQueue<unknown, unknown>(redis, 'mail', { prefix });
  const shot = (name: string) => page.screenshot({ path: new URL(`${topology}-${name}.png`, ARTIFACTS).pathname, fullPage: true });
  /** Opens a route of the page and waits until it rendered. */
  const visit = async (url: string, hash: string): Promise<void> => {
    await page.goto(`${url}${hash}`);
    await page.waitForFunction((h) => (globalThis as unknown as BrowserGlobals).document.body.dataset.rendered === h, hash);
  };
  const text = (testId: string) => page.getByTestId(testId).textContent();

  it('shows counts that change while jobs run, pushed live without polling', async () => {
    const url = await start();
    const queue = open();
    for (let i = 0; i < 20; i++) await queue.push({ n: i }, { id: `job-${i}` });
    const listings: string[] = [];
    page.on('request', (req) => {
      if (req.url().includes('/api/queues')) listings.push(req.url());
    });
    await visit(url, '#/');
    await page.locator('#live.on').waitFor();
    expect(await text('count-mail-waiting')).toBe('20');
    expect(await text('count-mail-completed')).toBe('0');

    const worker = new Worker(queue, async () => new Promise((resolve) => setTimeout(() => resolve({ ok: true }), 30)), { blockMs: 100 });
    closers.push(() => worker.close());
    // Completions per minute, from the chart's title (the counts and the chart come in one pushed update).
    const perMinute = async () =>
      (await page.locator('[data-queue="mail"] .spark').getAttribute('title'))!.replace(' per minute', '').split(', ').map(Number);
    // The 20 completions fall in this minute, or in the one before when the run crossed a minute's end.
    const lastTwo = async () => (await perMinute()).slice(-2).reduce((sum, n) => sum + n, 0);
    await waitFor(async () => (await text('count-mail-completed')) === '20' && (await text('count-mail-waiting')) === '0' && (await lastTwo()) === 20, {
      timeoutMs: 30_000,
      message: 'the page shows every job completed, in the chart too',
    });
    const perMinuteNow = await perMinute();
    expect(await text('rate-mail')).toBe(`${perMinuteNow.at(-1)}/min`);
    expect(listings).toHaveLength(1);
    // The bar of the minute that holds most of them stands above the empty minutes before it.
    const bars = page.locator('[data-queue="mail"] .spark span');
    const busiest = perMinuteNow.at(-1)! >= perMinuteNow.at(-2)! ? bars.last() : bars.nth(perMinuteNow.length - 2);
    expect((await busiest.boundingBox())!.height).toBeGreaterThan((await bars.first().boundingBox())!.height);
    await shot('queues');

    await visit(url, '#/queue/mail?state=completed');
    expect(await page.getByTestId('jobs').locator('tbody tr').count()).toBe(20);
    await shot('completed-jobs');
  });

  it('retries a dead job from its page, which then completes', async () => {
    const url = await start();
    const queue = open();
    let runs = 0;
    const worker = new Worker(queue, async (job) => {
      runs++;
      await job.log(`run ${runs}`);
      if (runs === 1) throw new Error('mailbox full');
      return 'sent';
    }, { blockMs: 100 });
    closers.push(() => worker.close());
    await queue.push({ to: 'ops@example.com' }, { id: 'flaky', maxRetries: 0 });
    await waitFor(async () => (await queue.getJob('flaky'))?.state === 'dead');

    await visit(url, '#/queue/mail/job/flaky');
    expect(await text('job-state')).toBe('dead');
    expect(await text('job-error')).toBe('mailbox full');
    expect(await text('job-logs')).toBe('run 1');
    await shot('dead-job');
    await page.getByRole('button', { name: 'Retry' }).click();
    await page.getByTestId('job-state').filter({ hasText: 'completed' }).waitFor({ timeout: 30_000 });
    expect(await text('job-logs')).toBe('run 1\nrun 2');
    expect((await queue.getJob('flaky'))!.returnValue).toBe('sent');
    await shot('completed-job');
  });

  it('keeps a change pushed while a page loads, and shows it', async () => {
    const url = await start();
    const queue = open();
    await queue.push({ to: 'ops@example.com' }, { id: 'late' });
    await visit(url, '#/queue/mail/job/late');
    await page.locator('#live.on').waitFor();
    expect(await text('job-state')).toBe('waiting');
    // A second listener in the page tells the test when the job's completion has been pushed.
    await page.evaluate(`new Promise((resolve) => {
      const events = new EventSource('api/events');
      window.completionPushed = new Promise((pushed) => events.addEventListener('job', (e) => {
        if (JSON.parse(e.data).event === 'completed') pushed(events.close());
      }));
      events.addEventListener('open', resolve);
    })`);
    // The next load of the job gets what Redis held before the job ran, answered only after its completion
    // was pushed: the page must still end up showing the completed job.
    const intercepted = new Promise<Route>((resolve) => void page.route('**/queues/mail/jobs/late', resolve, { times: 1 }));
    await page.evaluate(`location.hash = '#/queue/mail/job/late?again'`);
    const route = await intercepted;
    const stale = await route.fetch();
    const worker = new Worker(queue, () => Promise.resolve('sent'), { blockMs: 100 });
    closers.push(() => worker.close());
    await page.evaluate('window.completionPushed');
    await route.fulfill({ response: stale });
    await page.getByTestId('job-state').filter({ hasText: 'completed' }).waitFor({ timeout: 10_000 });
  });

  it('hides every action in read-only mode', async () => {
    const queue = open();
    await queue.push({}, { id: 'later', delayMs: 600_000 });
    await queue.push({}, { id: 'dies', maxRetries: 0 });
    await queue.fail((await queue.pop(1))[0]!, new Error('no'));
    const views = ['#/queue/mail?state=waiting', '#/queue/mail?state=dead', '#/queue/mail/job/later', '#/queue/mail/job/dies'];
    const buttons = async (url: string): Promise<number> => {
      let total = 0;
      for (const view of views) {
        await visit(url, view);
        total += await page.locator('button[data-action]').count();
      }
      return total;
    };
    // The same views with actions allowed have them (pause, clean, promote, retry, remove), so zero means hidden.
    expect(await buttons(await start())).toBeGreaterThanOrEqual(6);
    await server!.close();
    expect(await buttons(await start({ readOnly: true }))).toBe(0);
    await shot('read-only');
  });

  it('shows nothing when the auth hook refuses', async () => {
    const url = await start({ auth: (req) => req.headers.cookie === 'session=ok' });
    const refused = await page.goto(url);
    expect(refused!.status()).toBe(401);
    expect(await page.locator('#main').count()).toBe(0);
    await page.context().addCookies([{ name: 'session', value: 'ok', url }]);
    // A new document: the refused one at the same URL would take `#/` as an in-page jump.
    await page.goto('about:blank');
    await visit(url, '#/');
    expect(await page.locator('#main table').count()).toBe(1);
  });

  it('shows job data with markup as text', async () => {
    const url = await start();
    const evil = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">';
    await open().push({ html: evil }, { id: '<b>bold</b>' });
    await visit(url, '#/queue/mail?state=waiting');
    expect(await page.getByTestId('jobs').textContent()).toContain(evil.replaceAll('"', '\\"'));
    await visit(url, `#/queue/mail/job/${encodeURIComponent('<b>bold</b>')}`);
    expect(JSON.parse((await text('job-data'))!)).toEqual({ html: evil });
    expect(await page.locator('h1').textContent()).toContain('<b>bold</b>');
    expect(await page.locator('main img, main script, main b').count()).toBe(0);
    expect(await page.evaluate(() => typeof (globalThis as unknown as BrowserGlobals).__pwned)).toBe('undefined');
    await shot('untrusted-data');
  });

  it('shows the held locks', async () => {
    const locks = new LockManager(redis, { prefix });
    closers.push(() => locks.close());
    const lock = await locks.acquire('invoice:42', { ttlMs: 60_000 });
    const url = await start();
    await visit(url, '#/locks');
    const row = page.locator('[data-lock="invoice:42"] td');
    expect(await row.allTextContents()).toEqual(['invoice:42', 'mutex', lock.owner, '1', expect.any(String), String(lock.fencingToken)]);
    await shot('locks');
    await lock.release();
    await page.getByRole('button', { name: 'Refresh' }).click();
    await page.getByText('No lock is held.').waitFor();
  });

  it('shows cache statistics and looks up a rate limit', async () => {
    const cache = new SmartCache<string>(redis, { name: 'pages', maxSize: 100, prefix });
    closers.push(() => cache.close());
    await cache.set('home', '<html>');
    for (const key of ['home', 'home', 'home', 'missing']) await cache.get(key);
    const limiter = new RateLimiter(redis, { name: 'api', limit: 3, windowMs: 60_000, prefix, recordRefusals: true });
    for (let i = 0; i < 4; i++) await limiter.limit('user-7');
    const url = await start({ limiters: [limiter], caches: ['pages'] });
    await visit(url, '#/caches');
    expect(await text('hitrate-pages')).toBe('75.0 %');
    await shot('caches');
    await visit(url, '#/limits');
    await page.getByLabel('id').fill('user-7');
    await page.getByRole('button', { name: 'Look up' }).click();
    await page.getByTestId('limit-next').waitFor();
    expect(await text('limit-next')).toBe('would be refused');
    expect(await page.getByTestId('usage').locator('tbody td').allTextContents()).toEqual(['0', '3', '0', '3', '60000', expect.any(String)]);
    await page.getByText('user-7', { exact: false }).last().waitFor();
    await shot('limits');
  });

  it('looks up a rate limit by id in the default setup, where limiters come from Redis', async () => {
    const limiter = new RateLimiter(redis, { name: 'login', rules: [{ limit: 2, windowMs: 60_000 }, { limit: 10, windowMs: 3_600_000 }], prefix });
    for (let i = 0; i < 2; i++) await limiter.limit('ann');
    await waitFor(async () => (await RateLimiter.open(redis, 'login', { prefix })) !== undefined, { message: 'the definition is stored' });
    const url = await start({ queues: undefined });
    await visit(url, '#/limits');
    expect(await page.getByLabel('limiter').locator('option').allTextContents()).toEqual(['login']);
    await page.getByLabel('id').fill('ann');
    await page.getByRole('button', { name: 'Look up' }).click();
    await page.getByTestId('limit-next').waitFor();
    expect(await text('limit-next')).toBe('would be refused');
    const cells = await page.getByTestId('usage').locator('tbody tr').allTextContents();
    expect(cells).toHaveLength(2);
  });
});
