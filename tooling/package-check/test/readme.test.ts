import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { randomPrefix } from '@cyredis/testing';
import { redisUrl } from '@cyredis/testing/context';
import ts from 'typescript';
import { beforeAll, describe, expect, it } from 'vitest';
import { asModule, readmes, tsBlocks } from '../src/readme.js';
import { ROOT, run } from '../src/workspace.js';

// Blocks run from inside this package so `@cyredis/*` and `ioredis` resolve to the workspace builds.
const dir = path.join(import.meta.dirname, '..', '.readme-blocks');
const blocks = readmes().flatMap(tsBlocks);
const fileOf = (id: string) => id.replace(/[^\w]+/g, '_');
// A block must finish and exit on its own well within this: one still running has left a handle open.
const EXIT_WITHIN_MS = 30_000;

/** The test server's URL with a random key prefix (ioredis reads options from the query string). */
function isolatedUrl(): string {
  const url = new URL(redisUrl());
  url.searchParams.set('keyPrefix', `${randomPrefix('readme')}:`);
  return url.toString();
}

describe('README code blocks', () => {
  beforeAll(() => {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    for (const block of blocks) writeFileSync(path.join(dir, `${fileOf(block.id)}.ts`), asModule(block));
  });

  it('every README has at least one ts block', () => {
    expect(new Set(blocks.map((b) => b.file))).toEqual(new Set(readmes().filter((f) => f !== 'README.md')));
  });

  it('every package README says the packages are ESM-only and what CommonJS users do', () => {
    for (const file of readmes().filter((f) => f !== 'README.md')) {
      const text = readFileSync(path.join(ROOT, file), 'utf8');
      expect(text, file).toMatch(/ESM-only/);
      expect(text, file).toMatch(/require\(\)/);
      expect(text, file).toMatch(/"module": "nodenext"/);
    }
  });

  it('type-check as written', async () => {
    const config = {
      extends: path.join(ROOT, 'tooling/tsconfig/base.json'),
      compilerOptions: { rootDir: '.', noEmit: true, noUnusedLocals: false },
      include: ['*.ts'],
    };
    writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify(config));
    await run('node', [path.join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json'], dir);
  });

  it('a block that leaves its client open does not pass', async () => {
    const block = { id: 'open-client', file: 'README.md', line: 1, code: "import { Redis } from 'ioredis';\nconst redis = new Redis(process.env.REDIS_URL!);\nawait redis.ping();" };
    const file = path.join(dir, 'open_client.mjs');
    writeFileSync(file, ts.transpileModule(asModule(block), { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } }).outputText);
    await expect(run('node', [file], dir, { REDIS_URL: isolatedUrl() }, 3_000)).rejects.toThrow(/still running after 3000 ms/);
  });

  it.each(blocks.map((b) => [b.id, b] as const))('%s runs against Redis and exits on its own', async (_, block) => {
    const js = ts.transpileModule(asModule(block), {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
    }).outputText;
    const file = path.join(dir, `${fileOf(block.id)}.mjs`);
    writeFileSync(file, js);
    await run('node', [file], dir, { REDIS_URL: isolatedUrl() }, EXIT_WITHIN_MS);
  });
});
