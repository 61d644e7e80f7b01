import { execFile, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { waitFor } from '@cyredis/testing';
import { clusterSeeds, redisUrl, type Topology } from '@cyredis/testing/context';

/** The built executable, run the way npm's bin link runs it. */
export const BIN = fileURLToPath(new URL('../dist/bin.js', import.meta.url));

/** What one run of the executable did. */
export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** The environment of a run: this one without REDIS_URL (each test says where Redis is). */
function environment(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const { REDIS_URL: _url, ...rest } = process.env;
  return { ...rest, NO_COLOR: '1', ...extra };
}

/** Runs `cyredis args…` to its end (stdin is not a terminal). */
export function run(args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env: environment(env), timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

/** The connection flags of the run's single node or cluster. */
export function target(topology: Topology): string[] {
  if (topology === 'single') return ['--url', redisUrl()];
  const [seed] = clusterSeeds();
  return ['--cluster', '--url', `redis://${seed!.host}:${seed!.port}`];
}

/** A run that follows (`events`): its output so far, and a way to stop it with SIGINT. */
export function follow(args: readonly string[]): { stdout: () => string; stderr: () => string; stop: () => Promise<number | null> } {
  const child = spawn(process.execPath, [BIN, ...args], { env: environment(), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return {
    stdout: () => out,
    stderr: () => err,
    stop: async () => {
      child.kill('SIGINT');
      return exited;
    },
  };
}

/** Parses a `--json` run's output, failing with its stderr when it did not succeed. */
export function json<T = unknown>(result: Run): T {
  if (result.code !== 0) throw new Error(`exit ${result.code}: ${result.stderr}`);
  return JSON.parse(result.stdout) as T;
}

/** Waits until `read` answers true (a registry write happens in the background). */
export async function until(read: () => Promise<boolean>): Promise<void> {
  await waitFor(read, { timeoutMs: 20_000 });
}
