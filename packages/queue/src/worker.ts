// The Worker: runs a handler over a queue's jobs with leases, batched completions and poisoned-call skipping.
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import {
  assertInteger,
  assertOptions,
  assertTimeoutMs,
  duplicateClient,
  InvalidArgumentError,
  optionalMs,
  RedisUnavailableError,
  TickBatcher,
  type OperationContext,
  type RedisClient,
} from '@cyredis/core';
import { JobTimeoutError, LeaseLostError, RateLimitedError, WorkerClosedError } from './errors.js';
import { JobQueue, LIMITS, type FailOutcome, type Job, type RequestId } from './queue.js';
import { PROCESS } from './tracing.js';

/**
 * Runs one job; `signal` aborts on timeout, a lost lease or `close()`. Throwing fails the job; what it
 * returns is kept with the completed job (`returnValue`, through the queue's codec).
 */
export type JobHandler<T, R = unknown> = (job: Job<T>, signal: AbortSignal) => R | undefined | Promise<R | undefined>;

/** Options of `new Worker(…)`. */
export interface WorkerOptions {
  /** Jobs run at once. Default 1, at most 1000. */
  concurrency?: number;
  /** Lease per job in ms, renewed every third of it while the job runs. Default: the queue's (30 000). */
  leaseMs?: number;
  /** Abort the job's signal and fail it after this many ms. Default: no limit. */
  timeoutMs?: number;
  /** Longest single wait on the idle connection, in ms. Default 5000. */
  blockMs?: number;
}

const WORKER_OPTIONS = ['concurrency', 'leaseMs', 'timeoutMs', 'blockMs'] as const;

/** Options of `close`. */
export interface CloseOptions {
  /** How long to wait for running jobs before aborting and releasing them, in ms. Default: the lease. */
  timeoutMs?: number;
}

/** The events a worker emits, with their arguments. */
export interface WorkerEvents<T> {
  /** The job's handler finished and its completion was accepted (once per job). */
  completed: [job: Job<T>];
  /** The job failed and will be retried after its backoff. */
  failed: [job: Job<T>, error: unknown];
  /** The job failed with no attempts left and is in the dead letter set. */
  dead: [job: Job<T>, error: unknown];
  /** The worker lost the job's lease (it ran too long or Redis was unreachable); another run may follow. */
  lost: [job: Job<T>];
  /**
   * A Redis call failed, in the loop or in the background (a job whose data does not decode could not be
   * dead-lettered: it comes back when its lease ends); the worker keeps going. Once per distinct error until
   * a call succeeds again, and emitted only while someone listens. Outages are `RedisUnavailableError` (or
   * its `RedisTimeoutError`).
   */
  error: [error: unknown];
}

const MAX_ACKS_IN_FLIGHT = 2;

/** How a call repeated until answered ended: answered, given up as poisoned, or cut short by `close`. */
type RepeatResult<R> = { reply: R } | 'skipped' | 'closed';

interface Running<T, R> {
  job: Job<T>;
  /** What the handler returned (undefined: nothing to keep). */
  value: R | undefined;
  controller: AbortController;
  timer: NodeJS.Timeout | undefined;
  /** The outcome was decided (completion queued, failed, lost or released). */
  settled: boolean;
}

/**
 * Runs a handler over a queue's jobs with up to `concurrency` at once. Leases are renewed while a job
 * runs; finished jobs are completed in batches together with the fetch of the next ones; an idle worker
 * blocks on Redis (one extra connection) until a job is pushed or the next delayed job is due.
 */
