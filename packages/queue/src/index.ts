// The package's public surface: the queue, its worker, and the errors either can throw.
export {
  CyRedisError,
  InvalidArgumentError,
  RedisTimeoutError,
  RedisUnavailableError,
  ScriptError,
  type Codec,
  type RegistryEntry,
  type RegistryListOptions,
} from '@cyredis/core';
export { JobAbortedError, JobFailedError, JobNotFoundError, JobTimeoutError, LeaseLostError, RateLimitedError, WorkerClosedError } from './errors.js';
export { QueueEvents, type EventBase, type Failed, type JobEvent, type Progress, type Ready, type Returned, type QueueEventMap, type QueueEventsOptions } from './events.js';
export {
  JOB_QUEUE_LUA,
  JobQueue,
  LIMITS,
  type AckOptions,
  type AckResult,
  type BackoffOptions,
  type BulkJob,
  type DedupOptions,
  type DeadJob,
  type FailOutcome,
  type FetchResult,
  type GroupOptions,
  type Job,
  type JobInfo,
  type JobLease,
  type JobProgress,
  type JobQueueOptions,
  type JobState,
  type KeepOptions,
  type PopOptions,
  type PushOptions,
  type PushResult,
  type QueueStats,
  type RateLimitOptions,
  type SchedulerInfo,
  type SchedulerTemplateInfo,
  type SchedulerUpserted,
  type SchedulerTemplate,
  type RequestId,
} from './queue.js';
export { type RepeatOptions } from './schedule.js';
export { Worker, type CloseOptions, type JobHandler, type WorkerEvents, type WorkerOptions } from './worker.js';
