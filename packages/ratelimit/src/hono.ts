import type { Context, MiddlewareHandler } from 'hono';
import { check, DEFAULT_MESSAGE, type MiddlewareOptions } from './middleware.js';

/** Options of the Hono middleware. */
export type HonoRateLimitOptions = MiddlewareOptions<Context>;

/**
 * Hono middleware: sets the `RateLimit` fields and answers 429 with `Retry-After` when refused. `key` is
 * required: Hono has no portable client address (on Node, `getConnInfo` from `@hono/node-server/conninfo`).
 */
export function honoRateLimit(options: HonoRateLimitOptions): MiddlewareHandler {
  return async (c, next) => {
    const { result, headers } = await check<Context>(options, c);
    if (!result.allowed) return c.text(options.message ?? DEFAULT_MESSAGE, 429, headers);
    for (const name in headers) c.header(name, headers[name]);
    await next();
    return undefined;
  };
}
