// The dashboard's request handler: serves the page and its assets, the JSON API over the packages' public
// calls, and the live event stream; mounts in node:http, Express, Fastify and Hono under any base path.
import type { ServerResponse } from 'node:http';
import { SmartCache } from '@cyredis/cache';
import { assertOptions, assertRedisClient, CyRedisError, InvalidArgumentError, type RedisClient } from '@cyredis/core';
import { LockManager } from '@cyredis/lock';
import { JobQueue, type JobState } from '@cyredis/queue';
import { RateLimiter } from '@cyredis/ratelimit';
import { sendError, sendJson, type DashboardRequest } from './http.js';
import { LiveQueues } from './live.js';
import { serveStatic } from './static.js';

export type { DashboardRequest } from './http.js';
export type { Throughput } from './live.js';

/** Options of `createDashboard`. */
export interface DashboardOptions {
  /** The client every read and action goes through (a single node or a cluster); the caller closes it. */
  redis: RedisClient;
  /** Key prefix the queues, caches and limiters use. Default `cyredis`. */
  prefix?: string;
  /** Names of the queues shown. Default: the queues used under the prefix in the last day (`JobQueue.list`). */
  queues?: readonly string[];
  /** Names of the caches shown. Default: the caches used under the prefix in the last day (`SmartCache.list`). */
  caches?: readonly string[];
  /**
   * Limiters whose usage the page can look up by id; each needs a `name`, and its `recentRefusals` show when
   * it records them. Default: the named limiters used under the prefix in the last day (`RateLimiter.list`),
   * each opened from the definition it stored (`RateLimiter.open`) at every lookup.
   */
  limiters?: readonly RateLimiter[];
  /** Hides every action and refuses every request that would change something. Default false. */
  readOnly?: boolean;
  /**
   * Decides whether a request may see the dashboard at all (cookies, headers, client address…): false (or
   * a promise of false) answers 401 and shows nothing. Default: everyone may.
   */
  auth?: (req: DashboardRequest) => boolean | Promise<boolean>;
  /**
   * Where the dashboard is mounted, such as `/admin/queues`. Default: Express's `req.baseUrl` when Express
   * mounted the handler with `app.use(path, …)`, else `''` (the handler serves the whole server).
   */
  basePath?: string;
  /** The page title. Default `cyredis`. */
  title?: string;
}

/** A request handler for node:http and the frameworks that pass one through; `close` stops its event readers. */
export interface DashboardHandler {
  /**
   * Answers a request under the base path; calls `next` (or answers 404 without it) for anything else.
   * Resolves once the reply is written (an event stream: once it started).
   */
  (req: DashboardRequest, res: ServerResponse, next?: (err?: unknown) => void): Promise<void>;
  /** Ends the open event streams and closes the queue event readers (the Redis client stays open). */
  close(): Promise<void>;
}

const OPTIONS = ['redis', 'prefix', 'queues', 'caches', 'limiters', 'readOnly', 'auth', 'basePath', 'title'] as const;
const STATES: readonly JobState[] = ['waiting', 'delayed', 'active', 'completed', 'dead'];
/** Jobs on one page of a job list, at most. */
const MAX_PAGE = 100;
/** Queues a dashboard lists from the registry, at most. */
const MAX_QUEUES = 1000;
/** Limiters a dashboard lists from the registry, at most. */
const MAX_LIMITERS = 1000;
/** Held locks on one page. */
const LOCKS_PAGE = 100;
/** Log lines shown on a job page (the queue keeps its last 100). */
const LOG_LINES = 100;
/** A header only the page's own script sends: a form or image on another site cannot trigger an action. */
const ACTION_HEADER = 'x-cyredis-dashboard';

/** A route's answer: a JSON value, or an error status with a message. */
interface Reply {
  status: number;
  body: unknown;
}
type Route = (match: string[], query: URLSearchParams) => Promise<Reply>;

