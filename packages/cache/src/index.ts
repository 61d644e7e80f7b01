// The public surface of @cyredis/cache: the cache, its types, the codec and the errors it can throw.
export {
  LIMITS,
  SmartCache,
  type CacheEntry,
  type CacheStats,
  type GetOrSetOptions,
  type L1Options,
  type Loader,
  type SetOptions,
  type SmartCacheOptions,
} from './cache.js';
export {
  CyRedisError,
  InvalidArgumentError,
  RedisTimeoutError,
  RedisUnavailableError,
  ScriptError,
  defaultCodec,
  type Codec,
} from '@cyredis/core';
