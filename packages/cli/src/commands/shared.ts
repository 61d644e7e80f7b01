// What several commands share: opening a queue, limiter or cache by name (refusing unknown names), and job rows.
import { SmartCache } from '@cyredis/cache';
import { JobQueue, type JobInfo, type JobState } from '@cyredis/queue';
import { RateLimiter, type RateLimitAlgorithm, type RateLimitRule } from '@cyredis/ratelimit';
import type { OptionSpec, OptionValue } from '../command.js';
import type { Context } from '../context.js';
import { CliError, EXIT } from '../errors.js';
import { parseDuration, time } from '../output.js';

/** The states `jobs` takes. */
export const JOB_STATES: readonly JobState[] = ['waiting', 'delayed', 'active', 'completed', 'dead'];

/**
 * The queue `name`, when some process used it under the prefix within the last day (the registry
 * `JobQueue.list` reads): an unknown name is a `CliError` (exit 3), and no call is made on it, so a typo is
 * not recorded as a queue.
 */
export async function openQueue(ctx: Context, name: string): Promise<JobQueue> {
  if (!(await ctx.isRegistered((r, o) => JobQueue.list(r, o), name))) {
    throw new CliError(`no queue "${name}" under prefix "${ctx.options.prefix}" (none used it within a day; \`cyredis queues\` lists them)`, EXIT.notFound);
  }
  return new JobQueue(await ctx.redis(), name, { prefix: ctx.options.prefix, timeoutMs: ctx.options.timeoutMs });
}

/** The job `id` of `queue`, or a `CliError` (exit 3). */
export async function getJob(queue: JobQueue, id: string): Promise<JobInfo<unknown>> {
  const job = await queue.getJob(id);
  if (job === undefined) throw new CliError(`no job "${id}" in queue "${queue.name}"`, EXIT.notFound);
  return job;
}

/**
 * Runs a one-job action (`retryJob`, `promote`, `remove`) and explains a refusal: the job is unknown, or in
 * another state than the action needs (both exit 3).
 */
export async function jobAction(queue: JobQueue, id: string, action: () => Promise<boolean>, needs: string): Promise<void> {
  if (await action()) return;
  const job = await getJob(queue, id);
  throw new CliError(`job "${id}" is ${job.state}: ${needs}`, EXIT.notFound);
}

/** The columns of a job list. */
export const JOB_HEADERS = ['id', 'state', 'attempts', 'priority', 'created', 'ready', 'progress', 'failed reason'] as const;

/** One job as a row under `JOB_HEADERS`. */
export function jobRow(job: JobInfo<unknown>): unknown[] {
  return [job.id, job.state, `${job.attempts}/${job.maxRetries + 1}`, job.priority, time(job.createdAt), time(job.readyAt), job.progress, job.failedReason];
}

/** The registry lookup of a limiter name, or a `CliError` (exit 3). */
async function assertLimiter(ctx: Context, name: string): Promise<void> {
  if (!(await ctx.isRegistered((r, o) => RateLimiter.list(r, o), name))) {
    throw new CliError(`no rate limiter "${name}" under prefix "${ctx.options.prefix}" (\`cyredis limiters\` lists them)`, EXIT.notFound);
  }
}

/** The options that override a limiter's stored definition, for one defined before it was stored. */
export const LIMITER_OPTIONS: readonly OptionSpec[] = [
  { flags: '--rule <limit/window>', description: "override the limiter's stored rules, e.g. 100/1m (repeat for each rule, in order)", repeatable: true },
  { flags: '--algorithm <name>', description: 'with --rule: sliding-window, gcra or fixed-window', default: 'sliding-window' },
  { flags: '--block-ms <duration>', description: "with --rule: the limiter's blockMs, e.g. 10m (default: none)" },
];

function parseRule(text: string): RateLimitRule {
  const match = /^(\d+)\/(.+)$/.exec(text);
  if (!match) throw new CliError(`--rule: expected <limit>/<window>, e.g. 100/1m, got "${text}"`, EXIT.usage);
  return { limit: Number(match[1]), windowMs: parseDuration('--rule', match[2]!) };
}

/**
 * The named limiter as the application defined it (`RateLimiter.open`: read from Redis, recording nothing),
 * or rebuilt from `--rule`, `--algorithm` and `--block-ms` when `--rule` is given; an unknown name is a
 * `CliError` (exit 3).
 */
export async function openLimiter(ctx: Context, name: string, options: Readonly<Record<string, OptionValue>>): Promise<RateLimiter> {
  const rules = ((options.rule as string[] | undefined) ?? []).map(parseRule);
  const { prefix, timeoutMs } = ctx.options;
  if (rules.length === 0) {
    const opened = await RateLimiter.open(await ctx.redis(), name, { prefix, timeoutMs });
    if (opened === undefined) {
      throw new CliError(
        `no rate limiter "${name}" under prefix "${prefix}" (none used it within a day, or its definition is not stored: give its rules with --rule 100/1m …; \`cyredis limiters\` lists them)`,
        EXIT.notFound,
      );
    }
    return opened;
  }
  await assertLimiter(ctx, name);
  const algorithm = options.algorithm as RateLimitAlgorithm;
  const blockMs = options.blockMs === undefined ? undefined : parseDuration('--block-ms', options.blockMs as string);
  return new RateLimiter(await ctx.redis(), { rules, algorithm, prefix, timeoutMs, batch: false, ...(blockMs === undefined ? {} : { blockMs }) });
}

/** The cache `name` under the prefix, closed with the command. Its `maxSize` is unused by what the CLI calls (stats, inspect, clear). */
export async function cacheNamed(ctx: Context, name: string): Promise<SmartCache> {
  const cache = new SmartCache(await ctx.redis(), { name, maxSize: 1, prefix: ctx.options.prefix, timeoutMs: ctx.options.timeoutMs });
  ctx.onClose(() => cache.close());
  return cache;
}

/** The cache `name`, when some process used it under the prefix within the last day; else a `CliError` (exit 3). */
export async function openCache(ctx: Context, name: string): Promise<SmartCache> {
  if (!(await ctx.isRegistered((r, o) => SmartCache.list(r, o), name))) {
    throw new CliError(`no cache "${name}" under prefix "${ctx.options.prefix}" (\`cyredis caches\` lists them)`, EXIT.notFound);
  }
  return cacheNamed(ctx, name);
}
