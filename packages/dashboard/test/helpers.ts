import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import express from 'express';
import Fastify from 'fastify';
import { Hono } from 'hono';
import type { DashboardHandler } from '../src/index.js';

export type Framework = 'node:http' | 'express' | 'fastify' | 'hono';
export const frameworks: readonly Framework[] = ['node:http', 'express', 'fastify', 'hono'];

/** A dashboard mounted in a real server: the page's URL (ending in a slash) and how to stop it. */
export interface Mounted {
  url: string;
  close(): Promise<void>;
}

function listening(server: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port));
  });
}

function closing(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

/**
 * Mounts the handler under `base` the way each framework's users would: node:http and Fastify and Hono pass the
 * full URL (the handler was made with `basePath: base`), Express strips its mount path itself.
 */
export async function mount(framework: Framework, handler: DashboardHandler, base: string): Promise<Mounted> {
  if (framework === 'node:http') {
    const server = createServer((req, res) => void handler(req, res));
    const port = await listening(server);
    return { url: `http://127.0.0.1:${port}${base}/`, close: () => closing(server) };
  }
  if (framework === 'express') {
    const app = express();
    app.get('/other', (_req, res) => void res.send('other route'));
    app.use(base, (req, res, next) => void handler(req, res, next));
    const server = createServer(app);
    const port = await listening(server);
    return { url: `http://127.0.0.1:${port}${base}/`, close: () => closing(server) };
  }
  if (framework === 'fastify') {
    const app = Fastify();
    const route = (request: { raw: Parameters<DashboardHandler>[0] }, reply: { hijack(): void; raw: Parameters<DashboardHandler>[1] }): Promise<void> => {
      reply.hijack();
      return handler(request.raw, reply.raw);
    };
    app.all(base, route);
    app.all(`${base}/*`, route);
    await app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = app.server.address() as AddressInfo;
    return { url: `http://127.0.0.1:${port}${base}/`, close: () => app.close() };
  }
  const app = new Hono<{ Bindings: { incoming: Parameters<DashboardHandler>[0]; outgoing: Parameters<DashboardHandler>[1] } }>();
  const route = async (c: { env: { incoming: Parameters<DashboardHandler>[0]; outgoing: Parameters<DashboardHandler>[1] } }) => {
    await handler(c.env.incoming, c.env.outgoing);
    return RESPONSE_ALREADY_SENT;
  };
  app.all(base, route);
  app.all(`${base}/*`, route);
  const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }) as Server;
  const port = await new Promise<number>((resolve) => {
    if (server.listening) resolve((server.address() as AddressInfo).port);
    else server.once('listening', () => resolve((server.address() as AddressInfo).port));
  });
  return { url: `http://127.0.0.1:${port}${base}/`, close: () => closing(server) };
}

/** POSTs an action the way the page does (with its header). */
export function act(url: string): Promise<Response> {
  return fetch(url, { method: 'POST', headers: { 'x-cyredis-dashboard': '1' } });
}

/** Reads an event stream until `until` returns true for the frames seen so far (or the deadline passes). */
export async function readEvents(url: string, until: (frames: { event: string; data: Record<string, unknown> }[]) => boolean, timeoutMs = 20_000) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  const frames: { event: string; data: Record<string, unknown> }[] = [];
  try {
    const res = await fetch(url, { signal: controller.signal });
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end: number;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const event = /^event: (.*)$/m.exec(frame)?.[1];
        const data = /^data: (.*)$/m.exec(frame)?.[1];
        if (event !== undefined && data !== undefined) frames.push({ event, data: JSON.parse(data) as Record<string, unknown> });
      }
      if (until(frames)) return frames;
    }
  } finally {
    clearTimeout(timer);
    controller.abort();
  }
  throw new Error(`the event stream ended before the expected events; got ${JSON.stringify(frames)}`);
}
