import type { Request, RequestHandler } from 'express';
import { check, DEFAULT_MESSAGE, type MiddlewareOptions } from './middleware.js';

/** Options of the Express middleware. */
export interface ExpressRateLimitOptions extends Omit<MiddlewareOptions<Request>, 'key'> {
  /** Default: `req.ip`. */
  key?: (req: Request) => string | Promise<string>;
}

/**
 * Express middleware: sets the `RateLimit` fields on every response and answers 429 with `Retry-After`
 * when refused. Limiter errors (with `onRedisError: 'throw'`) go to `next(err)`.
 */
export function expressRateLimit(options: ExpressRateLimitOptions): RequestHandler {
  const settings: MiddlewareOptions<Request> = { ...options, key: options.key ?? ((req) => req.ip ?? req.socket.remoteAddress ?? 'unknown') };
  return (req, res, next) => {
    check(settings, req).then(({ result, headers }) => {
      res.set(headers);
      if (result.allowed) next();
      else res.status(429).type('text/plain').send(options.message ?? DEFAULT_MESSAGE);
    }, next);
  };
}
