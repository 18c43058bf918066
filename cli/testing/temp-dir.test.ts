/**
 * The CLI tests' temp directories (testContext's homes, tempDir's) are removed once the test that
 * made them ends (node:test runs after() hooks whether the test passed or failed): a run of
 * cli/'s tests used to leave about 150 in /tmp.
 */
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { tempDir } from '../../shared/testing/temp-dir.js';
import { testContext } from './test-context.js';

describe('temp directories of the CLI tests', () => {
  const made: string[] = [];
  it('a testContext home and a tempDir exist while their test runs', () => {
    const ctx = testContext();
    const dir = tempDir('tunnel-tempdir-');
    writeFileSync(join(dir, 'a-file'), 'x');
    made.push(ctx.homeDir, dir);
    assert.ok(existsSync(ctx.homeDir) && existsSync(dir));
  });
  it('are gone once that test ended', () => {
    assert.equal(made.length, 2);
    for (const d of made) assert.ok(!existsSync(d), `${d} is left behind`);
  });
});
