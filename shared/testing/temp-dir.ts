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

const made = new Set<string>();

function removeMade(): void {
  for (const dir of made) rmSync(dir, { recursive: true, force: true });
  made.clear();
}

/**
 * A fresh directory under the system's temp directory, removed when this process exits, however
 * its tests end (node:test runs each test file in its own process), not when the test that made it
 * ends as with tempDir. For the helpers that
 * hand a test a directory it may keep using after what made it has stopped (a relay's data
 * directory, restarted on the same files), where no single place knows when it is done.
 */
export function tempDirRemovedAtExit(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  if (made.size === 0) process.once('exit', removeMade);
  made.add(dir);
  return dir;
}