/**
 * Creates the dashboard's request handler. Mount it with `http.createServer(handler)`, Express
 * `app.use('/admin', handler)`, Fastify (`request.raw`, `reply.raw` after `reply.hijack()`) or Hono on Node
 * (`c.env.incoming`, `c.env.outgoing`); give `basePath` when the framework passes the full URL.
 */
export function createDashboard(options: DashboardOptions): DashboardHandler {
  const settings = readOptions(options);
  const { redis, prefix, readOnly } = settings;
  const queues = new Map<string, JobQueue>();
  const queueOf = (name: string): JobQueue => {
    let queue = queues.get(name);
    if (queue === undefined) {
      queue = new JobQueue(redis, name, { prefix });
      queues.set(name, queue);
    }
    return queue;
  };
  const live = new LiveQueues(queueOf, prefix);
  const configured = settings.limiters === undefined ? undefined : new Map(settings.limiters.map((l) => [l.name!, l]));
  const limiterNames = async (): Promise<string[]> =>
    configured === undefined ? (await RateLimiter.list(redis, { prefix, limit: MAX_LIMITERS })).map((e) => e.name).sort() : [...configured.keys()];
  // An opened limiter records nothing, so looking up a name never lists it as used.
  const limiterOf = async (name: string): Promise<RateLimiter> => {
    const limiter = configured === undefined ? await RateLimiter.open(redis, name, { prefix }) : configured.get(name);
    if (limiter !== undefined) return limiter;
    throw new NotFound(configured === undefined ? `no limiter "${name}" was used under this prefix within a day` : `no limiter "${name}" is configured in this dashboard`);
  };

  const locks = new LockManager(redis, { prefix });
  /** The queues shown: the configured ones, or those the registry listed last (read again on a miss). */
  let listed: readonly string[] = settings.queues ?? [];
  const queueNames = async (): Promise<readonly string[]> => {
    if (settings.queues === undefined) listed = (await JobQueue.list(redis, { prefix, limit: MAX_QUEUES })).map((e) => e.name).sort();
    return listed;
  };
  // A name is checked before any JobQueue is made for it: a queue's calls record its name in the registry.
  const shownQueue = async (name: string): Promise<JobQueue> => {
    if (!listed.includes(name) && !(await queueNames()).includes(name)) throw new NotFound(`no queue "${name}" is shown`);
    live.follow(name);
    return queueOf(name);
  };

  const get: [RegExp, Route][] = [
    [/^\/api\/config$/, async () => ok({ title: settings.title, readOnly, limiters: await limiterNames() })],
    [
      /^\/api\/queues$/,
      async () =>
        ok(
          await Promise.all(
            (await queueNames()).map(async (name) => {
              const queue = await shownQueue(name);
              const [counts, paused] = await Promise.all([queue.stats(), queue.isPaused()]);
              return { name, counts, paused, throughput: live.throughput(name) };
            }),
          ),
        ),
    ],
    [
      /^\/api\/queues\/([^/]+)\/jobs$/,
      async ([name], query) => {
        const queue = await shownQueue(name!);
        const state = query.get('state') ?? 'waiting';
        if (!STATES.includes(state as JobState)) throw new InvalidArgumentError('state', `must be one of ${STATES.join(', ')}`);
        const offset = intParam(query, 'offset', 0, Number.MAX_SAFE_INTEGER);
        const limit = intParam(query, 'limit', 25, MAX_PAGE);
        const [jobs, counts, paused] = await Promise.all([queue.getJobs(state as JobState, { offset, limit }), queue.stats(), queue.isPaused()]);
        return ok({ jobs, counts, paused, throughput: live.throughput(name!) });
      },
    ],
    [
      /^\/api\/queues\/([^/]+)\/jobs\/([^/]+)$/,
      async ([name, id]) => {
        const queue = await shownQueue(name!);
        const [job, logs] = await Promise.all([queue.getJob(id!), queue.getLogs(id!, { limit: LOG_LINES })]);
        if (job === undefined) throw new NotFound(`no job "${id}" in queue "${name}"`);
        return ok({ job, logs });
      },
    ],
    [
      /^\/api\/locks$/,
      async (_, query) => {
        const match = query.get('match') ?? undefined;
        const cursor = query.get('cursor') ?? undefined;
        return ok(await locks.listHeld({ limit: LOCKS_PAGE, ...(match ? { match } : {}), ...(cursor ? { cursor } : {}) }));
      },
    ],
    [
      /^\/api\/caches$/,
      async () => {
        const names = settings.caches ?? (await SmartCache.list(redis, { prefix })).map((e) => e.name);
        // maxSize only matters to writes, which this instance never makes; stats are read-only.
        const stats = await Promise.all(names.map((name) => new SmartCache(redis, { name, prefix, maxSize: 1 }).stats()));
        return ok(names.map((name, i) => {
          const { hits, misses, sets, evictions, size, hitRate } = stats[i]!;
          return { name, hits, misses, sets, evictions, size, hitRate };
        }));
      },
    ],
    [
      /^\/api\/limiters\/([^/]+)\/usage$/,
      async ([name], query) => {
        const limiter = await limiterOf(name!);
        const id = query.get('id');
        if (id === null || id === '') throw new InvalidArgumentError('id', 'is required');
        return ok(await limiter.usage(id));
      },
    ],
    [
      /^\/api\/limiters\/([^/]+)\/refusals$/,
      async ([name]) => {
        const limiter = await limiterOf(name!);
        return ok(await limiter.recentRefusals({ limit: 20 }).catch((err: unknown) => {
          // A limiter made without recordRefusals has no log: the page says so instead of listing nothing.
          if (err instanceof InvalidArgumentError) return null;
          throw err;
        }));
      },
    ],
  ];
  const post: [RegExp, Route][] = [
    [/^\/api\/queues\/([^/]+)\/pause$/, async ([name]) => done(await (await shownQueue(name!)).pause())],
    [/^\/api\/queues\/([^/]+)\/resume$/, async ([name]) => done(await (await shownQueue(name!)).resume())],
    [
      /^\/api\/queues\/([^/]+)\/clean$/,
      async ([name], query) => {
        const state = query.get('state');
        if (state !== 'completed' && state !== 'dead') throw new InvalidArgumentError('state', 'must be completed or dead');
        const olderThanMs = intParam(query, 'olderThanMs', 0, Number.MAX_SAFE_INTEGER);
        return done(await (await shownQueue(name!)).clean(state, { olderThanMs, limit: 1000 }));
      },
    ],
    [/^\/api\/queues\/([^/]+)\/jobs\/([^/]+)\/retry$/, async ([name, id]) => done(await (await shownQueue(name!)).retryJob(id!))],
    [/^\/api\/queues\/([^/]+)\/jobs\/([^/]+)\/promote$/, async ([name, id]) => done(await (await shownQueue(name!)).promote(id!))],
    [/^\/api\/queues\/([^/]+)\/jobs\/([^/]+)\/remove$/, async ([name, id]) => done(await (await shownQueue(name!)).remove(id!))],
  ];

  const handler = async (req: DashboardRequest, res: ServerResponse, next?: (err?: unknown) => void): Promise<void> => {
    const full = req.originalUrl ?? req.url ?? '/';
    const base = settings.basePath ?? req.baseUrl ?? '';
    const url = new URL(full, 'http://dashboard.invalid');
    if (!url.pathname.startsWith(base) || !['', '/'].includes(url.pathname.slice(base.length, base.length + 1))) {
      if (next) next();
      else sendError(res, 404, 'not found');
      return;
    }
    try {
      if (settings.auth !== undefined && !(await settings.auth(req))) {
        sendError(res, 401, 'not allowed');
        return;
      }
      const path = url.pathname.slice(base.length);
      if (path === '') {
        // Assets and API calls are relative to the page, so the page must end with a slash.
        res.writeHead(308, { location: `${url.pathname}/${url.search}` }).end();
        return;
      }
      if (req.method === 'GET' && path === '/api/events') {
        live.subscribe(res);
        for (const name of await queueNames()) live.follow(name);
        return;
      }
      if (!path.startsWith('/api/')) {
        if (req.method === 'GET' || req.method === 'HEAD') serveStatic(res, path, settings.title);
        else sendError(res, 405, 'method not allowed');
        return;
      }
      const routes = req.method === 'GET' ? get : req.method === 'POST' ? post : [];
      if (req.method === 'POST') {
        if (readOnly) return sendError(res, 403, 'the dashboard is read-only');
        if (req.headers[ACTION_HEADER] !== '1') return sendError(res, 403, `actions need the ${ACTION_HEADER} header`);
      }
      for (const [pattern, route] of routes) {
        const match = pattern.exec(path);
        if (match === null) continue;
        const { status, body } = await route(match.slice(1).map(decodeURIComponent), url.searchParams);
        sendJson(res, status, body);
        return;
      }
      sendError(res, 404, 'not found');
    } catch (err) {
      if (res.headersSent) return void res.end();
      if (err instanceof NotFound) sendError(res, 404, err.message);
      else if (err instanceof InvalidArgumentError || err instanceof URIError) sendError(res, 400, err.message);
      else sendError(res, err instanceof CyRedisError ? 503 : 500, err instanceof Error ? err.message : String(err));
    }
  };
  return Object.assign(handler, { close: () => Promise.all([live.close(), locks.close()]).then(() => undefined) });
}

