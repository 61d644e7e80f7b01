export {
  SmartCache,
  type CacheEntry,
  type CacheStats,
  type GetOrSetOptions,
  type L1Options,
  type Loader,
  type SetOptions,
  type SmartCacheOptions,
} from './cache.js';
export { defaultCodec, type Codec } from '@cyredis/core';