export class Worker<T = unknown, R = unknown> extends EventEmitter<WorkerEvents<T>> {
  /** Jobs run at once. */
  readonly concurrency: number;
  /** Lease per job, in ms. */
  readonly leaseMs: number;
  private readonly timeoutMs: number | undefined;
  private readonly blockMs: number;
  private readonly running = new Set<Running<T, R>>();
  /** Handlers running plus finished jobs whose completion is not sent yet. */
  private busy = 0;
  /** Jobs asked for by a fetch in flight. */
  private reserved = 0;
  /** Finished jobs whose completion waits for a free `ack` call. */
  private acks: Running<T, R>[] = [];
  /** `ack` calls in flight. */
  private acking = 0;
  /** Collects the jobs that finish in one tick (their continuations were queued together) into `acks`. */
  private readonly finished = new TickBatcher<Running<T, R>, void>((batch) => this.queueAcks(batch), LIMITS.maxBatch);
  /** Completions per `ack` call: two calls of half the concurrency overlap Redis work with handler work. */
  private readonly ackBatch: number;
  private closing = false;
  /** Unused controllers whose signals exist already (see `prepareSignals`). */
  private spare: AbortController[] = [];
  private preparing = false;
  private closed: Promise<void> | undefined;
  private blocking: RedisClient | undefined;
  private readonly loop: Promise<void>;
  private readonly renewTimer: NodeJS.Timeout;
  private waiters: (() => void)[] = [];
  /** Prefix of this worker's request lanes, which make its fetch and ack calls safe to resend. */
  private readonly lanePrefix = `${randomUUID()}:`;
  private lanesMade = 0;
  /** Lanes whose last call was answered: Redis keeps one memo per lane, so only these may be reused. */
  private freeLanes: string[] = [];
  private requests = 0;
  /** The blocking wait in flight, if any: one at a time, even when a reconnect holds it back. */
  private wake: Promise<boolean> | undefined;
  /** Resolves when `close` starts: no wait of the worker may outlive it. */
  private readonly stopping: Promise<void>;
  private stop!: () => void;
  /** Errors reported since the last call that succeeded: each is reported once. */
  private readonly reported = new Set<string>();
  /** Calls failed in a row, for the pause before the next try. */
  private failures = 0;

  constructor(
    /** The queue it serves. */
    readonly queue: JobQueue<T, R>,
    // The queue says what R is; the handler is checked against it.
    private readonly handler: JobHandler<T, NoInfer<R>>,
    options: WorkerOptions = {},
  ) {
    super();
    if (!(queue instanceof JobQueue)) throw new InvalidArgumentError('queue', 'must be a JobQueue');
    if (typeof handler !== 'function') throw new InvalidArgumentError('handler', 'must be a function');
    assertOptions('options', options, WORKER_OPTIONS);
    this.concurrency = options.concurrency ?? 1;
    assertInteger('options.concurrency', this.concurrency, { min: 1, max: LIMITS.maxBatch });
    this.leaseMs = optionalMs('options.leaseMs', options.leaseMs, queue.leaseMs, { min: 30, max: LIMITS.maxLeaseMs, integer: true });
    if (options.timeoutMs !== undefined) assertTimeoutMs('options.timeoutMs', options.timeoutMs);
    this.timeoutMs = options.timeoutMs;
    this.ackBatch = Math.max(1, Math.ceil(this.concurrency / MAX_ACKS_IN_FLIGHT));
    this.blockMs = optionalMs('options.blockMs', options.blockMs, 5000, { min: 1, max: 600_000, integer: true });
    this.renewTimer = setInterval(() => void this.renew(), Math.max(10, Math.floor(this.leaseMs / 3)));
    this.stopping = new Promise((resolve) => (this.stop = resolve));
    this.loop = this.fetchLoop();
  }

  /** Stops fetching, waits for running jobs (up to `timeoutMs`), then aborts and releases the rest. */
  close(options: CloseOptions = {}): Promise<void> {
    assertOptions('options', options, ['timeoutMs']);
    const timeoutMs = options.timeoutMs ?? this.leaseMs;
    assertInteger('options.timeoutMs', timeoutMs, { min: 0 });
    this.closed ??= this.shutdown(timeoutMs);
    return this.closed;
  }

