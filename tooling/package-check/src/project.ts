// A fresh npm project as a user creates one: our tarballs and exact registry versions installed, compiled with the project's own tsc.
import { copyFileSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomPrefix } from '@cyredis/testing';
import { redisUrl } from '@cyredis/testing/context';
import ts from 'typescript';
import { PEERS, USER_TOOLS } from './pins.js';
import { run, tempDir, type WorkspacePackage } from './workspace.js';

/** The user files: one ESM file per package, and under `cjs/` one CommonJS one. */
export const USERS = fileURLToPath(new URL('../test/users/', import.meta.url));

/** Creates an ESM project (`"type": "module"`) and `npm install`s `specs` (tarball paths or exact versions). */
export async function userProject(label: string, specs: string[]): Promise<string> {
  const dir = tempDir(`user-${label}`);
  writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'user-app', private: true, type: 'module' }));
  await npmInstall(dir, [...USER_TOOLS, ...specs]);
  // The configuration `tsc --init` writes (TypeScript's own defaults, `skipLibCheck: true`), plus Node's globals.
  await tsc(dir, ['--init', '--types', 'node']);
  return dir;
}

export async function npmInstall(dir: string, specs: string[]): Promise<void> {
  await run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--save-exact', ...specs], dir);
}

/** The tarball of each package plus the optional peers its entry points need. */
export function installSpecs(pkgs: WorkspacePackage[], tarballs: Map<string, string>): string[] {
  return pkgs.flatMap((p) => [tarballs.get(p.dir)!, ...(PEERS[p.dir] ?? [])]);
}

/** Runs the project's own TypeScript compiler. */
export function tsc(dir: string, args: string[]): Promise<string> {
  return run('node', [path.join(dir, 'node_modules/typescript/bin/tsc'), ...args], dir);
}

export type Strictness = 'defaults' | 'strict';

/**
 * Type-checks `files` the way users compile: `defaults` is the `tsc --init` configuration as written,
 * `strict` the same with `skipLibCheck: false`, so every declaration file (ours and ioredis's) is checked too.
 */
export async function typeCheck(dir: string, strictness: Strictness, files: string[]): Promise<void> {
  const compilerOptions = strictness === 'strict' ? { noEmit: true, skipLibCheck: false } : { noEmit: true };
  const config = { extends: './tsconfig.json', compilerOptions, files };
  writeFileSync(path.join(dir, `tsconfig.${strictness}.json`), JSON.stringify(config));
  await tsc(dir, ['-p', `tsconfig.${strictness}.json`]);
}

/** The `.ts` user files of `dir` (copied from test/users). */
export function userFiles(dir: string): string[] {
  return readdirSync(dir).filter((f) => f.endsWith('.ts'));
}

/** The installed version of a package in a project. */
export function installedVersion(dir: string, name: string): string {
  return (JSON.parse(readFileSync(path.join(dir, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
}

/** Runs a TypeScript user file of `dir` as written (transpiled only) with Node, against the test server. */
export async function runUserFile(dir: string, file: string): Promise<void> {
  const js = ts.transpileModule(readFileSync(path.join(dir, file), 'utf8'), {
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
  }).outputText;
  const out = file.replace(/\.ts$/, '.mjs');
  writeFileSync(path.join(dir, out), js);
  await run('node', [out], dir, { REDIS_URL: redisUrl(), KEY_PREFIX: randomPrefix('user') }, 60_000);
}

/** A project with every package and the given ioredis, and every package's user file copied in. */
export async function allPackagesProject(label: string, pkgs: WorkspacePackage[], tarballs: Map<string, string>, ioredis: string): Promise<string> {
  const dir = await userProject(label, [...installSpecs(pkgs, tarballs), `ioredis@${ioredis}`]);
  for (const pkg of pkgs) copyFileSync(path.join(USERS, `${pkg.dir}.ts`), path.join(dir, `${pkg.dir}.ts`));
  return dir;
}
