import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { randomPrefix } from '@cyredis/testing';
import { redisUrl } from '@cyredis/testing/context';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { machinePaths } from '../src/paths.js';
import { IOREDIS_LOWEST, IOREDIS_PINNED, IOREDIS_UNTYPED_ERRORS, TYPES_REDIS_ERRORS } from '../src/pins.js';
import { allPackagesProject, installedVersion, installSpecs, npmInstall, runUserFile, tsc, typeCheck, USERS, userFiles, userProject } from '../src/project.js';
import { packAll, publishablePackages, removeTempDirs, ROOT, run, tempDir, type WorkspacePackage } from '../src/workspace.js';

const packages = publishablePackages();
afterAll(removeTempDirs);
const core = packages.find((p) => p.dir === 'core')!;
let tarballs = new Map<string, string>();
const LICENSE = readFileSync(path.join(ROOT, 'LICENSE'), 'utf8');

beforeAll(async () => {
  tarballs = await packAll(packages);
}, 180_000);

/** Every file under `dir`, relative to it. */
function walk(dir: string, base = dir): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(path.join(dir, e.name), base) : [path.relative(base, path.join(dir, e.name))],
  );
}

describe.each(packages)('$name as a user installs it', (pkg: WorkspacePackage) => {
  let project: string;
  let unpacked: string;

  beforeAll(async () => {
    // The package, and the workspace packages it depends on (the CLI and the dashboard use the others), as tarballs too.
    const own = pkg.dir === 'core' ? [] : [...packages.filter((p) => p.dir !== 'core' && pkg.manifest.dependencies?.[p.name] !== undefined), pkg];
    project = await userProject(pkg.dir, [...installSpecs([core, ...own], tarballs), `ioredis@${IOREDIS_PINNED}`]);
    copyFileSync(path.join(USERS, `${pkg.dir}.ts`), path.join(project, 'user.ts'));
    unpacked = tempDir(`unpacked-${pkg.dir}`);
    await run('tar', ['-xzf', tarballs.get(pkg.dir)!, '-C', unpacked], ROOT);
    unpacked = path.join(unpacked, 'package');
  }, 240_000);

  it('ships only dist (with maps), src, lua, static, README, LICENSE and package.json, and reports its packed size', async () => {
    const listing = (await run('tar', ['-tzf', tarballs.get(pkg.dir)!], ROOT)).trim().split('\n');
    // static/: the dashboard's page, plain script and style, served as they are.
    const allowed = /^package\/(package\.json|README\.md|LICENSE|CHANGELOG\.md|dist\/[\w/-]+\.(js|js\.map|d\.ts|d\.ts\.map)|src\/[\w/-]+\.ts|lua\/\w+\.lua|static\/[\w-]+\.(html|js|css))$/;
    expect(listing.filter((f) => !allowed.test(f) || /test|spec|tsbuildinfo/.test(f))).toEqual([]);
    for (const f of ['dist/index.js', 'dist/index.js.map', 'dist/index.d.ts', 'dist/index.d.ts.map', 'src/index.ts', 'README.md', 'LICENSE']) {
      expect(listing).toContain(`package/${f}`);
    }
    const packed = statSync(tarballs.get(pkg.dir)!).size;
    console.log(`${pkg.name}: ${listing.length} files, packed ${(packed / 1024).toFixed(1)} KiB`);
  });

  it('carries the MIT license and the repository, homepage and bugs fields', () => {
    expect(readFileSync(path.join(unpacked, 'LICENSE'), 'utf8')).toBe(LICENSE);
    expect(LICENSE).toMatch(/^MIT License\n\nCopyright \(c\) 2026 the cyredis authors\n/);
    const manifest = JSON.parse(readFileSync(path.join(unpacked, 'package.json'), 'utf8')) as Record<string, unknown>;
    expect(manifest.license).toBe('MIT');
    expect(manifest.repository).toEqual({ type: 'git', url: 'git+https://github.com/cyredis/cyredis.git', directory: `packages/${pkg.dir}` });
    expect(manifest.homepage).toBe(`https://github.com/cyredis/cyredis/tree/main/packages/${pkg.dir}#readme`);
    expect(manifest.bugs).toEqual({ url: 'https://github.com/cyredis/cyredis/issues' });
  });

  it('every source map and declaration map points at sources inside the tarball', () => {
    const maps = walk(unpacked).filter((f) => f.endsWith('.map'));
    expect(maps.length).toBeGreaterThan(0);
    const missing = maps.flatMap((map) => {
      const { sources } = JSON.parse(readFileSync(path.join(unpacked, map), 'utf8')) as { sources: string[] };
      return sources.map((s) => path.join(path.dirname(map), s)).filter((s) => s.startsWith('..') || !existsSync(path.join(unpacked, s)));
    });
    expect(missing).toEqual([]);
  });

  it('every relative link of the packed README resolves to a file inside the tarball', () => {
    const readme = readFileSync(path.join(unpacked, 'README.md'), 'utf8');
    const targets = [...readme.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]!).filter((t) => !/^([a-z]+:|#)/.test(t));
    const dead = targets.filter((t) => {
      const file = path.normalize(t.split('#')[0]!);
      return file.startsWith('..') || path.isAbsolute(file) || !existsSync(path.join(unpacked, file));
    });
    expect(dead).toEqual([]);
  });

  it('no shipped file names a machine path', () => {
    const found = walk(unpacked).flatMap((f) => machinePaths(readFileSync(path.join(unpacked, f), 'utf8')).map((hit) => `${f} ${hit}`));
    expect(found).toEqual([]);
  });

  it('resolves @cyredis/core from the packed tarball, never the workspace', () => {
    const installed = realpathSync(path.join(project, 'node_modules/@cyredis/core'));
    expect(installed.startsWith(realpathSync(project))).toBe(true);
    expect(installedVersion(project, '@cyredis/core')).toBe(core.version);
    expect(installedVersion(project, 'ioredis')).toBe(IOREDIS_PINNED);
    if (pkg.dir !== 'core') {
      const own = JSON.parse(readFileSync(path.join(project, 'node_modules', pkg.name, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
      expect(own.dependencies['@cyredis/core']).toBe(`^${core.version}`);
    }
  });

  const specs = Object.keys(pkg.manifest.exports).filter((k) => k !== './package.json').map((k) => pkg.name + k.slice(1));

  it('imports every entry point of the exports map, .lua files included', async () => {
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

  it('require()s every entry point from a CommonJS file (Node >= 20.19)', async () => {
    const check = `'use strict';
      const { readFileSync } = require('node:fs');
      for (const spec of ${JSON.stringify(specs)}) {
        if (spec.endsWith('.lua')) {
          if (!readFileSync(require.resolve(spec), 'utf8').startsWith('--')) throw new Error(spec + ' has no header');
        } else if (Object.keys(require(spec)).length === 0) throw new Error(spec + ' exports nothing');
      }`;
    writeFileSync(path.join(project, 'entries.cjs'), check);
    await run('node', ['entries.cjs'], project);
  });

  // Installed alone, so a type our declarations use from an undeclared dependency fails here (strict below).
  it('type-checks a user file under the tsc --init defaults', async () => {
    await typeCheck(project, 'defaults', ['user.ts']);
  }, 180_000);

  it('compiles for a CommonJS project with "module": "nodenext" (not "commonjs") and runs through require()', async () => {
    const cjs = path.join(project, 'cjs');
    mkdirSync(cjs, { recursive: true });
    writeFileSync(path.join(cjs, 'package.json'), JSON.stringify({ type: 'commonjs' }));
    copyFileSync(path.join(USERS, 'cjs', `${pkg.dir}.ts`), path.join(cjs, 'user.ts'));
    // NestJS's generated tsconfig with the one change the READMEs give: "module": "commonjs" → "nodenext".
    const nest = { module: 'nodenext', target: 'ES2021', declaration: true, removeComments: true, emitDecoratorMetadata: true, experimentalDecorators: true, allowSyntheticDefaultImports: true, sourceMap: true, outDir: './dist', incremental: false, skipLibCheck: true, strictNullChecks: true, types: ['node'] };
    writeFileSync(path.join(cjs, 'tsconfig.json'), JSON.stringify({ compilerOptions: nest, files: ['user.ts'] }));
    await tsc(project, ['-p', 'cjs/tsconfig.json']);
    expect(readFileSync(path.join(cjs, 'dist/user.js'), 'utf8')).toContain(`require("${pkg.name}")`);
    await run('node', ['dist/user.js'], cjs, { REDIS_URL: redisUrl(), KEY_PREFIX: randomPrefix('cjs') }, 60_000);
    // As generated ("module": "commonjs", so node10 resolution, which ignores the exports map) it does not compile.
    await expect(tsc(project, ['-p', 'cjs/tsconfig.json', '--module', 'commonjs', '--noEmit'])).rejects.toThrow(/TS2307: Cannot find module '@cyredis\//);
  }, 180_000);

  it('runs the user file against a private Redis', async () => {
    await runUserFile(project, 'user.ts');
  });
});

describe.each([IOREDIS_LOWEST, IOREDIS_PINNED])('every package with ioredis %s, an end of the peer range', (ioredis) => {
  let project: string;

  beforeAll(async () => {
    project = await allPackagesProject(`ioredis-${ioredis}`, packages, tarballs, ioredis);
  }, 240_000);

  it('installs exactly that version', () => {
    expect(installedVersion(project, 'ioredis')).toBe(ioredis);
  });

  it.each(['defaults', 'strict'] as const)('type-checks every user file under the tsc --init %s', async (strictness) => {
    await typeCheck(project, strictness, userFiles(project));
  }, 180_000);

  it.each(packages.map((p) => p.dir))('runs the %s user file against a private Redis', async (dir) => {
    await runUserFile(project, `${dir}.ts`);
  });
});

describe(`ioredis ${IOREDIS_UNTYPED_ERRORS} under strict TypeScript: the fix the READMEs give`, () => {
  let project: string;

  beforeAll(async () => {
    project = await allPackagesProject('untyped-errors', packages, tarballs, IOREDIS_UNTYPED_ERRORS);
  }, 240_000);

  it('passes under the tsc --init defaults and runs', async () => {
    await typeCheck(project, 'defaults', userFiles(project));
    await runUserFile(project, 'core.ts');
  }, 180_000);

  it(`strict: without the fix only ioredis declarations fail (TS7016, redis-errors), none of ours; ${TYPES_REDIS_ERRORS} fixes it`, async () => {
    const failure = await typeCheck(project, 'strict', userFiles(project)).then(
      () => '',
      (err: unknown) => String(err),
    );
    const errors = failure.split('\n').filter((l) => /error TS\d+/.test(l));
    expect(errors.length).toBeGreaterThan(0);
    expect(errors.filter((l) => !/^node_modules\/ioredis\/.*error TS7016: .*'redis-errors'/.test(l))).toEqual([]);
    await npmInstall(project, ['--save-dev', TYPES_REDIS_ERRORS]);
    await typeCheck(project, 'strict', userFiles(project));
  }, 300_000);

  it('the root and core READMEs give that fix', () => {
    const fix = `npm i -D ${TYPES_REDIS_ERRORS.replace(/@[\d.]+$/, '')}`;
    for (const file of ['README.md', 'packages/core/README.md']) expect(readFileSync(path.join(ROOT, file), 'utf8'), file).toContain(fix);
  });
});
