import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { publishablePackages, removeTempDirs, ROOT, run, tempDir } from '../src/workspace.js';

const changeset = 'node_modules/@changesets/cli/bin.js';
const packages = publishablePackages();
afterAll(removeTempDirs);

/** A copy of the repo's files (tracked and new, not ignored), installed from the local store. */
async function copyRepo(): Promise<string> {
  const copy = tempDir('release');
  const files = (await run('git', ['ls-files', '-co', '--exclude-standard'], ROOT)).trim().split('\n');
  for (const file of files) {
    if (!existsSync(path.join(ROOT, file))) continue;
    mkdirSync(path.dirname(path.join(copy, file)), { recursive: true });
    cpSync(path.join(ROOT, file), path.join(copy, file));
  }
  // Workspace links must point into the copy, so that packing sees the copy's bumped versions.
  await run('pnpm', ['install', '--offline', '--frozen-lockfile', '--ignore-scripts'], copy, { CI: 'true' });
  return copy;
}

function versions(copy: string): Record<string, string> {
  return Object.fromEntries(
    packages.map((p) => {
      const manifest = JSON.parse(readFileSync(path.join(copy, 'packages', p.dir, 'package.json'), 'utf8')) as { version: string };
      return [p.dir, manifest.version];
    }),
  );
}

function onlyChangeset(copy: string, name: string, body: string): void {
  const dir = path.join(copy, '.changeset');
  for (const f of readdirSync(dir)) if (f.endsWith('.md') && f !== 'README.md') rmSync(path.join(dir, f));
  writeFileSync(path.join(dir, `${name}.md`), body);
}

describe('release dry run (changesets)', () => {
  it('versions the pending changesets and every package publishes (dry run)', async () => {
    const copy = await copyRepo();
    const before = versions(copy);
    await run('node', [changeset, 'version'], copy);
    const after = versions(copy);
    const pending = readdirSync(path.join(ROOT, '.changeset')).filter((f) => f.endsWith('.md') && f !== 'README.md');
    if (pending.length > 0) expect(after).not.toEqual(before);
    for (const pkg of packages) {
      const dir = path.join(copy, 'packages', pkg.dir);
      const out = await run('pnpm', ['publish', '--dry-run', '--no-git-checks'], dir);
      expect(out).toContain(`${pkg.name}@${after[pkg.dir]}`);
      if (after[pkg.dir] === before[pkg.dir]) continue;
      // changesets writes the release notes, and they ship in the tarball.
      expect(readFileSync(path.join(dir, 'CHANGELOG.md'), 'utf8')).toContain(`## ${after[pkg.dir]}`);
      const packed = JSON.parse(await run('pnpm', ['pack', '--dry-run', '--json'], dir)) as { files: { path: string }[] };
      expect(packed.files.map((f) => f.path)).toContain('CHANGELOG.md');
    }
  }, 300_000);

  it('bumps one package alone, and a core release patches its dependents with the new range', async () => {
    const copy = await copyRepo();
    const start = versions(copy);
    onlyChangeset(copy, 'lock-fix', '---\n"@cyredis/lock": patch\n---\n\nA lock fix.\n');
    await run('node', [changeset, 'version'], copy);
    const afterLock = versions(copy);
    expect(readFileSync(path.join(copy, 'packages/lock/CHANGELOG.md'), 'utf8')).toMatch(new RegExp(`## ${afterLock.lock}\\n\\n### Patch Changes\\n\\n- [^\\n]*A lock fix\\.`));
    for (const pkg of packages) {
      if (pkg.dir === 'lock') expect(afterLock.lock).not.toBe(start.lock);
      else expect(afterLock[pkg.dir]).toBe(start[pkg.dir]);
    }

    onlyChangeset(copy, 'core-feature', '---\n"@cyredis/core": minor\n---\n\nA core feature.\n');
    await run('node', [changeset, 'version'], copy);
    const afterCore = versions(copy);
    expect(afterCore.core).not.toBe(afterLock.core);
    for (const pkg of packages.filter((p) => p.dir !== 'core')) {
      expect(afterCore[pkg.dir]).not.toBe(afterLock[pkg.dir]);
      const [major, minor] = afterLock[pkg.dir]!.split('.');
      expect(afterCore[pkg.dir]!.startsWith(`${major}.${minor}.`)).toBe(true);
      const packed = await run('pnpm', ['pack', '--dry-run', '--json'], path.join(copy, 'packages', pkg.dir));
      expect(packed).toContain(`"version": "${afterCore[pkg.dir]}"`);
    }
    const dependent = path.join(copy, 'packages/lock');
    const dest = tempDir('release-pack');
    await run('pnpm', ['pack', '--pack-destination', dest], dependent);
    const tgz = path.join(dest, readdirSync(dest)[0]!);
    const manifest = JSON.parse(await run('tar', ['-xzOf', tgz, 'package/package.json'], dest)) as { dependencies: Record<string, string> };
    expect(manifest.dependencies['@cyredis/core']).toBe(`^${afterCore.core}`);
  }, 300_000);
});
