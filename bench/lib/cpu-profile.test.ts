import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { formatCpuSummary, summariseCpuProfile, type CpuProfile } from './cpu-profile.js';

const frame = (functionName: string, url = '') => ({ functionName, url, lineNumber: 0, columnNumber: 0 });

/**
 * root -> (idle) | (garbage collector) | writevGeneric (stream_base_commons) -> writev (native)
 *      | decrypt (ssh2 crypto.js) -> (native, no name) | parse (our dist file)
 */
const PROFILE: CpuProfile = {
  nodes: [
    { id: 1, callFrame: frame('(root)'), children: [2, 3, 4, 6, 8] },
    { id: 2, callFrame: frame('(idle)') },
    { id: 3, callFrame: frame('(garbage collector)') },
    { id: 4, callFrame: frame('writevGeneric', 'node:internal/stream_base_commons'), children: [5] },
    { id: 5, callFrame: frame('writev') },
    { id: 6, callFrame: frame('decrypt', 'file:///x/node_modules/ssh2/lib/protocol/crypto.js'), children: [7] },
    { id: 7, callFrame: frame('') },
    { id: 8, callFrame: frame('parse', 'file:///x/dist/node/thing.js') },
  ],
  startTime: 0,
  endTime: 10_000,
  // Each sample is charged the delta to the next one: 1 ms each, the last one nothing.
  samples: [2, 2, 2, 2, 3, 5, 5, 7, 8, 8],
  timeDeltas: [0, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000],
};

describe('bench/lib/cpu-profile', () => {
  it('splits busy time by category (native frames go to their caller), idle excluded', () => {
    const s = summariseCpuProfile(PROFILE);
    assert.equal(s.idleMs, 4);
    assert.equal(s.busyMs, 5); // the last sample has no following delta
    const cat = Object.fromEntries(s.categories.map((r) => [r.name, r.ms]));
    assert.deepEqual(cat, { GC: 1, 'socket write': 2, 'crypto: cipher / MAC': 1, 'our code': 1 });
    assert.equal(s.categories[0]!.name, 'socket write');
    assert.equal(s.categories[0]!.share, 2 / 5);
    assert.equal(s.functions[0]!.name, 'writev');
    assert.ok(s.functions.some((f) => f.name === 'parse (dist/node/thing.js:1)'));
  });

  it('tries extra rules first', () => {
    const s = summariseCpuProfile(PROFILE, { categories: [{ name: 'mine', url: /thing\.js/ }], top: 2 });
    assert.equal(s.categories.find((r) => r.name === 'mine')?.ms, 1);
    assert.equal(s.functions.length, 2);
    assert.match(formatCpuSummary(s, 'x'), /\| mine \| 1 \| 20\.0% \|/);
  });

  const dir = mkdtempSync(join(tmpdir(), 'cpu-profile-test-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('reads a real node --cpu-prof profile and finds the hot function', () => {
    const script = join(dir, 'burn.mjs');
    writeFileSync(script, 'function burnHot(){let x=0;for(let i=0;i<3e7;i++)x+=Math.sqrt(i);return x}\nfor(let k=0;k<5;k++)burnHot();\n');
    const run = spawnSync(process.execPath, ['--cpu-prof', '--cpu-prof-dir', dir, script], { encoding: 'utf8' });
    assert.equal(run.status, 0, run.stderr);
    const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
    assert.ok(file);
    const s = summariseCpuProfile(join(dir, file));
    assert.ok(s.busyMs > 0);
    assert.match(s.functions[0]!.name, /^burnHot /);
    assert.equal(s.categories[0]!.name, 'our code');
    const cli = spawnSync(process.execPath, [new URL('./cpu-profile.js', import.meta.url).pathname, join(dir, file), '--top', '3'], { encoding: 'utf8' });
    assert.equal(cli.status, 0, cli.stderr);
    assert.match(cli.stdout, /burnHot/);
  });
});
