// A bull-board queue adapter, so a cyredis JobQueue shows in an existing bull-board next to BullMQ queues.
import { BaseAdapter } from '@bull-board/api/dist/queueAdapters/base.js';
import type {
  AppJobScheduler,
  JobCleanStatus,
  JobCounts,
  JobRetryStatus,
  JobSchedulerUpdateResult,
  JobState as BoardJobState,
  JobStatus,
  QueueAdapterOptions,
  QueueJob,
  QueueJobJson,
  QueueJobOptions,
  QueueMetrics,
  Status,
} from '@bull-board/api/typings/app';
import { InvalidArgumentError } from '@cyredis/core';
import type { JobInfo, JobQueue, JobState } from '@cyredis/queue';

/** bull-board's statuses of a cyredis queue: `failed` is the dead letters (a job waiting for a retry is `delayed`). */
const STATUSES = ['latest', 'active', 'waiting', 'delayed', 'failed', 'completed'] as const satisfies readonly Status[];
const JOB_STATUSES = STATUSES.filter((s) => s !== 'latest') as JobStatus[];
const STATE_OF: Partial<Record<JobStatus, JobState>> = { active: 'active', waiting: 'waiting', delayed: 'delayed', failed: 'dead', completed: 'completed' };
const STATUS_OF: Record<JobState, BoardJobState> = { active: 'active', waiting: 'waiting', delayed: 'delayed', dead: 'failed', completed: 'completed' };
/** Jobs one queue call moves or lists at most. */
const BATCH = 1000;

/** What bull-board may be told about the adapter (bull-board's own adapter options). */
export type CyredisAdapterOptions = Partial<Omit<QueueAdapterOptions, 'allowRetries'>>;

/**
 * Shows a cyredis `JobQueue` in bull-board (`createBullBoard({ queues: [new CyredisAdapter(queue)] })`). It
 * calls only the queue's public API. Dead jobs appear as `failed`; retries of dead jobs, promote, remove,
 * pause, resume, empty, clean (completed and failed) and adding jobs work. Not offered: retrying completed
 * jobs, metrics, worker lists, global concurrency and editing schedulers (the board hides or skips them).
 */
export class CyredisAdapter extends BaseAdapter {
  constructor(
    private readonly queue: JobQueue,
    options: CyredisAdapterOptions = {},
  ) {
    // bull-board's UI knows the queue types 'bull' and 'bullmq'; a cyredis queue has BullMQ's states.
    super('bullmq', { ...options, allowCompletedRetries: false });
  }

  /** The queue's name, as bull-board lists it. */
  getName(): string {
    return this.queue.name;
  }

  /** Statuses the board shows tabs for. */
  getStatuses(): Status[] {
    return [...STATUSES];
  }

  /** Statuses a job can be in. */
  getJobStatuses(): JobStatus[] {
    return [...JOB_STATUSES];
  }

  /** Counts per status, from the queue's O(1) `stats` (`completed` counts every completion, kept or not). */
  async getJobCounts(): Promise<JobCounts> {
    const s = await this.queue.stats();
    return { active: s.processing, waiting: s.waiting, delayed: s.delayed + s.failed, failed: s.dead, completed: s.completed };
  }

  /** The jobs at positions `start` to `end` (inclusive) of each status, in the queue's order for it. */
  async getJobs(statuses: JobStatus[], start = 0, end = 9): Promise<QueueJob[]> {
    const limit = Math.min(BATCH, Math.max(1, end - start + 1));
    const pages = await Promise.all(statuses.map((status) => {
      const state = STATE_OF[status];
      return state === undefined ? Promise.resolve([]) : this.queue.getJobs(state, { offset: start, limit });
    }));
    return pages.flat().map((job) => this.wrap(job));
  }

  /** One job, or undefined when the queue keeps none with this id. */
  async getJob(id: string): Promise<QueueJob | undefined> {
    const job = await this.queue.getJob(id);
    return job === undefined ? undefined : this.wrap(job);
  }

  /** The job's kept log lines, oldest first. */
  getJobLogs(id: string): Promise<string[]> {
    return this.queue.getLogs(id, { limit: 100 });
  }

  /** Pushes a job (`name` is not kept: cyredis jobs have an id and data only). */
  async addJob(_name: string, data: unknown, options: QueueJobOptions): Promise<QueueJob> {
    const id = await this.queue.push(data, {
      ...(options.delay ? { delayMs: options.delay } : {}),
      ...(options.attempts ? { maxRetries: options.attempts - 1 } : {}),
    });
    const job = await this.queue.getJob(id);
    if (job === undefined) throw new Error(`job ${id} was pushed but is gone already`);
    return this.wrap(job);
  }

  /** Removes finished jobs older than `graceTimeMs`: `completed`, or `failed` (the dead letters). */
  async clean(status: JobCleanStatus, graceTimeMs: number): Promise<void> {
    if (status !== 'completed' && status !== 'failed') throw new InvalidArgumentError('status', 'cyredis cleans completed and failed (dead) jobs only');
    const state = status === 'failed' ? 'dead' : 'completed';
    while ((await this.queue.clean(state, { olderThanMs: graceTimeMs, limit: BATCH })) === BATCH);
  }

