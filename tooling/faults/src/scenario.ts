import type { RedisClient } from '@cyredis/core';
import { randomPrefix } from '@cyredis/testing';
import { SteadyLoad, type LoadReport } from './load.js';
import type { Workload } from './workloads.js';

export interface ScenarioOptions {
  /** Passed to the workload: the lock waits for this many replicas. */
  replicas?: number;
  /** Successful calls required after the fault, to prove traffic resumed. */
  resumeCalls?: number;
  /** Key prefix of the workload; default: a random one. */
  prefix?: string;
}

/**
 * Runs `w` under steady load on `client`, applies `fault` once traffic flows, waits for traffic to resume,
 * then checks the package's promises. `fault` returns `{ lossy: true }` when it may drop acknowledged
 * writes. Resolves with the load report (also printed, so CI logs show what failed and how).
 */
export async function underLoad(
  w: Workload,
  client: RedisClient,
  fault: (load: SteadyLoad) => Promise<{ lossy?: boolean } | void>,
  options: ScenarioOptions = {},
): Promise<LoadReport> {
  const run = w.start(client, options.prefix ?? randomPrefix(w.name), { replicas: options.replicas ?? 0 });
  const load = new SteadyLoad(run.op).start();
  try {
    await load.resumed(20);
    const lossy = (await fault(load))?.lossy ?? false;
    await load.resumed(options.resumeCalls ?? 50);
    const report = await load.stop();
    console.log(`${w.name}: ${report.ok} calls ok, ${report.failed} failed ${JSON.stringify(report.byKind)}`);
    if (report.untyped.length > 0) throw new Error(`untyped errors reached callers: ${report.untyped.slice(0, 5).join(' | ')}`);
    // A lost script cache (flush, restart, promoted replica) must never surface, whatever else failed.
    if (Object.keys(report.byKind).some((kind) => kind.includes('NOSCRIPT'))) throw new Error(`NOSCRIPT reached callers: ${JSON.stringify(report.byKind)}`);
    await run.verify({ failed: report.failed, lossy });
    return report;
  } finally {
    await load.stop();
    await run.close();
  }
}

/** Every master of a client: the client itself on a single node. */
export function mastersOf(client: RedisClient): RedisClient[] {
  return 'nodes' in client && typeof client.nodes === 'function' ? client.nodes('master') : [client];
}
