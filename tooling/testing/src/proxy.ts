import net from 'node:net';

interface Pair {
  client: net.Socket;
  server: net.Socket;
}

/**
 * A TCP proxy in front of one Redis server that injects network faults: latency, dropping one direction,
 * resetting every connection, refusing new ones. Point a client at `proxy.port`.
 */
export class FaultProxy {
  /** Added to every chunk, both directions. */
  latencyMs = 0;
  /** Discard bytes client → server (requests vanish). */
  dropRequests = false;
  /** Discard bytes server → client (replies vanish; the command still runs). */
  dropReplies = false;
  /** Destroy new connections at once. */
  refuseConnections = false;

  private readonly pairs = new Set<Pair>();

  private constructor(
    private readonly listener: net.Server,
    readonly port: number,
  ) {}

  static async start(target: { host: string; port: number }): Promise<FaultProxy> {
    const listener = net.createServer();
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
    const proxy = new FaultProxy(listener, (listener.address() as net.AddressInfo).port);
    listener.on('connection', (client: net.Socket) => proxy.accept(client, target));
    return proxy;
  }

  readonly host = '127.0.0.1';

  get connectionCount(): number {
    return this.pairs.size;
  }

  /** Resets every open connection (RST both ways), as a broken network would. */
  resetAll(): void {
    for (const { client, server } of this.pairs) {
      client.resetAndDestroy();
      server.resetAndDestroy();
    }
    this.pairs.clear();
  }

  /** Clears every fault. */
  heal(): void {
    this.latencyMs = 0;
    this.dropRequests = false;
    this.dropReplies = false;
    this.refuseConnections = false;
  }

  async close(): Promise<void> {
    this.resetAll();
    await new Promise<void>((resolve) => this.listener.close(() => resolve()));
  }

  private accept(client: net.Socket, target: { host: string; port: number }): void {
    if (this.refuseConnections) {
      client.resetAndDestroy();
      return;
    }
    const server = net.connect(target.port, target.host);
    const pair = { client, server };
    this.pairs.add(pair);
    const end = () => {
      this.pairs.delete(pair);
      client.destroy();
      server.destroy();
    };
    client.on('error', end).on('close', end);
    server.on('error', end).on('close', end);
    this.pipe(client, server, () => this.dropRequests);
    this.pipe(server, client, () => this.dropReplies);
  }

  private pipe(from: net.Socket, to: net.Socket, dropping: () => boolean): void {
    // Chunks keep their order even when latency changes mid-stream: each waits for the one before it.
    let last = Promise.resolve();
    from.on('data', (chunk: Buffer) => {
      if (dropping()) return;
      const due = Date.now() + this.latencyMs;
      last = last.then(async () => {
        const wait = due - Date.now();
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
        if (!to.destroyed) to.write(chunk);
      });
    });
  }
}
