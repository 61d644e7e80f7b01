// `pnpm demo` runs to the end: every section against its own private Redis, exit code 0.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

it('runs every section and exits 0', async () => {
  const entry = fileURLToPath(new URL('../dist/index.js', import.meta.url));
  const env = { ...process.env };
  delete env.REDIS_URL; // its own private Redis, never a shared one
  const child = spawn(process.execPath, [entry], { stdio: ['ignore', 'pipe', 'pipe'], env });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  expect(output).toContain('demo finished');
  expect(code, output).toBe(0);
});
