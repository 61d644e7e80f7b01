// The package's entry point: the limiter, its types, the HTTP fields, and the core errors it can throw.
export { CyRedisError, InvalidArgumentError, RedisTimeoutError, RedisUnavailableError, ScriptError } from '@cyredis/core';
export { rateLimitHeaders, type RateLimitHeaderOptions } from './headers.js';
export { RateLimiter, type RateLimiterOpenOptions } from './limiter.js';
export type { RateLimiterEvents } from './tracing.js';
export type { RegistryEntry, RegistryListOptions, RegistryPage } from '@cyredis/core';
export type { IdList } from './policies.js';
export type {
  InlineRuleOptions,
  InsuranceOptions,
  LimitOptions,
  OnRedisError,
  OverrideOptions,
  RateLimitAlgorithm,
  RateLimiterCommonOptions,
  RateLimiterOptions,
  RateLimitResult,
  RateLimitUsage,
  RecordedRefusal,
  RuleUsage,
  RateLimitRule,
  ResolvedRule,
  RuleListOptions,
} from './options.js';
export type { MiddlewareOptions } from './middleware.js';
