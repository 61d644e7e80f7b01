// Small node:http helpers the handler shares: the request shape frameworks hand over, JSON replies, headers.
import type { IncomingMessage, ServerResponse } from 'node:http';

/**
 * A request as node:http, Express, Fastify (`request.raw`) and Hono on Node (`c.env.incoming`) pass it.
 * Express adds `originalUrl` and `baseUrl` when it mounts a handler under a path.
 */
export type DashboardRequest = IncomingMessage & {
  /** Express: the URL before its router stripped the mount path. */
  originalUrl?: string;
  /** Express: the path the handler was mounted under (`app.use(path, …)`). */
  baseUrl?: string;
};

/** Sent with every reply: no framing, no sniffing, and scripts and styles from the dashboard itself only. */
const SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};

/** Writes the status and headers (with the security headers) of a reply. */
export function head(res: ServerResponse, status: number, headers: Record<string, string>): void {
  res.writeHead(status, { ...SECURITY_HEADERS, ...headers });
}

/** Ends the reply with a body of the given type. */
export function send(res: ServerResponse, status: number, type: string, body: string | Buffer): void {
  head(res, status, { 'content-type': type, 'content-length': String(Buffer.byteLength(body)) });
  res.end(body);
}

/** Ends the reply with `value` as JSON (job data may hold BigInt, Map or Set: see `toJson`). */
export function sendJson(res: ServerResponse, status: number, value: unknown): void {
  send(res, status, 'application/json; charset=utf-8', toJson(value));
}

/** Ends the reply with `{ error }` and the status. */
export function sendError(res: ServerResponse, status: number, message: string): void {
  sendJson(res, status, { error: message });
}

/**
 * JSON of anything the default codec can decode: BigInt as its decimal text, Map as an object, Set as an
 * array (the page shows values, it does not round-trip them).
 */
export function toJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (typeof v === 'bigint') return v.toString();
    if (v instanceof Map) return Object.fromEntries(v as Map<unknown, unknown> & Iterable<[PropertyKey, unknown]>) as unknown;
    if (v instanceof Set) return [...(v as Set<unknown>)];
    return v;
  });
}
