// The workspace as the checks see it: its publishable packages, packing them, and running commands.
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

export interface WorkspacePackage {
  /** Folder name under packages/, e.g. `lock`. */
  dir: string;
  name: string;
  version: string;
  path: string;
  manifest: {
    name: string;
    version: string;
    exports: Record<string, unknown>;
    dependencies?: Record<string, string>;
  };
}

/** Every publishable package under packages/, core first. */
export function publishablePackages(): WorkspacePackage[] {
  return readdirSync(path.join(ROOT, 'packages'))
    .map((dir) => {
      const pkgPath = path.join(ROOT, 'packages', dir);
      const manifest = JSON.parse(readFileSync(path.join(pkgPath, 'package.json'), 'utf8')) as WorkspacePackage['manifest'] & { private?: boolean };
      return { dir, name: manifest.name, version: manifest.version, path: pkgPath, manifest, private: manifest.private };
    })
    .filter((p) => !p.private)
    .sort((a, b) => (a.dir === 'core' ? -1 : b.dir === 'core' ? 1 : a.dir.localeCompare(b.dir)));
}

const exec = promisify(execFile);

/**
 * Runs a command and returns its stdout; a non-zero exit rejects with stdout and stderr in the message. With
 * `timeoutMs`, a command still running then is killed and rejects: a process that does not exit on its own.
 */
export async function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = {}, timeoutMs = 0): Promise<string> {
  try {
    const { stdout } = await exec(cmd, args, { cwd, env: { ...process.env, ...env }, maxBuffer: 64 * 1024 * 1024, timeout: timeoutMs, killSignal: 'SIGKILL' });
    return stdout;
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string; killed?: boolean };
    const why = e.killed === true ? `still running after ${timeoutMs} ms (an open handle keeps the process alive)` : e.message;
    throw new Error(`${cmd} ${args.join(' ')} (in ${cwd}) failed: ${why}\n${e.stdout ?? ''}\n${e.stderr ?? ''}`, { cause: err });
  }
}

const created: string[] = [];

/** A fresh folder under the system temp dir, removed by `removeTempDirs()`. */
export function tempDir(label: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), `cyredis-${label}-`));
  created.push(dir);
  return dir;
}

/** Removes every folder `tempDir()` made in this process: user projects weigh tens of MB each. */
export function removeTempDirs(): void {
  for (const dir of created.splice(0)) rmSync(dir, { recursive: true, force: true });
}

/** `pnpm pack` of one package into `dest`; returns the tarball path (workspace:^ rewritten to a range). */
export async function pack(pkg: WorkspacePackage, dest: string): Promise<string> {
  await run('pnpm', ['pack', '--pack-destination', dest], pkg.path);
  const file = readdirSync(dest).find((f) => f.startsWith(`${pkg.name.replace('@', '').replace('/', '-')}-`) && f.endsWith('.tgz'));
  if (!file) throw new Error(`no tarball for ${pkg.name} in ${dest}`);
  return path.join(dest, file);
}

/** Packs every package into one fresh folder; returns the tarball path by folder name (`core`, `lock`, …). */
export async function packAll(pkgs: WorkspacePackage[]): Promise<Map<string, string>> {
  const dest = tempDir('pack');
  const tarballs = new Map<string, string>();
  for (const pkg of pkgs) tarballs.set(pkg.dir, await pack(pkg, dest));
  return tarballs;
}
