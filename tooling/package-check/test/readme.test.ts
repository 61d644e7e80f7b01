import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
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

describe('README code blocks', () => {
  beforeAll(() => {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    for (const block of blocks) writeFileSync(path.join(dir, `${fileOf(block.id)}.ts`), asModule(block, randomPrefix('readme')));
  });

  it('every README has at least one ts block', () => {
    expect(new Set(blocks.map((b) => b.file))).toEqual(new Set(readmes().filter((f) => f !== 'README.md')));
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

  it.each(blocks.map((b) => [b.id, b] as const))('%s runs against Redis', async (_, block) => {
    const js = ts.transpileModule(asModule(block, randomPrefix('readme')), {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
    }).outputText;
    const file = path.join(dir, `${fileOf(block.id)}.mjs`);
    writeFileSync(file, `${js}\nprocess.exit(0);\n`);
    await run('node', [file], dir, { REDIS_URL: redisUrl() });
  });
});
