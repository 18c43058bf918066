import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';

/**
 * Runs `fn` with `beforeRead` run once, just before the first fs.readSync in it: a test's way to
 * change the file system between a synchronous read's open and its read (a file replaced by a
 * rename), which it cannot reach otherwise. `import { readSync } from 'node:fs'` follows the
 * patch: syncBuiltinESMExports updates node:fs's named exports from its CommonJS object. Put back
 * when `fn` returns or throws.
 */
export function withFirstReadSync<T>(beforeRead: () => void, fn: () => T): T {
  const real = fs.readSync;
  let first = true;
  const patched = (...args: unknown[]): number => {
    if (first) {
      first = false;
      beforeRead();
    }
    return (real as (...a: unknown[]) => number)(...args);
  };
  Object.assign(fs, { readSync: patched });
  syncBuiltinESMExports();
  try {
    return fn();
  } finally {
    Object.assign(fs, { readSync: real });
    syncBuiltinESMExports();
  }
}
