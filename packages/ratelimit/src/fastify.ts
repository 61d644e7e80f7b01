// The Fastify hook: `app.addHook('onRequest', fastifyRateLimit({ limiter }))`.
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { RateLimitResult } from './options.js';
import { check, checkMiddlewareOptions, DEFAULT_MESSAGE, type MiddlewareOptions } from './middleware.js';

/** Options of the Fastify hook. */
export interface FastifyRateLimitOptions extends Omit<MiddlewareOptions<FastifyRequest>, 'key'> {
  /**
   * Default: `request.ip`. Behind a proxy that is the proxy's address unless Fastify is created with
   * `trustProxy` (e.g. `Fastify({ trustProxy: '10.0.0.5' })`, the proxy's address).
   */
  key?: (request: FastifyRequest) => string | Promise<string>;
  /**
   * Answers a refused request instead of the default 429 (the `RateLimit` fields and `Retry-After` are set
   * already). If it sends nothing, the default 429 is sent.
   */
  handler?: (request: FastifyRequest, reply: FastifyReply, result: RateLimitResult) => unknown;
}

/**
 * A Fastify `onRequest` hook: sets the `RateLimit` fields and answers 429 with `Retry-After` when refused.
 * Limiter errors and configuration errors reach Fastify's error handler.
 */
export function fastifyRateLimit(options: FastifyRateLimitOptions): (request: FastifyRequest, reply: FastifyReply) => Promise<FastifyReply | undefined> {
  checkMiddlewareOptions(options, false);
  const settings: MiddlewareOptions<FastifyRequest> = { ...options, key: options.key ?? ((request) => request.ip) };
  const { handler } = options;
  return async (request, reply) => {
    const checked = await check(settings, request);
    if (!checked) return undefined;
    void reply.headers(checked.headers);
    if (checked.result.allowed) return undefined;
    if (handler) await handler(request, reply, checked.result);
    if (!reply.sent) void reply.code(429).type('text/plain').send(options.message ?? DEFAULT_MESSAGE);
    return reply;
  };
}