  /** Whether workers are stopped from fetching. */
  isPaused(): Promise<boolean> {
    return this.queue.isPaused();
  }

  /** Stops every worker from fetching. */
  pause(): Promise<void> {
    return this.queue.pause();
  }

  /** Lets workers fetch again. */
  resume(): Promise<void> {
    return this.queue.resume();
  }

  /** Removes every waiting and delayed job. */
  async empty(): Promise<void> {
    await this.queue.drain({ delayed: true });
  }

  /** Deletes the whole queue (`force`: even with jobs running). */
  async obliterate(options: { force?: boolean } = {}): Promise<void> {
    await this.queue.obliterate({ force: options.force === true });
  }

  /** Makes every delayed job (and every job waiting for a retry) ready now. */
  async promoteAll(): Promise<void> {
    for (;;) {
      const page = await this.queue.getJobs('delayed', { limit: BATCH });
      const moved = await Promise.all(page.map((job) => this.queue.promote(job.id)));
      // A job promoted by someone else meanwhile is not counted; stop when a page moves nothing.
      if (page.length < BATCH || !moved.includes(true)) return;
    }
  }

  /** The queue's schedulers, in bull-board's shape. */
  async getJobSchedulers(): Promise<Omit<AppJobScheduler, 'queueName'>[]> {
    return (await this.queue.getSchedulers()).map((s) => ({
      id: s.id,
      name: s.id,
      next: s.nextRunAt,
      ...(s.cron === undefined ? {} : { pattern: s.cron }),
      ...(s.tz === undefined ? {} : { tz: s.tz }),
      ...(s.everyMs === undefined ? {} : { every: s.everyMs }),
      template: { data: s.template.data, opts: { priority: s.template.priority, attempts: s.template.maxRetries + 1 } },
    }));
  }

  /** How many schedulers the queue has. */
  async getJobSchedulersCount(): Promise<number> {
    return (await this.queue.getSchedulers()).length;
  }

  /** Removes a scheduler: true when there was one. */
  removeJobScheduler(id: string): Promise<boolean> {
    return this.queue.removeScheduler(id);
  }

  /** Not offered (`supportsJobSchedulerUpdate` is false, so the board never asks). */
  updateJobScheduler(): Promise<JobSchedulerUpdateResult> {
    return Promise.reject(new Error('editing a cyredis scheduler from bull-board is not supported: use upsertScheduler'));
  }

  /** Not offered (`supportsJobSchedulerRun` is false, so the board never asks). */
  runJobSchedulerNow(): Promise<QueueJob | 'not-found'> {
    return Promise.reject(new Error('running a cyredis scheduler from bull-board is not supported'));
  }

  /** Not kept by cyredis (follow `QueueEvents` for throughput); the board shows no chart. */
  getMetrics(): Promise<QueueMetrics> {
    return Promise.reject(new Error('cyredis keeps no metrics buffer'));
  }

  /** The `INFO` of the Redis the queue uses (one node of a cluster). */
  getRedisInfo(): Promise<string> {
    return this.queue.redis.info();
  }

  /** Not readable through the queue's API: the board shows none. */
  getGlobalConcurrency(): Promise<number | null> {
    return Promise.resolve(null);
  }

  /** Not settable from outside: `globalConcurrency` is an option every instance of the queue is given. */
  setGlobalConcurrency(): Promise<void> {
    return Promise.reject(new Error('set globalConcurrency in the JobQueue options of every process'));
  }

  private wrap(info: JobInfo<unknown>): QueueJob {
    const queue = this.queue;
    const json: QueueJobJson = {
      id: info.id,
      name: '',
      progress: info.progress,
      attemptsMade: info.attempts,
      finishedOn: info.finishedAt ?? null,
      processedOn: info.processedAt ?? null,
      timestamp: info.createdAt ?? 0,
      ...(info.readyAt !== undefined && info.createdAt !== undefined ? { delay: Math.max(0, info.readyAt - info.createdAt) } : {}),
      failedReason: info.failedReason ?? '',
      stacktrace: null,
      data: info.data,
      returnvalue: info.returnValue,
      opts: { attempts: info.maxRetries + 1, priority: info.priority },
      priority: info.priority,
    };
    return {
      opts: json.delay === undefined ? {} : { delay: json.delay },
      toJSON: () => json,
      getState: () => Promise.resolve(STATUS_OF[info.state]),
      async promote() {
        await queue.promote(info.id);
      },
      async remove() {
        await queue.remove(info.id);
      },
      async retry(state?: JobRetryStatus) {
        if (state === 'completed') throw new InvalidArgumentError('state', 'a completed cyredis job cannot be retried');
        await queue.retryJob(info.id);
      },
    };
  }
}
