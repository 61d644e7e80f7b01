// The HTTP response fields of a result: IETF draft `RateLimit`, `RateLimit-Policy`, `Retry-After` and the legacy `X-RateLimit-*`.
import type { RateLimitResult } from './options.js';

/** Options of `rateLimitHeaders` (and the middleware). */
export interface RateLimitHeaderOptions {
  /** Also send `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset` (seconds). Default false. */
  legacy?: boolean;
  /** The quota policy's name in `RateLimit` and `RateLimit-Policy`. Default `"default"`. */
  policyName?: string;
}

/**
 * HTTP response fields for a result: the IETF draft (draft-ietf-httpapi-ratelimit-headers) `RateLimit`
 * (`r` remaining, `t` seconds to reset) and `RateLimit-Policy` (`q` quota, `w` window seconds), plus
 * `Retry-After` in whole seconds (rounded up) when refused, unless `retryAfterMs` is infinite.
 */
export function rateLimitHeaders(result: RateLimitResult, options: RateLimitHeaderOptions = {}): Record<string, string> {
  const name = JSON.stringify(options.policyName ?? 'default');
  const reset = String(Math.ceil(result.resetMs / 1000));
  const headers: Record<string, string> = {
    'RateLimit-Policy': `${name};q=${result.limit};w=${Math.ceil(result.windowMs / 1000)}`,
    RateLimit: `${name};r=${result.remaining};t=${reset}`,
  };
  // An infinite wait (a cost above the capacity) has no Retry-After: no wait admits that request.
  if (!result.allowed && Number.isFinite(result.retryAfterMs)) headers['Retry-After'] = String(Math.ceil(result.retryAfterMs / 1000));
  if (options.legacy) {
    headers['X-RateLimit-Limit'] = String(result.limit);
    headers['X-RateLimit-Remaining'] = String(result.remaining);
    headers['X-RateLimit-Reset'] = reset;
  }
  return headers;
}
