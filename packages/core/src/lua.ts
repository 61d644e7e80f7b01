import { readFileSync } from 'node:fs';

/**
 * Reads `lua/<name>.lua` of the package whose module calls it (pass `import.meta.url`). Works from `src/`
 * in tests and from `dist/` once built, since both sit next to `lua/`.
 */
export function readPackageLua(moduleUrl: string | URL, name: string): string {
  return readFileSync(new URL(`../lua/${name}.lua`, moduleUrl), 'utf8');
}
