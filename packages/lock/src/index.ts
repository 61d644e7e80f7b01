export { LockLostError, LockUnavailableError, QuorumUnreachableError, type NodeOutcome } from './errors.js';
export { Lock, type LockBackend } from './lock.js';
export { LockManager, type AcquireOptions, type LockManagerOptions, type LockStatus } from './manager.js';
