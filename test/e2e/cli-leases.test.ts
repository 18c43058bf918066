/**
 * Leases `tunnel expose` leaves behind (issue 10), with the real binaries on loopback: while its
 * relay is down, every failed reconnect used to leave a fresh 1-hour expose lease active. Now
 * the leases of failed attempts and of a connection that ended are revoked, and stopping
 * `tunnel expose` or `tunnel open` revokes the lease it held.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cliFixture, type CliUser } from '../harness/stack.js';
import { eventually, waitForLine } from '../harness/streams.js';

interface LeaseRow {
  id: string;
  kind: string;
  exposure: string | null;
  connected: boolean | null;
}

async function activeLeases(user: CliUser, exposure: string, kind: string): Promise<LeaseRow[]> {
  const r = await user.run(['leases', '--json']);
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as { leases: LeaseRow[] }).leases.filter((l) => l.exposure === exposure && l.kind === kind);
}

describe('leases left by tunnel expose and tunnel open (real binaries)', () => {
  const f = cliFixture();

  it('failed reconnects while the relay is down leave no trail of active leases; stop revokes the last', async () => {
    const x = f.admin.spawn(['expose', String(f.echo.port), '--name', 'trail', '--json']);
    await waitForLine(x, /"event":"connected"/);
    assert.equal((await activeLeases(f.admin, 'trail', 'expose')).length, 1);

    await f.stack.relay.stop('SIGKILL');
    // Several failed attempts, each of which got a lease from the control plane.
    await waitForLine(x, /"event":"disconnected"/, 30_000, 4);
    const during = await activeLeases(f.admin, 'trail', 'expose');
    assert.ok(during.length <= 2, `at most the attempt in flight and one not yet revoked, got ${during.length}`);

    await f.stack.restartRelay('SIGKILL');
    await waitForLine(x, /"event":"connected"/, 30_000, 2);
    const connected = JSON.parse(await waitForLine(x, /"event":"connected"/, 1_000, 2)) as { lease: string };
    await eventually(async () => assert.deepEqual((await activeLeases(f.admin, 'trail', 'expose')).map((l) => l.id), [connected.lease]), 10_000);

    x.kill('SIGTERM');
    assert.equal((await once(x, 'exit'))[0], 0);
    assert.deepEqual(await activeLeases(f.admin, 'trail', 'expose'), [], 'stopping expose revokes its lease');
  });

  it('tunnel open --stdio revokes its lease when the connection ends', async () => {
    const x = f.admin.spawn(['expose', String(f.echo.port), '--name', 'oneshot', '--allow', 'bob', '--json']);
    await waitForLine(x, /"event":"connected"/);
    const r = await f.bob.run(['open', 'oneshot', '--stdio'], { input: 'once\n' });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'once\nbye\n');
    assert.deepEqual(await activeLeases(f.bob, 'oneshot', 'open'), []);
    x.kill('SIGTERM');
    await once(x, 'exit');
  });

  it('tunnel open --stdio revokes its lease when ssh ends it with SIGHUP (as OpenSSH ends a ProxyCommand)', async () => {
    const x = f.admin.spawn(['expose', String(f.echo.port), '--name', 'hangup', '--allow', 'bob', '--json']);
    await waitForLine(x, /"event":"connected"/);
    const y = f.bob.spawn(['open', 'hangup', '--stdio']);
    y.stdin!.write('ping\n');
    await waitForLine(y, /^ping$/);
    assert.equal((await activeLeases(f.bob, 'hangup', 'open')).length, 1);
    y.kill('SIGHUP');
    await once(y, 'exit');
    assert.deepEqual(await activeLeases(f.bob, 'hangup', 'open'), [], 'the lease of a hung-up tunnel open is revoked');
    x.kill('SIGTERM');
    await once(x, 'exit');
  });

  it('tunnel leases shows whether a relay holds a connection under each lease now', async () => {
    const x = f.admin.spawn(['expose', String(f.echo.port), '--name', 'shown', '--json']);
    const exposeLease = (JSON.parse(await waitForLine(x, /"event":"connected"/)) as { lease: string }).lease;
    // An open lease with nobody connected under it: plain OpenSSH files that are never used.
    const out = mkdtempSync(join(tmpdir(), 'tunnel-cert-'));
    try {
      const cert = await f.admin.run(['cert', 'shown', '--out', out, '--json']);
      assert.equal(cert.code, 0, cert.stderr);
      const openLease = (JSON.parse(cert.stdout) as { lease: { id: string } }).lease.id;
      // The relay reports the expose connection in its next event batch.
      await eventually(async () => {
        const rows = (await activeLeases(f.admin, 'shown', 'expose')).concat(await activeLeases(f.admin, 'shown', 'open'));
        assert.deepEqual(
          rows.map((l) => [l.id, l.connected]),
          [[exposeLease, true], [openLease, false]],
        );
      }, 15_000);
      const table = await f.admin.run(['leases']);
      assert.equal(table.code, 0, table.stderr);
      const lines = table.stdout.split('\n');
      assert.match(lines[0]!, /^ID +KIND +USER +WHAT +NODE +CONNECTED +EXPIRES/);
      assert.match(lines.find((l) => l.startsWith(exposeLease)) ?? '', / relay-1 +yes +in /);
      assert.match(lines.find((l) => l.startsWith(openLease)) ?? '', / relay-1 +no +in /);
    } finally {
      x.kill('SIGTERM');
      await once(x, 'exit');
      rmSync(out, { recursive: true, force: true });
    }
  });
});
