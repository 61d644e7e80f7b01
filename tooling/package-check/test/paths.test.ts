import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { machinePaths } from '../src/paths.js';
import { ROOT, run } from '../src/workspace.js';

describe('no machine paths in committed files', () => {
  it('finds home and work directories, not URLs or relative paths', () => {
    const home = ['', 'home', 'ada', 'repo'].join('/');
    const work = ['cd ', 'work', 'main && pnpm bench'].join('/');
    expect(machinePaths(`a\n${home}\nb`)).toEqual([`line 2: ${home}`]);
    expect(machinePaths(work)).toHaveLength(1);
    expect(machinePaths(['C:', 'Users', 'ada'].join('\\'))).toHaveLength(1);
    const tilde = ['~', 'work', 'x'].join('/');
    expect(machinePaths(`https://example.com/work/x and ./home/x and tooling/work/x and ${tilde}`)).toEqual([]);
  });

  it('no tracked (or new, unignored) file names a machine path', async () => {
    const files = (await run('git', ['ls-files', '-co', '--exclude-standard'], ROOT)).trim().split('\n');
    const found = files.flatMap((file) => {
      let text: string;
      try {
        text = readFileSync(path.join(ROOT, file), 'utf8');
      } catch {
        return []; // deleted in the work tree
      }
      return text.includes('\0') ? [] : machinePaths(text).map((hit) => `${file} ${hit}`);
    });
    expect(found).toEqual([]);
  });
});
