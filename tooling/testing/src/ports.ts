import net from 'node:net';

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/**
 * A port that is free now, chosen at random so parallel test processes rarely collide (a collision makes
 * redis-server exit at once, and the caller retries). `withBusPort` also reserves port + 10000, which a
 * cluster node opens for its bus.
 */
export async function freePort(options: { withBusPort?: boolean } = {}): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 35_000);
    if (!(await canBind(port))) continue;
    if (options.withBusPort && !(await canBind(port + 10_000))) continue;
    return port;
  }
  throw new Error('no free TCP port found on 127.0.0.1');
}
