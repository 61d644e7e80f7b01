// The public surface of @cyredis/cache: the cache, its types, the codec and the errors it can throw.
export { SmartCache, type CacheStats } from './cache.js';
export type { EntryInfo } from './protocol.js';
export { LoaderTimeoutError } from './errors.js';
export type { CacheResult, CacheStatus } from './leases.js';
export {
  LIMITS,
  type CacheEntry,
  type GetOrSetOptions,
  type L1Options,
  type SetOptions,
  type SmartCacheOptions,
} from './options.js';
export type { Loader, LoaderContext } from './values.js';
export type { InvalidationReason, SmartCacheEvents } from './tracing.js';
export {
  CyRedisError,
  InvalidArgumentError,
  RedisTimeoutError,
  RedisUnavailableError,
  ScriptError,
  defaultCodec,
  type Codec,
  type RegistryEntry,
  type RegistryListOptions,
} from '@cyredis/core';
