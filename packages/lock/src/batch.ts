import { TickBatcher, type LuaScriptManager, type RegisteredScript } from '@cyredis/core';

/** The script's reply to one operation: ok, owner, remaining ttl (ms), fencing token. */
export type Reply = [ok: number, owner: string, ttlMs: number, token: number | string];

export type Mode = 'acquire' | 'wait' | 'extend' | 'release' | 'status' | 'force';

interface Op {
  key: string;
  owner: string;
  ttlMs: number;
  mode: Mode;
}

/** Operations per call (the script takes up to 256). */
const BATCH_SIZE = 64;

/**
 * Sends the operations started in one tick on one single-node client as one script call (the script's
 * batch form); on a cluster one call cannot span the slots of several resources.
 */
export function lockBatcher(scripts: LuaScriptManager, script: RegisteredScript, timeoutMs: number | undefined): TickBatcher<Op, Reply> {
  return new TickBatcher<Op, Reply>(async (ops) => {
    const n = ops.length;
    if (n === 1) {
      const { key, owner, ttlMs, mode } = ops[0]!;
      return [await scripts.executeScript<Reply>(script, { keys: [key], args: [owner, ttlMs, mode], timeoutMs })];
    }
    const keys = new Array<string>(n);
    const args = new Array<string | number>(3 * n);
    for (let i = 0; i < n; i++) {
      const op = ops[i]!;
      keys[i] = op.key;
      args[3 * i] = op.owner;
      args[3 * i + 1] = op.ttlMs;
      args[3 * i + 2] = op.mode;
    }
    return scripts.executeScript<Reply[]>(script, { keys, args, timeoutMs });
  }, BATCH_SIZE);
}
