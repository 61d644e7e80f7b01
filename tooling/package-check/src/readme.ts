// The ts code blocks of the READMEs, found and turned into modules a reader could save and run.
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
 * A block as the module a reader would save and run: its code exactly as written (it declares its own client
 * and closes what it opens, nothing is injected), marked as a module so top-level `await` works.
 */
export function asModule(block: CodeBlock): string {
  return `${block.code}\nexport {};\n`;
}