  private async shutdown(timeoutMs: number): Promise<void> {
    this.closing = true;
    this.stop();
    // A blocked call is not settled by a disconnect while ioredis waits to reconnect: nothing awaits it now.
    this.blocking?.disconnect();
    this.notify();
    await this.loop;
    const deadline = Date.now() + timeoutMs;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)));
    while (this.running.size > 0 && Date.now() < deadline) await Promise.race([this.changed(), late]);
    clearTimeout(timer);
    await Promise.all(
      [...this.running].filter((r) => !r.settled).map((r) => {
        this.settle(r);
        r.controller.abort(new WorkerClosedError());
        return this.queue.release(r.job).catch((err: unknown) => this.fault(err));
      }),
    );
    while (this.acking > 0 || this.acks.length > 0) {
      this.flush();
      await this.changed();
    }
    clearInterval(this.renewTimer);
    this.blocking?.disconnect();
  }

  private async fetchLoop(): Promise<void> {
    while (!this.closing) {
      const free = this.concurrency - this.busy - this.reserved;
      // Finished jobs are completed together with the next fetch; leave the refill to that call.
      if (free <= 0 || this.acking > 0 || this.acks.length > 0) {
        await this.changed();
        continue;
      }
      this.reserved += free;
      const request = this.nextRequest();
      const answer = this.untilAnswered(() => this.queue.fetch(free, { leaseMs: this.leaseMs, request }));
      this.prepareSignals(free);
      const outcome = await answer;
      this.reserved -= free;
      if (outcome === 'closed') break;
      // A skipped call's lane may hold a memo of it: the lane is not reused.
      if (outcome === 'skipped') continue;
      this.freeLanes.push(request.lane);
      const reply = outcome.reply;
      reply.errors?.forEach((err) => this.fault(err));
      this.start(reply.jobs);
      // Nothing more ready now (none came, or a limit or an empty queue says wait): block, do not ask again.
      if ((reply.jobs.length === 0 || reply.waitMs !== 0) && !this.closing) await this.idle(reply.waitMs);
    }
  }

  /**
   * Repeats `call` (same arguments, same request id) until Redis answers or the worker closes: a call with an
   * unknown outcome (no reply) may have leased jobs or completed some, and only its repeat answers what it
   * did. A call that fails the same way twice otherwise (Redis refused it, or its reply could not be read)
   * is poisoned: reported once and skipped, so a bad batch never stalls the worker.
   */
  private async untilAnswered<R>(call: () => Promise<R>): Promise<RepeatResult<R>> {
    let refused: string | undefined;
    for (;;) {
      try {
        const reply = await call();
        this.failures = 0;
        this.reported.clear();
        return { reply };
      } catch (err) {
        if (this.closing) return 'closed';
        const key = errorKey(err);
        const outage = err instanceof RedisUnavailableError;
        if (outage || key === refused) this.fault(err);
        await Promise.race([this.pause(Math.min(1000, 50 * 2 ** this.failures++)), this.stopping]);
        if (this.closing) return 'closed';
        if (!outage && key === refused) return 'skipped';
        refused = outage ? undefined : key;
      }
    }
  }

  private nextRequest(): RequestId {
    const lane = this.freeLanes.pop() ?? this.lanePrefix + (this.lanesMade++).toString(36);
    return { lane, seq: this.requests++ };
  }

  /**
   * Blocks on the wake-up list until a push, the next due time, or `blockMs`. The wait ends at `close`, and a
   * second after its timeout even if the blocking call has no answer (its connection reconnecting): the
   * worker then polls instead.
   */
  private async idle(waitMs: number): Promise<void> {
    const ms = waitMs < 0 ? this.blockMs : Math.min(Math.max(waitMs, 1), this.blockMs);
    if (!this.blocking) {
      this.blocking = duplicateClient(this.queue.redis);
      // Its connection errors are the worker's to report (ioredis reconnects by itself).
      this.blocking.on('error', (err: unknown) => this.fault(unavailable(err)));
    }
    if (!this.wake) {
      const wake: Promise<boolean> = this.blocking
        .blpop(this.queue.wakeKey, ms / 1000)
        .then(
          () => true,
          (err: unknown) => {
            if (!this.closing) this.fault(unavailable(err));
            return false;
          },
        )
        .finally(() => {
          if (this.wake === wake) this.wake = undefined;
        });
      this.wake = wake;
    }
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, ms + 1000)));
    const answered = await Promise.race([this.wake, late, this.stopping]);
    clearTimeout(timer);
    // A failing connection answers at once: do not turn that into a busy loop.
    if (answered === false && !this.closing) await Promise.race([this.pause(100), this.stopping]);
  }

  private start(jobs: Job<T>[]): void {
    for (const job of jobs) {
      if (this.closing) {
        this.queue.release(job).catch((err: unknown) => this.fault(err));
        continue;
      }
      const r: Running<T, R> = { job, value: undefined, controller: this.spare.pop() ?? freshController(), timer: undefined, settled: false };
      this.running.add(r);
      this.busy++;
      if (this.timeoutMs !== undefined) r.timer = setTimeout(() => this.timeout(r), this.timeoutMs);
      this.execute(r);
    }
  }

  /**
   * Runs the handler on one job. A handler that answers synchronously (no promise) is finished at once: the
   * job costs no promise and no microtask of its own; its completion still goes out with the tick's others.
   */
  private execute(r: Running<T, R>): void {
    let result: R | undefined | PromiseLike<R | undefined>;
    let later: boolean;
    try {
      result = PROCESS.active ? PROCESS.run(() => processContext(this.queue.name, r.job), () => this.runHandler(r)) : this.handler(r.job, r.controller.signal);
      // Inside the try: reading `then` may throw, which fails the job as it would under `await`.
      later = isThenable(result);
    } catch (err) {
      this.finish(r, false, err);
      return;
    }
    if (!later) {
      this.finish(r, true, result);
      return;
    }
    // Followed as `await` would: a foreign thenable is adopted by a native promise first.
    Promise.resolve(result).then(
      (value) => this.finish(r, true, value),
      (err: unknown) => this.finish(r, false, err),
    );
  }

  /** What follows a handler's run: its completion queued, or its failure recorded. */
  private finish(r: Running<T, R>, ok: boolean, outcome: unknown): void {
    if (ok && outcome !== undefined) {
      try {
        // A value the codec refuses (or over 1 MiB) fails the job here, not the batch it would be sent in.
        this.queue.encodeResult('returnValue', outcome as R);
        r.value = outcome as R;
      } catch (err) {
        ok = false;
        outcome = err;
      }
    }
    if (r.timer !== undefined) clearTimeout(r.timer);
    this.running.delete(r);
    if (r.settled) {
      this.freeSlot();
    } else if (ok) {
      r.settled = true;
      this.finished.post(r);
    } else {
      void this.failed(r, outcome);
    }
  }

  private async failed(r: Running<T, R>, error: unknown): Promise<void> {
    this.settle(r);
    if (error instanceof RateLimitedError) {
      // Upstream said "slow down": the job goes back uncounted and the whole queue stops leasing a while.
      await this.queue.release(r.job, { pauseMs: error.delayMs }).catch((err: unknown) => this.fault(err));
    } else {
      await this.failJob(r, error);
    }
    this.freeSlot();
  }

  /** The handler's run as a promise, for the tracing channel (a handler may answer synchronously or throw). */
  private async runHandler(r: Running<T, R>): Promise<R | undefined> {
    return this.handler(r.job, r.controller.signal);
  }

  /** Queues a tick's finished jobs for completion and sends what the calls in flight allow. */
  private queueAcks(batch: Running<T, R>[]): Promise<void[]> {
    for (const r of batch) this.acks.push(r);
    this.flush();
    // Nothing to answer per job: the `ack` call reports each one's completion as an event.
    return Promise.resolve(new Array<void>(batch.length));
  }

  /** Sends queued completions in calls that also fetch jobs for the slots they free. */
  private flush(): void {
    while (this.acks.length > 0 && this.acking < MAX_ACKS_IN_FLIGHT) this.sendAcks(this.acks.splice(0, this.ackBatch));
    if (this.acking === 0) this.notify();
  }

  private sendAcks(batch: Running<T, R>[]): void {
    this.acking++;
    this.busy -= batch.length;
    const fetch = this.closing ? 0 : Math.max(0, this.concurrency - this.busy - this.reserved);
    this.reserved += fetch;
    const jobs = new Array<Job<T>>(batch.length);
    let valued = false;
    for (let i = 0; i < batch.length; i++) {
      jobs[i] = batch[i]!.job;
      if (batch[i]!.value !== undefined) valued = true;
    }
    const returnValues = valued ? batch.map((r) => r.value) : undefined;
    const request = this.nextRequest();
    const options = returnValues === undefined ? { fetch, leaseMs: this.leaseMs, request } : { fetch, leaseMs: this.leaseMs, request, returnValues };
    const answer = this.untilAnswered(() => this.queue.ack(jobs, options));
    this.prepareSignals(fetch);
    void answer
      .then((outcome) => {
        this.reserved -= fetch;
        // Closing: given up; the leases run out and the jobs come back (the lane is not reused).
        if (outcome === 'closed') return;
        // Poisoned: the completions are unknown, so the jobs count as lost (their leases run out).
        if (outcome === 'skipped') {
          for (const r of batch) this.fire('lost', r.job);
          return;
        }
        const reply = outcome.reply;
        this.freeLanes.push(request.lane);
        reply.errors?.forEach((err) => this.fault(err));
        const { completed } = reply;
        for (let i = 0; i < batch.length; i++) this.fire(completed[i] ? 'completed' : 'lost', batch[i]!.job);
        this.start(reply.jobs);
      })
      .finally(() => {
        this.acking--;
        this.flush();
      });
  }

  /**
   * Makes fresh abort controllers for up to `count` jobs a call in flight may lease, right after the call was
   * sent: on Node 20 an AbortSignal costs about 2 µs to create, paid here while Redis works on the call
   * instead of between its reply and the handlers' start. Each controller still serves one job only.
   */
  private prepareSignals(count: number): void {
    if (count <= 0 || this.preparing) return;
    this.preparing = true;
    setImmediate(() => {
      this.preparing = false;
      const want = Math.min(this.concurrency, this.reserved);
      while (this.spare.length < want && !this.closing) this.spare.push(freshController());
    });
  }

  private async failJob(r: Running<T, R>, error: unknown): Promise<void> {
    let outcome: FailOutcome;
    try {
      outcome = await this.queue.fail(r.job, error);
    } catch (err) {
      // The lease runs out and the job comes back: the failure is counted then.
      this.fault(err);
      return;
    }
    if (outcome === 'retry') this.fire('failed', r.job, error);
    else if (outcome === 'dead') this.fire('dead', r.job, error);
    else this.fire('lost', r.job);
  }

  private timeout(r: Running<T, R>): void {
    if (r.settled) return;
    this.settle(r);
    const error = new JobTimeoutError(this.timeoutMs!);
    r.controller.abort(error);
    void this.failJob(r, error);
  }

  private async renew(): Promise<void> {
    const held = [...this.running].filter((r) => !r.settled);
    for (let i = 0; i < held.length; i += LIMITS.maxBatch) {
      const chunk = held.slice(i, i + LIMITS.maxBatch);
      let renewed: boolean[];
      try {
        renewed = await this.queue.extend(
          chunk.map((r) => r.job),
          this.leaseMs,
        );
      } catch (err) {
        this.fault(err);
        return;
      }
      chunk.forEach((r, k) => {
        if (renewed[k] || r.settled) return;
        this.settle(r);
        r.controller.abort(new LeaseLostError(r.job.id));
        this.fire('lost', r.job);
      });
    }
  }

  private settle(r: Running<T, R>): void {
    r.settled = true;
    clearTimeout(r.timer);
  }

  /** A handler returned without a completion to send: its slot is free now. */
  private freeSlot(): void {
    this.busy--;
    this.notify();
  }

  private changed(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private notify(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const resolve of waiters) resolve();
  }

  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }

  /** Emits an event; a listener that throws is reported, never turned into an unhandled rejection. */
  private fire<K extends 'completed' | 'failed' | 'dead' | 'lost'>(event: K, ...args: WorkerEvents<T>[K]): void {
    try {
      (this.emit as (name: K, ...rest: WorkerEvents<T>[K]) => boolean)(event, ...args);
    } catch (err) {
      this.report(err);
    }
  }

  /** Reports a failed Redis call, once per distinct error until a call succeeds again. */
  private fault(err: unknown): void {
    const key = errorKey(err);
    if (this.reported.has(key)) return;
    this.reported.add(key);
    this.report(err);
  }

  private report(err: unknown): void {
    try {
      if (this.listenerCount('error') > 0) this.emit('error', err);
    } catch {
      // An 'error' listener that throws has nowhere left to report to.
    }
  }
}

/** A controller whose signal is already made (the getter creates it on first read). */
function freshController(): AbortController {
  const controller = new AbortController();
  void controller.signal;
  return controller;
}

/** The `process` channel's context of one job's run. */
function processContext(name: string, job: Job<unknown>): OperationContext {
  return { name, key: job.id, attempts: job.attempts, traceContext: job.traceContext, target: job };
}

/** Whether `await` would wait for `value` (a promise or any object with a `then` method). */
function isThenable(value: unknown): value is PromiseLike<unknown> {
  return value !== null && (typeof value === 'object' || typeof value === 'function') && typeof (value as { then?: unknown }).then === 'function';
}

/** What makes two failures "the same way": the error's class and message. */
function errorKey(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}

/** A failure of the worker's own waiting connection, as the outage it is. */
function unavailable(err: unknown): RedisUnavailableError {
  if (err instanceof RedisUnavailableError) return err;
  return new RedisUnavailableError(`waiting for jobs: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}
