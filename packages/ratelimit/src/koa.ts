// The Koa middleware: `app.use(koaRateLimit({ limiter }))`.
import type { RateLimitResult } from './options.js';
import { check, checkMiddlewareOptions, DEFAULT_MESSAGE, type MiddlewareOptions } from './middleware.js';

/**
 * The parts of a Koa context the middleware uses; Koa's `Context` has them all. Declared here rather than
 * imported from `@types/koa`, so this module compiles without Koa's types (pass `koaRateLimit<Context>` to
 * type the hooks' `ctx` as Koa's own).
 */
export interface KoaContextLike {
  ip: string;
  status: number;
  type: string;
  body: unknown;
  set(fields: Record<string, string>): void;
}

/** Options of the Koa middleware; `Ctx` is the context type the hooks receive. */
export interface KoaRateLimitOptions<Ctx extends KoaContextLike = KoaContextLike> extends Omit<MiddlewareOptions<Ctx>, 'key'> {
  /**
   * Default: `ctx.ip`. Behind a proxy that is the proxy's address unless the app sets `app.proxy = true`
   * (then Koa reads `X-Forwarded-For`; only do that behind a proxy that sets it).
   */
  key?: (ctx: Ctx) => string | Promise<string>;
  /** Answers a refused request instead of the default 429 (the `RateLimit` fields and `Retry-After` are set already). */
  handler?: (ctx: Ctx, result: RateLimitResult) => void | Promise<void>;
}

/**
 * Koa middleware: sets the `RateLimit` fields on every checked response and answers 429 with `Retry-After`
 * when refused. Limiter errors (with `onRedisError: 'throw'`) and configuration errors are thrown to Koa's
 * error handling.
 */
export function koaRateLimit<Ctx extends KoaContextLike = KoaContextLike>(options: KoaRateLimitOptions<Ctx>): (ctx: Ctx, next: () => Promise<unknown>) => Promise<void> {
  checkMiddlewareOptions(options, false);
  const settings: MiddlewareOptions<Ctx> = { ...options, key: options.key ?? ((ctx) => ctx.ip) };
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
