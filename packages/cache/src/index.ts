export {
  SmartCache,
  type CacheEntry,
  type CacheStats,
  type GetOrSetOptions,
  type L1Options,
  type SetOptions,
  type SmartCacheOptions,
} from './cache.js';
export { defaultCodec, type Codec } from './codec.js';