/** A name or id the request names that the dashboard does not show. */
class NotFound extends Error {}

function ok(body: unknown): Promise<Reply> {
  return Promise.resolve({ status: 200, body });
}

/** An action's answer: what the queue call returned (true for calls that return nothing). */
function done(result: boolean | number | void): Reply {
  return { status: 200, body: { done: result ?? true } };
}

function intParam(query: URLSearchParams, name: string, fallback: number, max: number): number {
  const text = query.get(name);
  if (text === null) return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < 0 || value > max) throw new InvalidArgumentError(name, `must be an integer from 0 to ${max}`);
  return value;
}

interface Settings {
  redis: RedisClient;
  prefix: string | undefined;
  queues: readonly string[] | undefined;
  caches: readonly string[] | undefined;
  /** Absent: list them from the registry. */
  limiters: readonly RateLimiter[] | undefined;
  readOnly: boolean;
  auth: DashboardOptions['auth'];
  basePath: string | undefined;
  title: string;
}

function readOptions(options: DashboardOptions): Settings {
  assertOptions('options', options, OPTIONS, false);
  assertRedisClient('options.redis', options.redis);
  const { readOnly = false, auth, basePath, title = 'cyredis', limiters } = options;
  if (typeof readOnly !== 'boolean') throw new InvalidArgumentError('options.readOnly', 'must be a boolean');
  if (auth !== undefined && typeof auth !== 'function') throw new InvalidArgumentError('options.auth', 'must be a function of the request');
  if (basePath !== undefined && (typeof basePath !== 'string' || !/^(\/[^/?#]+)*$/.test(basePath))) {
    throw new InvalidArgumentError('options.basePath', 'must be empty or a path such as "/admin/queues" (no trailing slash)');
  }
  if (typeof title !== 'string') throw new InvalidArgumentError('options.title', 'must be a string');
  const names = (option: string, value: unknown): readonly string[] | undefined => {
    if (value === undefined) return undefined;
    if (!Array.isArray(value) || value.some((v) => typeof v !== 'string' || v === '')) {
      throw new InvalidArgumentError(option, 'must be an array of non-empty names');
    }
    return value as string[];
  };
  if (limiters !== undefined && (!Array.isArray(limiters) || limiters.some((l: RateLimiter) => typeof l?.usage !== 'function' || !l.name))) {
    throw new InvalidArgumentError('options.limiters', 'must be an array of RateLimiter instances, each with a name');
  }
  return {
    redis: options.redis,
    prefix: options.prefix,
    queues: names('options.queues', options.queues),
    caches: names('options.caches', options.caches),
    limiters,
    readOnly,
    auth,
    basePath,
    title,
  };
}
