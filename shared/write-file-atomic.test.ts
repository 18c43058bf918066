/**
 * The one atomic file write of the CLI (sync) and the relay (async): a fresh, exclusively created
 * temp file with a random name, so a file or symlink planted at a predictable temp name (the
 * relay's was `<path>.<pid>.tmp`) is neither followed nor written into; the file ends with exactly
 * the mode asked for; a failed write leaves no temp file behind.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { writeFileAtomic, writeFileAtomicSync } from './write-file-atomic.js';

const variants = [
  ['writeFileAtomicSync (CLI)', async (p: string, d: string, m?: number) => writeFileAtomicSync(p, d, m)],
  ['writeFileAtomic (relay)', writeFileAtomic],
] as const;

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
/** A fresh directory, removed after the file's tests. */
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'tunnel-atomic-'));
  dirs.push(d);
  return d;
}

for (const [name, write] of variants) {
  describe(name, () => {
    it('replaces the file with exactly the mode asked for, and makes a missing parent', async () => {
      const dir = tempDir();
      const path = join(dir, 'state.json');
      writeFileSync(path, 'old', { mode: 0o666 });
      await write(path, 'new', 0o600);
      assert.equal(readFileSync(path, 'utf8'), 'new');
      assert.equal(statSync(path).mode & 0o777, 0o600);
      const deep = join(dir, 'a', 'b', 'c.json');
      await write(deep, 'x', 0o644);
      assert.equal(statSync(deep).mode & 0o777, 0o644);
      assert.equal(statSync(join(dir, 'a')).mode & 0o777, 0o700);
    });

    it('does not follow or write into a file planted at the old pid-only temp name', async () => {
      const dir = tempDir();
      const path = join(dir, 'state.json');
      const elsewhere = join(dir, 'elsewhere');
      writeFileSync(elsewhere, 'theirs', { mode: 0o666 });
      symlinkSync(elsewhere, `${path}.${process.pid}.tmp`);
      await write(path, 'secret', 0o600);
      assert.equal(readFileSync(elsewhere, 'utf8'), 'theirs');
      assert.equal(readFileSync(path, 'utf8'), 'secret');
      assert.equal(statSync(path).mode & 0o777, 0o600);
    });

    it('a failed write throws with its errno code and leaves no temp file', async () => {
      const dir = tempDir();
      const path = join(dir, 'state.json');
      mkdirSync(path); // a directory where the file goes: the rename fails
      await assert.rejects(write(path, 'x', 0o600), (err: NodeJS.ErrnoException) => typeof err.code === 'string');
      assert.deepEqual(readdirSync(dir), ['state.json']);
    });
  });
}
