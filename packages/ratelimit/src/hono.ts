// The Hono middleware: `app.use(honoRateLimit({ limiter, key }))`.
import type { Context, MiddlewareHandler } from 'hono';
import type { RateLimitResult } from './options.js';
import { check, checkMiddlewareOptions, DEFAULT_MESSAGE, type MiddlewareOptions } from './middleware.js';

/** Options of the Hono middleware. */
export interface HonoRateLimitOptions extends MiddlewareOptions<Context> {
  /** Answers a refused request instead of the default 429 (the `RateLimit` fields are set on `c` already). */
  handler?: (c: Context, result: RateLimitResult) => Response | Promise<Response>;
}

/**
 * Hono middleware: sets the `RateLimit` fields and answers 429 with `Retry-After` when refused. `key` is
 * required: Hono has no portable client address (on Node, `getConnInfo` from `@hono/node-server/conninfo`).
 */
export function honoRateLimit(options: HonoRateLimitOptions): MiddlewareHandler {
  checkMiddlewareOptions(options, true);
  const { handler } = options;
  return async (c, next) => {
    const checked = await check<Context>(options, c);
    if (!checked) return next();
    for (const name in checked.headers) c.header(name, checked.headers[name]);
    if (checked.result.allowed) return next();
    if (handler) return handler(c, checked.result);
    return c.text(options.message ?? DEFAULT_MESSAGE, 429);
  };
}
