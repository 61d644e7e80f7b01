// How a package finds its shipped `.lua` files and the one name each script is registered under.
import { readFileSync } from 'node:fs';
import { InvalidArgumentError } from './errors.js';

/** A package or file name part of a script name: lowercase letters, digits, `_` and `-`. */
const NAME_PART = /^[a-z][a-z0-9_-]*$/;

/**
 * Reads `lua/<name>.lua` of the package whose module calls it (pass `import.meta.url`). Works from `src/`
 * in tests and from `dist/` once built, since both sit next to `lua/`. Call it once at module load (a
 * constant), never per instance or per call.
 */
export function readPackageLua(moduleUrl: string | URL, name: string): string {
  return readFileSync(new URL(`../lua/${name}.lua`, moduleUrl), 'utf8');
}

/**
 * The name a shipped script is registered under: `cyredis:<package>:<file>`, e.g.
 * `cyredis:queue:job_queue` for `packages/queue/lua/job_queue.lua`. One scheme, so `ScriptError`s and
 * `LuaScriptManager.names()` say which package and file failed.
 */
export function scriptName(packageName: string, file: string): string {
  for (const [argument, part] of [['packageName', packageName], ['file', file]] as const) {
    if (!NAME_PART.test(part)) throw new InvalidArgumentError(argument, `must be lowercase letters, digits, '_' or '-', got "${part}"`);
  }
  return `cyredis:${packageName}:${file}`;
}
