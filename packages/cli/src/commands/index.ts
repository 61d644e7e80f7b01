// Every command of `cyredis`, in the order `--help` lists them. Adding one: its file, and one line here.
import type { CommandSpec } from '../command.js';
import { cache } from './cache.js';
import { caches } from './caches.js';
import { clean } from './clean.js';
import { clearCache } from './clear-cache.js';
import { dashboard } from './dashboard.js';
import { events } from './events.js';
import { forceUnlock } from './force-unlock.js';
import { promote, remove, retry } from './job-actions.js';
import { job } from './job.js';
import { jobs } from './jobs.js';
import { limit } from './limit.js';
import { limiters } from './limiters.js';
import { lock } from './lock.js';
import { locks } from './locks.js';
import { pause, resume } from './pause.js';
import { queue } from './queue.js';
import { queues } from './queues.js';
import { resetLimit } from './reset-limit.js';
import { retryDead } from './retry-dead.js';

/** Every command, in the order `cyredis --help` lists them. */
export const COMMANDS: readonly CommandSpec[] = [
  queues,
  queue,
  jobs,
  job,
  pause,
  resume,
  retry,
  retryDead,
  remove,
  promote,
  clean,
  events,
  locks,
  lock,
  forceUnlock,
  limiters,
  limit,
  resetLimit,
  caches,
  cache,
  clearCache,
  dashboard,
];
