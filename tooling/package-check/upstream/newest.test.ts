// The newest ioredis release against every package. CI runs this apart and reports it: a failure names an
// upstream break (the READMEs may need a new note) but never fails our build, which tests pinned versions.
import { afterAll, beforeAll, describe, it } from 'vitest';
import { allPackagesProject, runUserFile, typeCheck, userFiles } from '../src/project.js';
import { packAll, publishablePackages, removeTempDirs, ROOT, run } from '../src/workspace.js';

const packages = publishablePackages();
afterAll(removeTempDirs);
const newest = (await run('npm', ['view', 'ioredis', 'version'], ROOT)).trim();

describe(`ioredis@${newest}, the newest release`, () => {
  let project: string;

  beforeAll(async () => {
    project = await allPackagesProject('newest', packages, await packAll(packages), newest);
  }, 300_000);

  it.each(['defaults', 'strict'] as const)('type-checks every user file under the tsc --init %s, with nothing else installed', async (strictness) => {
    await typeCheck(project, strictness, userFiles(project));
  }, 180_000);

  it.each(packages.map((p) => p.dir))('runs the %s user file against a private Redis', async (dir) => {
    await runUserFile(project, `${dir}.ts`);
  });
});
