export { rateLimitHeaders, type RateLimitHeaderOptions } from './headers.js';
export {
  RateLimiter,
  type LimitOptions,
  type OnRedisError,
  type RateLimitAlgorithm,
  type RateLimiterOptions,
  type RateLimitResult,
  type RateLimitRule,
  type ResolvedRule,
} from './limiter.js';
export type { MiddlewareOptions } from './middleware.js';
