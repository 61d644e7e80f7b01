// The package's entry point: the limiter, its types, the HTTP fields, and the core errors it can throw.
export { CyRedisError, InvalidArgumentError, RedisTimeoutError, RedisUnavailableError, ScriptError } from '@cyredis/core';
export { rateLimitHeaders, type RateLimitHeaderOptions } from './headers.js';
export {
  RateLimiter,
  type InlineRuleOptions,
  type LimitOptions,
  type OnRedisError,
  type RateLimitAlgorithm,
  type RateLimiterCommonOptions,
  type RateLimiterOptions,
  type RateLimitResult,
  type RateLimitRule,
  type ResolvedRule,
  type RuleListOptions,
} from './limiter.js';
export type { MiddlewareOptions } from './middleware.js';
