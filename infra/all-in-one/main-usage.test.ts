/**
 * `npm start` with bad options: one line naming the problem and where the options are listed, exit
 * 2, never a stack trace (parseArgs' errors printed their stack before). Nothing starts: the
 * options are read before the control plane or the relay.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, it } from 'node:test';

const MAIN = join(import.meta.dirname, 'main.js');

describe('npm start with bad options', () => {
  for (const args of [['--bogus'], ['--listen'], ['stray-argument']]) {
    it(`${args.join(' ')}: one line, exit 2, no stack trace`, () => {
      const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', timeout: 20_000, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: '/nonexistent' } });
      assert.equal(r.status, 2, r.stderr);
      assert.equal(r.stderr.split('\n').filter(Boolean).length, 1, r.stderr);
      assert.match(r.stderr, /^tunnel all-in-one: .+ \(npm start -- --help lists the options\)\n$/);
      assert.doesNotMatch(r.stderr, /\n\s+at /);
      assert.equal(r.stdout, '');
    });
  }
});
