/**
 * Another commit of this repository, built beside this one, so a benchmark can measure "before"
 * and "after" in the same run on the same machine: a detached git worktree in a temp folder,
 * sharing this tree's node_modules, compiled with tsc and the asset step. Removed by `remove()`.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from '../../test/harness/net.js';

export interface BaselineBuild {
  /** The commit, as `git rev-parse --short` names it. */
  commit: string;
  /** Its built `control/main.js`. */
  controlBin: string;
  remove(): void;
}

export function buildBaseline(rev: string, log: (line: string) => void): BaselineBuild {
  const root = repoRoot();
  const git = (...a: string[]) => execFileSync('git', a, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  const commit = git('rev-parse', '--short', `${rev}^{commit}`);
  const parent = mkdtempSync(join(tmpdir(), 'tunnel-baseline-'));
  const dir = join(parent, commit);
  log(`building baseline ${commit} in ${dir}\n`);
  git('worktree', 'add', '--detach', dir, commit);
  const remove = (): void => {
    try {
      git('worktree', 'remove', '--force', dir);
    } catch {
      rmSync(dir, { recursive: true, force: true });
      git('worktree', 'prune');
    }
    rmSync(parent, { recursive: true, force: true });
  };
  try {
    symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'));
    const run = (...a: string[]) => execFileSync(process.execPath, a, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
    run(join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json');
    if (existsSync(join(dir, 'scripts', 'copy-assets.mjs'))) run(join(dir, 'scripts', 'copy-assets.mjs'));
  } catch (err) {
    remove();
    throw new Error(`baseline ${commit} did not build: ${String((err as { stderr?: Buffer }).stderr ?? err).slice(0, 2000)}`);
  }
  return { commit, controlBin: join(dir, 'dist', 'control', 'main.js'), remove };
}
