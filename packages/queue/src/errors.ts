// The errors of the queue: those the worker passes to handlers through their abort signal, and those callers and handlers throw.
import { CyRedisError, durationMs } from '@cyredis/core';

/** Base class of the errors this package passes to handlers' abort signals. */
export class JobAbortedError extends CyRedisError {}

/** The job ran longer than the worker's `timeoutMs`. */
export class JobTimeoutError extends JobAbortedError {
  constructor(
    /** The worker's `timeoutMs` that passed. */
    readonly timeoutMs: number,
  ) {
    super(`job timed out after ${timeoutMs} ms`);
  }
}

/** The worker could not renew the job's lease: another worker may run it now. */
export class LeaseLostError extends JobAbortedError {
  constructor(
    /** The job whose lease was lost. */
    readonly jobId: string,
  ) {
    super(`lease of job "${jobId}" was lost`);
  }
}

/** The worker closed before the job finished; the job went back to the queue. */
export class WorkerClosedError extends JobAbortedError {
  constructor() {
    super('worker closed before the job finished');
  }
}

/** `waitUntilFinished`: the job ended in the dead letters. */
export class JobFailedError extends CyRedisError {
  constructor(
    /** The job that died. */
    readonly jobId: string,
    /** Its last error (`lease expired`, `record lost`, or what its handler threw). */
    readonly failedReason: string,
  ) {
    super(`job "${jobId}" failed: ${failedReason}`);
  }
}

/** `waitUntilFinished`: no job has this id, or it was removed (by `remove`, `drain`, `clean` or retention). */
export class JobNotFoundError extends CyRedisError {
  constructor(
    /** The id looked for. */
    readonly jobId: string,
  ) {
    super(`job "${jobId}" not found`);
  }
}

/**
 * Thrown by a handler that heard "slow down" from upstream (say a 429 with Retry-After): the `Worker`
 * gives the job back without counting an attempt and no process leases any job of the queue for
 * `delayMs` (rounded up to whole ms, at most a day).
 */
export class RateLimitedError extends CyRedisError {
  /** How long the whole queue stops leasing, in whole ms. */
  readonly delayMs: number;

  constructor(delayMs: number) {
    const ms = durationMs('delayMs', delayMs, { max: 86_400_000 });
    super(`rate limited: queue paused for ${ms} ms`);
    this.delayMs = ms;
  }
}
