import { mkdirSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

/**
 * `mkdir -p DIR`: each missing directory made in turn with `mode`, from the deepest one that
 * exists. Not `mkdirSync(dir, { recursive: true })`: Node's (libuv's) recursive mkdir spins for
 * ever when a directory answers ENOENT although its parent exists (`/proc/x`: the parent is
 * there, so it retries the child, which says ENOENT again), with the event loop blocked, so not
 * even SIGTERM ends it. Here every failure is thrown (its errno code kept): ENOENT, EACCES, or
 * ENOTDIR when DIR or a part of it is there and not a directory (a file). Said here, not left to
 * stat: asked with throwIfNoEntry false about a path through a file, Node 20's stat fails with
 * ENOTDIR, Node 22 and 24's say there is nothing (and the mkdir of the file then said EEXIST).
 */
export function makeDirs(dir: string, mode: number): void {
  const missing: string[] = [];
  for (let p = resolve(dir); ; p = dirname(p)) {
    const found = statSync(p, { throwIfNoEntry: false });
    if (found?.isDirectory()) break;
    if (found) throw notADirectory(p);
    missing.push(p);
    if (dirname(p) === p) break;
  }
  for (const d of missing.reverse()) {
    try {
      mkdirSync(d, { mode });
    } catch (err) {
      // Made meanwhile by someone else: as good as made here.
      if ((err as NodeJS.ErrnoException).code === 'EEXIST' && statSync(d, { throwIfNoEntry: false })?.isDirectory()) continue;
      throw err;
    }
  }
}

function notADirectory(path: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`ENOTDIR: not a directory, mkdir '${path}'`), { code: 'ENOTDIR', errno: -20, syscall: 'mkdir', path });
}
