import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';

/**
 * A fresh directory under the system's temp directory, removed with everything in it once the
 * test (or suite, or file) that made it has ended, whether it passed or failed: node:test's
 * after() attaches to whatever runs when it is called.
 */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}
