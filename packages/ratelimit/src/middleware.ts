import { rateLimitHeaders, type RateLimitHeaderOptions } from './headers.js';
import type { RateLimiter, RateLimitResult } from './limiter.js';

/** Options shared by the Express, Fastify and Hono middleware; `Req` is the framework's request. */
export interface MiddlewareOptions<Req> extends RateLimitHeaderOptions {
  /** The limiter that decides. */
  limiter: RateLimiter;
  /** The id to limit, e.g. the client address or an API key. */
  key: (req: Req) => string | Promise<string>;
  /** Units a request costs. Default 1. */
  cost?: (req: Req) => number;
  /** Body of the 429 reply. Default `'Too Many Requests'`. */
  message?: string;
}

export const DEFAULT_MESSAGE = 'Too Many Requests';

/** Runs the limiter for one request and returns the result with its response fields. */
export async function check<Req>(options: MiddlewareOptions<Req>, req: Req): Promise<{ result: RateLimitResult; headers: Record<string, string> }> {
  const id = await options.key(req);
  const result = await options.limiter.limit(id, options.cost ? { cost: options.cost(req) } : undefined);
  return { result, headers: rateLimitHeaders(result, options) };
}
