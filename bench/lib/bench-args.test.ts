import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const benchDir = join(dirname(fileURLToPath(import.meta.url)), '..');
const benches = ['load', 'hostile', 'relay', 'failover', 'e2e', 'footprint', 'control-leases'];

for (const name of benches) {
  test(`bench ${name}: --help prints its usage and exits 0; an unknown option is one line, the usage and exit 2`, () => {
    const script = join(benchDir, `${name}.js`);
    const help = spawnSync(process.execPath, [script, '--help'], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(help.status, 0, help.stderr);
    assert.match(help.stdout, /^usage:/i);

    const bad = spawnSync(process.execPath, [script, '--no-such-option'], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(bad.status, 2, `${bad.stdout}\n${bad.stderr}`);
    assert.match(bad.stderr.split('\n')[0]!, /no-such-option/);
    assert.doesNotMatch(bad.stderr, /^\s+at /m, 'no stack trace');
  });
}
