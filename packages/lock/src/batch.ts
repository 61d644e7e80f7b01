import type { LuaScriptManager, RegisteredScript } from '@cyredis/core';

/** The script's reply to one operation: ok, owner, remaining ttl (ms), fencing token. */
export type Reply = [ok: number, owner: string, ttlMs: number, token: number | string];

export type Mode = 'acquire' | 'wait' | 'extend' | 'release' | 'status' | 'force';

interface Pending {
  key: string;
  owner: string;
  ttlMs: number;
  mode: Mode;
  resolve: (reply: Reply) => void;
  reject: (err: unknown) => void;
}

/** Operations per call (the script takes up to 256). */
const BATCH_SIZE = 64;

/**
 * Sends the operations started in one tick on one single-node client as one script call (the script's
 * batch form). Each operation still costs one round trip; the server runs one script instead of many and
 * the client writes and parses one command, which is what limits throughput at many calls in flight.
 */
export class Batcher {
  private queue: Pending[] = [];
  private collecting = false;

  constructor(
    private readonly scripts: LuaScriptManager,
    private readonly script: RegisteredScript,
    private readonly timeoutMs: number | undefined,
  ) {}

  run(key: string, owner: string, ttlMs: number, mode: Mode): Promise<Reply> {
    if (!this.collecting) {
      // The first operation of a tick goes at once (no added latency when one is in flight); the ones
      // after it in the same tick are collected.
      this.collecting = true;
      process.nextTick(this.flush);
      return this.scripts.executeScript<Reply>(this.script, { keys: [key], args: [owner, ttlMs, mode], timeoutMs: this.timeoutMs });
    }
    return new Promise<Reply>((resolve, reject) => {
      // Full batches go at once, so the server runs one while the client collects the next.
      if (this.queue.push({ key, owner, ttlMs, mode, resolve, reject }) === BATCH_SIZE) this.send(this.take());
    });
  }

  private take(): Pending[] {
    const queue = this.queue;
    this.queue = [];
    return queue;
  }

  private readonly flush = (): void => {
    this.collecting = false;
    if (this.queue.length > 0) this.send(this.take());
  };

  private send(batch: Pending[]): void {
    const n = batch.length;
    const keys = new Array<string>(n);
    const args = new Array<string | number>(3 * n);
    for (let i = 0; i < n; i++) {
      const p = batch[i]!;
      keys[i] = p.key;
      args[3 * i] = p.owner;
      args[3 * i + 1] = p.ttlMs;
      args[3 * i + 2] = p.mode;
    }
    this.scripts.executeScript<Reply | Reply[]>(this.script, { keys, args, timeoutMs: this.timeoutMs }).then(
      (reply) => {
        if (n === 1) batch[0]!.resolve(reply as Reply);
        else for (let i = 0; i < n; i++) batch[i]!.resolve((reply as Reply[])[i]!);
      },
      (err: unknown) => {
        for (const p of batch) p.reject(err);
      },
    );
  }
}
