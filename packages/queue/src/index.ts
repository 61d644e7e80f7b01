// The package's public surface: the queue, its worker, and the errors either can throw.
export {
  CyRedisError,
  InvalidArgumentError,
  RedisTimeoutError,
  RedisUnavailableError,
  ScriptError,
  type Codec,
} from '@cyredis/core';
export { JobAbortedError, JobTimeoutError, LeaseLostError, WorkerClosedError } from './errors.js';
export {
  JOB_QUEUE_LUA,
  JobQueue,
  LIMITS,
  type AckResult,
  type BackoffOptions,
  type BulkJob,
  type DeadJob,
  type FailOutcome,
  type FetchResult,
  type Job,
  type JobQueueOptions,
  type PopOptions,
  type PushOptions,
  type PushResult,
  type QueueStats,
  type RequestId,
} from './queue.js';
export { Worker, type CloseOptions, type JobHandler, type WorkerEvents, type WorkerOptions } from './worker.js';
