import { copyFileSync, readFileSync, realpathSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { randomPrefix } from '@cyredis/testing';
import { redisUrl } from '@cyredis/testing/context';
import ts from 'typescript';
import { beforeAll, describe, expect, it } from 'vitest';
import { pack, publishablePackages, ROOT, run, tempDir, type WorkspacePackage } from '../src/workspace.js';

const packages = publishablePackages();
const core = packages.find((p) => p.dir === 'core')!;
const tarballs = new Map<string, string>();
const tsc = path.join(ROOT, 'node_modules/typescript/bin/tsc');
// Optional peers the ratelimit middleware subpaths need at run time and for their types.
const extras: Record<string, string[]> = { ratelimit: ['express@^5', '@types/express@^5', 'fastify@^5', 'hono@^4'] };

beforeAll(async () => {
  const dest = tempDir('pack');
  for (const pkg of packages) tarballs.set(pkg.dir, await pack(pkg, dest));
}, 180_000);

describe.each(packages)('$name as a user installs it', (pkg: WorkspacePackage) => {
  let project: string;

  beforeAll(async () => {
    project = tempDir(`user-${pkg.dir}`);
    writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'user-app', private: true, type: 'module' }));
    const own = pkg.dir === 'core' ? [] : [tarballs.get(pkg.dir)!];
    await run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', tarballs.get('core')!, ...own, 'ioredis@^6', '@types/node@^20.19', ...(extras[pkg.dir] ?? [])], project);
    copyFileSync(path.join(import.meta.dirname, 'users', `${pkg.dir}.ts`), path.join(project, 'user.ts'));
  }, 180_000);

  it('ships only dist, lua, README and package.json, and reports its packed size', async () => {
    const listing = (await run('tar', ['-tzf', tarballs.get(pkg.dir)!], ROOT)).trim().split('\n');
    const allowed = /^package\/(package\.json|README\.md|LICENSE|CHANGELOG\.md|dist\/[\w/-]+\.(js|d\.ts)|lua\/\w+\.lua)$/;
    expect(listing.filter((f) => !allowed.test(f) || /test|spec|tsbuildinfo/.test(f))).toEqual([]);
    expect(listing).toContain('package/dist/index.js');
    expect(listing).toContain('package/README.md');
    const packed = statSync(tarballs.get(pkg.dir)!).size;
    console.log(`${pkg.name}: ${listing.length} files, packed ${(packed / 1024).toFixed(1)} KiB`);
  });

  it('resolves @cyredis/core from the packed tarball, never the workspace', () => {
    const installed = realpathSync(path.join(project, 'node_modules/@cyredis/core'));
    expect(installed.startsWith(realpathSync(project))).toBe(true);
    const manifest = JSON.parse(readFileSync(path.join(installed, 'package.json'), 'utf8')) as { version: string };
    expect(manifest.version).toBe(core.version);
    if (pkg.dir !== 'core') {
      const own = JSON.parse(readFileSync(path.join(project, 'node_modules', pkg.name, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
      expect(own.dependencies['@cyredis/core']).toBe(`^${core.version}`);
    }
  });

  it('imports every entry point of the exports map, .lua files included', async () => {
    const specs = Object.keys(pkg.manifest.exports).filter((k) => k !== './package.json').map((k) => pkg.name + k.slice(1));
    const check = `
      import { readFileSync } from 'node:fs';
      import { fileURLToPath } from 'node:url';
      for (const spec of ${JSON.stringify(specs)}) {
        if (spec.endsWith('.lua')) {
          const text = readFileSync(fileURLToPath(import.meta.resolve(spec)), 'utf8');
          if (!text.startsWith('--')) throw new Error(spec + ' has no header');
        } else if (Object.keys(await import(spec)).length === 0) throw new Error(spec + ' exports nothing');
      }`;
    writeFileSync(path.join(project, 'entries.mjs'), check);
    await run('node', ['entries.mjs'], project);
  });

  it.each(['node16', 'bundler'])('type-checks a user file with moduleResolution %s', async (resolution) => {
    const module = resolution === 'node16' ? 'node16' : 'esnext';
    const config = {
      compilerOptions: { target: 'ES2022', module, moduleResolution: resolution, strict: true, noEmit: true, skipLibCheck: false, types: ['node'] },
      files: ['user.ts'],
    };
    writeFileSync(path.join(project, `tsconfig.${resolution}.json`), JSON.stringify(config));
    await run('node', [tsc, '-p', `tsconfig.${resolution}.json`], project);
  });

  it('runs the user file against a private Redis', async () => {
    const source = readFileSync(path.join(project, 'user.ts'), 'utf8');
    const js = ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } }).outputText;
    writeFileSync(path.join(project, 'user.mjs'), js);
    await run('node', ['user.mjs'], project, { REDIS_URL: redisUrl(), KEY_PREFIX: randomPrefix('user') });
  });
});
