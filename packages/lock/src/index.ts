// The public surface of @cyredis/lock, with the core errors it can throw (so `instanceof` needs no core import).
export { CyRedisError, InvalidArgumentError, RedisTimeoutError, RedisUnavailableError, ScriptError } from '@cyredis/core';
export type { RegistryEntry, RegistryListOptions } from '@cyredis/core';
export { LockLostError, LockUnavailableError, QuorumUnreachableError, type NodeReply } from './errors.js';
export { FairLock, type FairLockStatus } from './fair.js';
export type { HeldLock, HeldLocksPage, ListHeldOptions, LockHolder, LockKind } from './held.js';
export { Lock, type LockBackend } from './lock.js';
export { MultiLock } from './multi.js';
export { LockManager, MIN_TTL_MS, type AcquireOptions, type LockManagerOptions } from './manager.js';
export type { LockStatus } from './quorum.js';
export type { PermitHolder } from './protocol.js';
export { ReadWriteLock, ReadWriteSide, type ReadWriteStatus } from './readwrite.js';
export {
  Permit,
  PermitsUnavailableError,
  Semaphore,
  type PermitOptions,
  type SemaphoreOptions,
  type SemaphoreStatus,
} from './semaphore.js';
