import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT } from './workspace.js';

export interface CodeBlock {
  /** e.g. `packages/lock/README.md#3` */
  id: string;
  file: string;
  /** 1-based line of the opening fence. */
  line: number;
  code: string;
}

/** The READMEs users read: the root one and every package's. */
export function readmes(): string[] {
  const pkgs = readdirSync(path.join(ROOT, 'packages')).map((dir) => path.join('packages', dir, 'README.md'));
  return ['README.md', ...pkgs].filter((file) => {
    try {
      readFileSync(path.join(ROOT, file));
      return true;
    } catch {
      return false;
    }
  });
}

/** Every fenced ```ts / ```typescript block of a markdown file. */
export function tsBlocks(file: string): CodeBlock[] {
  const lines = readFileSync(path.join(ROOT, file), 'utf8').split('\n');
  const blocks: CodeBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (!/^```(ts|typescript)\s*$/.test(lines[i]!)) continue;
    const start = i;
    const body: string[] = [];
    while (++i < lines.length && !lines[i]!.startsWith('```')) body.push(lines[i]!);
    blocks.push({ id: `${file}#${blocks.length + 1}`, file, line: start + 1, code: body.join('\n') });
  }
  return blocks;
}

/**
 * Makes a block a runnable module: it gets `redis` (an ioredis client to the test server whose keys all
 * carry a random prefix) unless it declares its own, and the process exits once the block has finished.
 */
export function asModule(block: CodeBlock, keyPrefix: string): string {
  const declaresRedis = /\b(const|let|var)\s+redis\b/.test(block.code);
  const prelude = declaresRedis
    ? ''
    : `import { Redis as __Redis } from 'ioredis';\nconst redis = new __Redis(process.env.REDIS_URL!, { keyPrefix: ${JSON.stringify(`${keyPrefix}:`)} });\n`;
  return `${prelude}${block.code}\nexport {};\n`;
}
