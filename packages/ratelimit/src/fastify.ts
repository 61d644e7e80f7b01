import type { FastifyReply, FastifyRequest } from 'fastify';
import { check, DEFAULT_MESSAGE, type MiddlewareOptions } from './middleware.js';

/** Options of the Fastify hook. */
export interface FastifyRateLimitOptions extends Omit<MiddlewareOptions<FastifyRequest>, 'key'> {
  /** Default: `request.ip`. */
  key?: (request: FastifyRequest) => string | Promise<string>;
}

/**
 * A Fastify `onRequest` hook (`app.addHook('onRequest', fastifyRateLimit({ limiter }))`): sets the
 * `RateLimit` fields and answers 429 with `Retry-After` when refused. Limiter errors reach Fastify's error
 * handler.
 */
export function fastifyRateLimit(options: FastifyRateLimitOptions): (request: FastifyRequest, reply: FastifyReply) => Promise<FastifyReply | undefined> {
  const settings: MiddlewareOptions<FastifyRequest> = { ...options, key: options.key ?? ((request) => request.ip) };
  return async (request, reply) => {
    const { result, headers } = await check(settings, request);
    void reply.headers(headers);
    if (result.allowed) return undefined;
    return reply.code(429).type('text/plain').send(options.message ?? DEFAULT_MESSAGE);
  };
}
