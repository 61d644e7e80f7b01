// A standalone dashboard: the handler on its own node:http server (what `cyredis dashboard` starts).
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { InvalidArgumentError } from '@cyredis/core';
import { createDashboard, type DashboardOptions } from './dashboard.js';

/** Options of `serveDashboard`: the dashboard's, and where to listen. */
export interface ServeOptions extends Omit<DashboardOptions, 'basePath'> {
  /** TCP port; 0 picks a free one. Default 3000. */
  port?: number;
  /** Interface to listen on. Default `127.0.0.1` (only this machine: pass `0.0.0.0` and an `auth` to share it). */
  host?: string;
}

/** A running standalone dashboard. */
export interface DashboardServer {
  /** Where it answers, such as `http://127.0.0.1:3000/`. */
  url: string;
  /** The port it listens on. */
  port: number;
  /** Stops listening, ends the open pages' event streams and the queue event readers (the Redis client stays open). */
  close(): Promise<void>;
}

/** Starts the dashboard on its own HTTP server; resolves once it listens. */
export async function serveDashboard(options: ServeOptions): Promise<DashboardServer> {
  const { port = 3000, host = '127.0.0.1', ...dashboard } = options;
  if (!Number.isInteger(port) || port < 0 || port > 65_535) throw new InvalidArgumentError('options.port', 'must be an integer from 0 to 65535');
  const handler = createDashboard(dashboard);
  const server = createServer((req, res) => void handler(req, res));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const bound = (server.address() as AddressInfo).port;
  const shownHost = host.includes(':') ? `[${host}]` : host;
  return {
    url: `http://${shownHost}:${bound}/`,
    port: bound,
    async close() {
      await handler.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
