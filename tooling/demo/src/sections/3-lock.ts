import { LockManager } from '@cyredis/lock';
import type { DemoContext } from '../context.js';

export const title = '@cyredis/lock: fencing tokens, a waiter woken by the release, using() with a lost lease';

export default async function demo({ redis, prefix, log }: DemoContext): Promise<void> {
  const locks = new LockManager(redis, { prefix, ttlMs: 10_000 });
  try {
    const first = await locks.acquire('invoice:42');
    log(`acquired invoice:42, fencing token ${first.fencingToken}, lease ${Math.round(first.remainingMs)} ms`);
    log(`a second try while it is held gives ${(await locks.tryAcquire('invoice:42')) === null ? 'null' : 'a lock'}`);

    const waiting = locks.acquire('invoice:42', { waitMs: 5_000 });
    const releasedAt = performance.now();
    await first.release();
    const second = await waiting;
    log(`a waiter got it ${(performance.now() - releasedAt).toFixed(2)} ms after the release, token ${second.fencingToken}`);
    await second.release();

    const total = await locks.using('report', async (signal, lock) => {
      log(`using(): holding "report" with token ${lock.fencingToken}, signal aborted: ${signal.aborted}`);
      return (await locks.status('report')).locked ? 2 : 0;
    });
    log(`using() returned ${total}; status afterwards: ${JSON.stringify(await locks.status('report'), (_, v: unknown) => (typeof v === 'bigint' ? String(v) : v))}`);

    // using() rejects with LockLostError when the lease was lost while the routine ran, even if it returned.
    const lost = await locks
      .using(
        'job',
        async (signal) => {
          await locks.forceUnlock('job');
          await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
          return signal.reason instanceof Error ? signal.reason.name : 'not aborted';
        },
        { ttlMs: 300 },
      )
      .then(
        (aborted) => `returned after its signal aborted with ${aborted}`,
        (err: unknown) => `rejected with ${err instanceof Error ? err.name : String(err)}`,
      );
    log(`after a force unlock, using() ${lost}`);
  } finally {
    await locks.close();
  }
}
