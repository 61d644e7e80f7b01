import { CyRedisError } from '@cyredis/core';
import { sleep, waitFor } from '@cyredis/testing';

export interface LoadReport {
  ok: number;
  failed: number;
  /** Failures by error class (and Redis error code), e.g. `RedisUnavailableError`, `ScriptError:OOM`. */
  byKind: Record<string, number>;
  /** Anything thrown that is not a `CyRedisError`: a broken promise of typed errors. */
  untyped: string[];
}

function kindOf(err: CyRedisError): string {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' ? `${err.name}:${code}` : err.name;
}

/**
 * Calls `op` from `concurrency` loops until stopped, as a service under steady traffic would, and counts
 * what failed and how. A failed loop pauses briefly, as a client backing off would, so an outage does not
 * turn into a busy loop.
 */
export class SteadyLoad {
  private stopped = false;
  private loops: Promise<void>[] = [];
  private counter = 0;
  readonly report: LoadReport = { ok: 0, failed: 0, byKind: {}, untyped: [] };

  constructor(
    private readonly op: (i: number) => Promise<void>,
    private readonly concurrency = 8,
  ) {}

  start(): this {
    this.loops = Array.from({ length: this.concurrency }, async () => {
      while (!this.stopped) {
        try {
          await this.op(this.counter++);
          this.report.ok++;
        } catch (err) {
          this.report.failed++;
          if (err instanceof CyRedisError) {
            const kind = kindOf(err);
            this.report.byKind[kind] = (this.report.byKind[kind] ?? 0) + 1;
          } else {
            this.report.untyped.push(err instanceof Error ? `${err.name}: ${err.message}` : String(err));
          }
          await sleep(20);
        }
      }
    });
    return this;
  }

  /** Waits until `count` more calls have succeeded: proof that traffic resumed. */
  async resumed(count = 50, timeoutMs = 30_000): Promise<void> {
    const target = this.report.ok + count;
    await waitFor(() => this.report.ok >= target, { timeoutMs, message: `load did not resume (${JSON.stringify(this.report)})` });
  }

  async stop(): Promise<LoadReport> {
    this.stopped = true;
    await Promise.all(this.loops);
    return this.report;
  }
}
