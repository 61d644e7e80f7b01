// The Koa middleware: `app.use(koaRateLimit({ limiter }))`.
import type { Context, Middleware } from 'koa';
import type { RateLimitResult } from './options.js';
import { check, checkMiddlewareOptions, DEFAULT_MESSAGE, type MiddlewareOptions } from './middleware.js';

/** Options of the Koa middleware. */
export interface KoaRateLimitOptions extends Omit<MiddlewareOptions<Context>, 'key'> {
  /**
   * Default: `ctx.ip`. Behind a proxy that is the proxy's address unless the app sets `app.proxy = true`
   * (then Koa reads `X-Forwarded-For`; only do that behind a proxy that sets it).
   */
  key?: (ctx: Context) => string | Promise<string>;
  /** Answers a refused request instead of the default 429 (the `RateLimit` fields and `Retry-After` are set already). */
  handler?: (ctx: Context, result: RateLimitResult) => void | Promise<void>;
}

/**
 * Koa middleware: sets the `RateLimit` fields on every checked response and answers 429 with `Retry-After`
 * when refused. Limiter errors (with `onRedisError: 'throw'`) and configuration errors are thrown to Koa's
 * error handling.
 */
export function koaRateLimit(options: KoaRateLimitOptions): Middleware {
  checkMiddlewareOptions(options, false);
  const settings: MiddlewareOptions<Context> = { ...options, key: options.key ?? ((ctx) => ctx.ip) };
  const { handler } = options;
  return async (ctx, next) => {
    const checked = await check(settings, ctx);
    if (checked) ctx.set(checked.headers);
    if (!checked || checked.result.allowed) {
      await next();
      return;
    }
    if (handler) return handler(ctx, checked.result);
    ctx.status = 429;
    ctx.type = 'text/plain';
    ctx.body = options.message ?? DEFAULT_MESSAGE;
  };
}
