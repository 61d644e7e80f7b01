import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis, type RedisOptions } from 'ioredis';
import { freePort } from './ports.js';
import type { TlsFiles } from './tls.js';
import { waitFor } from './wait.js';

export const REDIS_SERVER_MISSING =
  'redis-server was not found on PATH. Install it (Debian/Ubuntu: `apt-get install redis-server`, ' +
  'macOS: `brew install redis`), or point the tests at a running server with REDIS_URL=redis://host:port.';

export interface ServerOptions {
  /** Fixed port; default: a random free one. */
  port?: number;
  /** Extra `redis-server` arguments, e.g. `['--maxmemory', '10mb']`. */
  args?: string[];
  /** Start as a cluster node (also reserves the bus port). */
  cluster?: boolean;
  /** Start as a sentinel: writes its config file into the server's folder and returns the path. */
  sentinel?: (dir: string) => string;
  /** Serve TLS only (the plain port is closed), with certificates from `testCertificates()`. */
  tls?: TlsFiles;
}

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** A private `redis-server` process: no persistence, debug commands allowed locally, killed by PID. */
export class RedisServer {
  readonly host = '127.0.0.1';
  private child: ChildProcess | undefined;

  private constructor(
    readonly port: number,
    readonly dir: string,
    private readonly extraArgs: string[],
    /** Sentinel config file, when this is a sentinel. */
    private readonly sentinelConfig?: string,
    /** Certificates, when this server speaks TLS only. */
    readonly tls?: TlsFiles,
  ) {}

  static async start(options: ServerOptions = {}): Promise<RedisServer> {
    let lastError: unknown;
    for (let attempt = 0; attempt < 5; attempt++) {
      const port = options.port ?? (await freePort({ withBusPort: options.cluster ?? false }));
      const dir = mkdtempSync(path.join(tmpdir(), `cyredis-${port}-`));
      const args = [...(options.cluster ? ['--cluster-enabled', 'yes', '--cluster-node-timeout', '2000'] : []), ...(options.args ?? [])];
      const server = new RedisServer(port, dir, args, options.sentinel?.(dir), options.tls);
      try {
        await server.launch();
        return server;
      } catch (err) {
        lastError = err;
        if (options.port !== undefined || (err instanceof Error && err.message === REDIS_SERVER_MISSING)) throw err;
      }
    }
    throw lastError;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get url(): string {
    return `redis://${this.host}:${this.port}`;
  }

  get address(): { host: string; port: number } {
    return { host: this.host, port: this.port };
  }

  /** A new ioredis client for this server (over TLS when it speaks TLS); the caller closes it. */
  client(options: RedisOptions = {}): Redis {
    const tls = this.tls ? { tls: { ca: readFileSync(this.tls.ca), servername: 'localhost' } } : {};
    return new Redis({ host: this.host, port: this.port, ...tls, ...options });
  }

  /** Runs one command on a short-lived connection that never queues or retries. */
  async command(...args: (string | number)[]): Promise<unknown> {
    const client = this.client({ lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => null });
    client.on('error', () => undefined);
    try {
      await client.connect();
      const [name, ...rest] = args;
      return await client.call(String(name), ...rest);
    } finally {
      client.disconnect();
    }
  }

  /** `INFO <section>` as a field map. */
  async info(section: string): Promise<Record<string, string>> {
    const text = String(await this.command('INFO', section));
    return Object.fromEntries(
      text
        .split('\r\n')
        .filter((line) => line.includes(':'))
        .map((line) => [line.slice(0, line.indexOf(':')), line.slice(line.indexOf(':') + 1)]),
    );
  }

  /** Sends a signal by PID: SIGKILL crashes, SIGSTOP pauses, SIGCONT resumes. */
  signal(sig: NodeJS.Signals): void {
    this.child?.kill(sig);
  }

  pause(): void {
    this.signal('SIGSTOP');
  }

  resume(): void {
    this.signal('SIGCONT');
  }

  /** Crashes the process (SIGKILL) and waits for it to be gone. */
  async kill(): Promise<void> {
    const child = this.child;
    if (child?.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGCONT');
    child.kill('SIGKILL');
    await exited;
  }

  /** Starts the server again on the same port; with no persistence it comes back empty. */
  async restart(): Promise<void> {
    await this.kill();
    await this.launch();
  }

  async stop(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }

  private async launch(): Promise<void> {
    const ports = this.tls
      ? ['--port', '0', '--tls-port', String(this.port), '--tls-cert-file', this.tls.cert, '--tls-key-file', this.tls.key,
         '--tls-ca-cert-file', this.tls.ca, '--tls-auth-clients', 'no']
      : ['--port', String(this.port)];
    const common = ['--bind', this.host, '--dir', this.dir, '--logfile', 'redis.log', ...ports];
    const args = this.sentinelConfig
      ? [this.sentinelConfig, '--sentinel', ...common, ...this.extraArgs]
      : [...common, '--save', '', '--appendonly', 'no', '--enable-debug-command', 'local', ...this.extraArgs];
    const child = spawn('redis-server', args, { stdio: 'ignore' });
    const failed = new Promise<never>((_, reject) => {
      child.once('error', (err: NodeJS.ErrnoException) =>
        reject(err.code === 'ENOENT' ? new Error(REDIS_SERVER_MISSING) : err),
      );
      child.once('exit', (code, sig) => reject(new Error(`redis-server on ${this.port} exited (${code ?? sig}): ${this.log()}`)));
    });
    failed.catch(() => undefined);
    this.child = child;
    running.add(child);
    child.once('exit', () => running.delete(child));
    await Promise.race([failed, waitFor(async () => (await this.command('PING')) === 'PONG', { timeoutMs: 10_000, intervalMs: 10 })]);
  }

  private log(): string {
    try {
      return readFileSync(path.join(this.dir, 'redis.log'), 'utf8').split('\n').slice(-5).join('\n');
    } catch {
      return '(no log)';
    }
  }
}
