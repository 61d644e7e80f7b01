// Errors the worker passes to handlers through their abort signal.
import { CyRedisError } from '@cyredis/core';

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
