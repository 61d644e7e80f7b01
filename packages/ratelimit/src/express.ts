// The Express middleware: `app.use(expressRateLimit({ limiter }))`.
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { RateLimitResult } from './options.js';
import { check, checkMiddlewareOptions, DEFAULT_MESSAGE, type MiddlewareOptions } from './middleware.js';

/** Options of the Express middleware. */
export interface ExpressRateLimitOptions extends Omit<MiddlewareOptions<Request>, 'key'> {
  /**
   * Default: `req.ip`, the client address as Express sees it. Behind a proxy or load balancer that is the
   * proxy's address (every client would share one budget) unless the app sets `trust proxy`, e.g.
   * `app.set('trust proxy', 1)` for one proxy hop; never `true` when clients can reach the app directly, since
   * they could then pick their own `X-Forwarded-For`.
   */
  key?: (req: Request) => string | Promise<string>;
  /**
   * Answers a refused request instead of the default 429 (the `RateLimit` fields and `Retry-After` are set
   * already). An error it throws goes to `next(err)`.
   */
  handler?: (req: Request, res: Response, next: NextFunction, result: RateLimitResult) => void | Promise<void>;
}

function clientAddress(req: Request): string {
  // `req.ip` is undefined once the socket is gone; the request is answered to nobody then.
  return req.ip ?? req.socket.remoteAddress ?? 'unknown';
}

/**
 * Express middleware: sets the `RateLimit` fields on every checked response and answers 429 with
 * `Retry-After` when refused. Limiter errors (with `onRedisError: 'throw'`) and configuration errors go to
 * `next(err)`.
 */
export function expressRateLimit(options: ExpressRateLimitOptions): RequestHandler {
  checkMiddlewareOptions(options, false);
  const settings: MiddlewareOptions<Request> = { ...options, key: options.key ?? clientAddress };
  const { handler } = options;
  return (req, res, next) => {
    check(settings, req)
      .then(async (checked) => {
        if (!checked) return next();
        res.set(checked.headers);
        if (checked.result.allowed) return next();
        if (handler) return handler(req, res, next, checked.result);
        res.status(429).type('text/plain').send(options.message ?? DEFAULT_MESSAGE);
      })
      .catch(next);
  };
}
