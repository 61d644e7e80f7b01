// One script call per lock operation, and the tick batcher that sends the operations of one tick together.
import { CyRedisError, TickBatcher, toBigInt, type LuaScriptManager, type RegisteredScript } from '@cyredis/core';
import type { NodeOutcome } from './errors.js';

/** What one node said to one operation; `token` is the holder's (or, when free, the last issued) token. */
export interface Outcome extends NodeOutcome {
  state: NodeOutcome['state'];
  token: bigint;
}

export type Mode = 'acquire' | 'wait' | 'extend' | 'release' | 'status' | 'force' | 'fence';

/** One operation on one node; `floor` only for `fence`. */
export interface Op {
  key: string;
  owner: string;
  ttlMs: number;
  mode: Mode;
  floor?: bigint;
}

/**
 * The script's reply to one operation: ok, holder, remaining ttl (ms), fencing token; or, for a granted
 * operation sent with a compact code, the token alone.
 */
type Reply = [ok: number, owner: string, ttlMs: number, token: number | string] | number | string;

/** The compact codes: a granted operation replies with its token alone. */
const CODES: Partial<Record<Mode, string>> = { acquire: 'a', wait: 'w', extend: 'e', release: 'r' };

/**
 * Operations per call (the script takes up to 256). 32 rather than more: at 64 or more in flight, two or
 * more calls are then on their way, so the server runs one while the client handles the replies of the
 * other (measured here: more cycles/s at 64 and 128 in flight than with 64 per call, the same at 16; 22
 * per call lost more to the per-call cost than it gained).
 */
const BATCH_SIZE = 32;

function outcome(node: number, op: Op, reply: Reply): Outcome {
  if (typeof reply !== 'object') {
    return { node, state: 'granted', owner: op.owner, ttlMs: op.mode === 'release' ? 0 : op.ttlMs, token: toBigInt(reply) };
  }
  return { node, state: reply[0] === 1 ? 'granted' : 'refused', owner: reply[1], ttlMs: reply[2], token: toBigInt(reply[3]) };
}

/** The outcome of a call that got no usable reply: one object per operation, since callers amend theirs. */
function failed(node: number, err: unknown): Outcome {
  return { node, state: 'failed', error: err as Error, token: 0n };
}

/** Runs one operation in the script's single-key form; never rejects (a failure is an outcome). */
export function runOne(node: number, scripts: LuaScriptManager, script: RegisteredScript, op: Op, timeoutMs: number): Promise<Outcome> {
  const mode = CODES[op.mode] ?? op.mode;
  const args = op.mode === 'fence' ? [op.owner, op.ttlMs, mode, op.floor ?? 0n] : [op.owner, op.ttlMs, mode];
  return scripts.executeScript<Reply>(script, { keys: [op.key], args, timeoutMs }).then(
    (reply) => outcome(node, op, reply),
    (err: unknown) => failed(node, err),
  );
}

/** A lone outcome as the batch's one-element result. */
export function one(outcome: Outcome): Outcome[] {
  return [outcome];
}

/** The batch form: one call for n ≥ 2 operations; a failed call is a `failed` outcome for each. */
async function runMany(node: number, scripts: LuaScriptManager, script: RegisteredScript, ops: Op[], timeoutMs: number): Promise<Outcome[]> {
  const n = ops.length;
  const keys = new Array<string>(n);
  const args = new Array<string | number>(3 * n);
  for (let i = 0; i < n; i++) {
    const op = ops[i]!;
    keys[i] = op.key;
    args[3 * i] = op.owner;
    args[3 * i + 1] = op.ttlMs;
    args[3 * i + 2] = CODES[op.mode] ?? op.mode;
  }
  const outcomes = new Array<Outcome>(n);
  try {
    const replies = await scripts.executeScript<Reply[]>(script, { keys, args, timeoutMs });
    if (!Array.isArray(replies) || replies.length !== n) throw new CyRedisError(`batch reply has ${String(replies?.length)} results for ${n} operations`);
    for (let i = 0; i < n; i++) outcomes[i] = outcome(node, ops[i]!, replies[i]!);
  } catch (err) {
    for (let i = 0; i < n; i++) outcomes[i] = failed(node, err);
  }
  return outcomes;
}

/**
 * Sends the operations started in one tick on one single-node client as one script call (the script's
 * batch form; a lone operation in the single-key form); on a cluster one call cannot span the slots of
 * several resources. Never rejects: a failed call is a `failed` outcome for each of its operations.
 */
export function lockBatcher(node: number, scripts: LuaScriptManager, script: RegisteredScript, timeoutMs: number): TickBatcher<Op, Outcome> {
  return new TickBatcher<Op, Outcome>(
    (ops) => (ops.length === 1 ? runOne(node, scripts, script, ops[0]!, timeoutMs).then(one) : runMany(node, scripts, script, ops, timeoutMs)),
    BATCH_SIZE,
  );
}
