/**
 * infra/systemd/setup-host.sh as root, on a host of its own: a private mount namespace in which
 * /etc is a scratch copy of this machine's, so the users, directories and units it makes land
 * there and vanish with it. `expose` (an X host, docs/deploy.md step 6) needs no service users:
 * tunnel-expose@ runs with DynamicUser=.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { repoRoot } from '../harness/net.js';

const skip = process.getuid?.() !== 0 ? 'needs root (setup-host.sh creates users; it runs in a private mount namespace)' : false;

describe('setup-host.sh on a host of its own (private /etc)', { skip }, () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'tunnel-setup-host-'));
    execFileSync('cp', ['-a', '/etc', join(dir, 'etc')]);
    // What setup-host.sh looks for: the installed binaries (only their paths go into the units).
    mkdirSync(join(dir, 'bin'));
    for (const b of ['tunnel', 'tunnel-control', 'tunnel-node']) {
      writeFileSync(join(dir, 'bin', b), '#!/bin/sh\nexit 0\n');
      chmodSync(join(dir, 'bin', b), 0o755);
    }
    // daemon-reload must not reach a systemd running on this machine.
    writeFileSync(join(dir, 'systemctl'), '#!/bin/sh\nexit 1\n');
    chmodSync(join(dir, 'systemctl'), 0o755);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** Runs setup-host.sh PARTS, then CHECK, in one private mount namespace: all output, and what CHECK printed. */
  function onHost(parts: string, check: string): { code: number | null; out: string; checked: string } {
    const script = [
      'set -e',
      `mount --bind '${join(dir, 'etc')}' /etc`,
      `if [ -e /usr/bin/systemctl ]; then mount --bind '${join(dir, 'systemctl')}' /usr/bin/systemctl; fi`,
      `sh '${join(repoRoot(), 'infra', 'systemd', 'setup-host.sh')}' --bin-dir '${join(dir, 'bin')}' ${parts}`,
      'echo ---',
      check,
    ].join('\n');
    const r = spawnSync('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script], { encoding: 'utf8', timeout: 60_000 });
    return { code: r.status, out: `${r.stdout}${r.stderr}`, checked: r.stdout.split('---\n')[1] ?? '' };
  }

  it('expose installs tunnel-expose@ and /etc/tunnel, and creates no service users and no TLS directory', () => {
    const r = onHost('expose', [
      'test -f /etc/systemd/system/tunnel-expose@.service && echo unit',
      'test -d /etc/tunnel && echo etc-tunnel',
      'test -e /etc/tunnel/tls && echo tls-dir || true',
      'getent passwd tunnel-control tunnel-node | cut -d: -f1 || true',
    ].join('\n'));
    assert.equal(r.code, 0, r.out);
    assert.deepEqual(r.checked.trim().split('\n'), ['unit', 'etc-tunnel'], r.out);
    assert.match(r.out, /next: .*tunnel-expose@NAME/);
  });

  it('control node still creates both users and the TLS directory (group tunnel-control)', () => {
    const r = onHost('control node', [
      'getent passwd tunnel-control tunnel-node | cut -d: -f1',
      'stat -c %G /etc/tunnel/tls',
    ].join('\n'));
    assert.equal(r.code, 0, r.out);
    assert.deepEqual(r.checked.trim().split('\n'), ['tunnel-control', 'tunnel-node', 'tunnel-control'], r.out);
  });
});

describe('setup-host.sh --help', () => {
  it('prints the header comment and nothing of the script', () => {
    const out = execFileSync('sh', [join(repoRoot(), 'infra', 'systemd', 'setup-host.sh'), '--help'], { encoding: 'utf8' });
    const lines = out.trimEnd().split('\n');
    assert.ok(lines.length > 5, out);
    assert.deepEqual(lines.filter((l) => !l.startsWith('#')), [], out);
  });
});
