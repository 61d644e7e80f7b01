// Opens the Redis connection the global options describe: URL (REDIS_URL), cluster, TLS and ACL credentials.
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import type { ConnectionOptions } from 'node:tls';
import { Cluster, Redis } from 'ioredis';
import { CliError, EXIT } from './errors.js';

/** The connection part of the global options. */
export interface ConnectionSettings {
  /** `redis://[user:password@]host:port[/db]` or `rediss://…` (TLS). */
  url: string;
  /** Treat the URL's host as a seed of a Redis Cluster. */
  cluster: boolean;
  /** PEM file of the CA bundle that verifies the server. Turns TLS on. */
  tlsCa?: string;
  /** PEM file of the client certificate (mutual TLS). Turns TLS on. */
  tlsCert?: string;
  /** PEM file of the client key (mutual TLS). Turns TLS on. */
  tlsKey?: string;
  /** Accept a server certificate that does not verify (testing only). */
  tlsInsecure: boolean;
  /** How long connecting and each call may take, in ms. */
  timeoutMs: number;
}

const AUTH_REFUSED = /NOAUTH|WRONGPASS|NOPERM/;

function readPem(flag: string, file: string | undefined): string | undefined {
  if (file === undefined) return undefined;
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new CliError(`${flag}: cannot read ${file}: ${(err as Error).message}`, EXIT.usage);
  }
}

/** The TLS options, or undefined for a plain connection. */
function tlsOptions(settings: ConnectionSettings, url: URL): ConnectionOptions | undefined {
  const ca = readPem('--tls-ca', settings.tlsCa);
  const cert = readPem('--tls-cert', settings.tlsCert);
  const key = readPem('--tls-key', settings.tlsKey);
  const wanted = url.protocol === 'rediss:' || ca !== undefined || cert !== undefined || key !== undefined || settings.tlsInsecure;
  if (!wanted) return undefined;
  return {
    ...(ca === undefined ? {} : { ca }),
    ...(cert === undefined ? {} : { cert }),
    ...(key === undefined ? {} : { key }),
    ...(settings.tlsInsecure ? { rejectUnauthorized: false } : {}),
    // SNI takes host names only (Node warns about an address).
    ...(isIP(url.hostname.replace(/^\[|\]$/g, '')) === 0 ? { servername: url.hostname } : {}),
  };
}

function parseUrl(text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new CliError(`--url: not a URL: ${text}`, EXIT.usage);
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') throw new CliError(`--url: must start with redis:// or rediss://, got ${url.protocol}//`, EXIT.usage);
  return url;
}

/**
 * Connects and resolves once the server (every cluster node the client needs) answered; rejects with the
 * connection's error, without retrying, so an unreachable server is reported at once.
 */
export async function connect(settings: ConnectionSettings): Promise<Redis | Cluster> {
  const url = parseUrl(settings.url);
  const tls = tlsOptions(settings, url);
  const username = url.username === '' ? undefined : decodeURIComponent(url.username);
  const password = url.password === '' ? undefined : decodeURIComponent(url.password);
  const db = url.pathname.length > 1 ? Number(url.pathname.slice(1)) : 0;
  if (!Number.isInteger(db) || db < 0) throw new CliError(`--url: the database must be a number, got ${url.pathname.slice(1)}`, EXIT.usage);
  const host = url.hostname.replace(/^\[|\]$/g, '') || 'localhost';
  const port = url.port === '' ? 6379 : Number(url.port);
  const common = {
    ...(username === undefined ? {} : { username }),
    ...(password === undefined ? {} : { password }),
    ...(tls === undefined ? {} : { tls }),
    connectTimeout: settings.timeoutMs,
    lazyConnect: true,
    maxRetriesPerRequest: 1,
  };
  let client: Redis | Cluster;
  if (settings.cluster) {
    if (db !== 0) throw new CliError('--url: a cluster has only database 0', EXIT.usage);
    client = new Cluster([{ host, port }], {
      lazyConnect: true,
      redisOptions: common,
      clusterRetryStrategy: () => null,
      // TLS certificates name the hosts the seed is known by, not the addresses the cluster announces.
      ...(tls === undefined ? {} : { dnsLookup: (address: string, done: (err: Error | null, address: string) => void) => done(null, address) }),
    });
  } else {
    client = new Redis({ ...common, host, port, db, retryStrategy: () => null });
  }
  // The socket's own error (ECONNREFUSED, a TLS failure) says more than the rejection ("Connection is closed").
  let socketError: Error | undefined;
  client.on('error', (err: Error) => (socketError ??= err));
  try {
    await client.connect();
    // A cluster is usable once it knows its slots; a PING fails fast when the credentials are wrong.
    await client.ping();
  } catch (err) {
    client.disconnect();
    if (socketError === undefined || AUTH_REFUSED.test((err as Error).message)) throw err;
    // A refused AUTH arrives as the connection's error too: keep it as it is, for its exit code.
    if (AUTH_REFUSED.test(socketError.message)) throw socketError;
    throw new CliError(`cannot reach Redis at ${host}:${port}: ${socketError.message}`, EXIT.unreachable);
  }
  return client;
}
