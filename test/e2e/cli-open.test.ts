/**
 * `tunnel open` failures and egress with the real binaries on loopback (issue 10): each ordinary
 * failure of `open --stdio` is one line with its own exit code (no stack trace), an offline
 * exposure gets no lease, and an egress grant is usable with `tunnel open --egress` (--stdio and
 * --listen).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { freePort } from '../harness/net.js';
import { cliFixture, oneLine } from '../harness/stack.js';
import { eventually, roundTrip, waitForLine } from '../harness/streams.js';

describe('tunnel open: failures and egress (real binaries)', () => {
  const f = cliFixture();

  it('X offline: exit 6 and no lease is issued', async () => {
    const created = await f.admin.run(['exposures', 'create', 'off-x', '--allow', 'bob']);
    assert.equal(created.code, 0, created.stderr);
    oneLine(await f.bob.run(['open', 'off-x', '--stdio'], { input: 'x' }), 6, /^tunnel open: .*off-x.* not online/);
    const ls = await f.bob.run(['leases', '--json']);
    assert.equal(ls.code, 0, ls.stderr);
    const leases = JSON.parse(ls.stdout) as { leases: unknown[] };
    assert.equal(leases.leases.length, 0, 'no open lease for an offline exposure');
  });

  it("X's service down: exit 7; wrong port: exit 8; then X stopped: exit 6", async () => {
    const dead = await freePort();
    const x = f.admin.spawn(['expose', String(dead), '--name', 'down-x', '--allow', 'bob', '--json']);
    await waitForLine(x, /"event":"connected"/);
    oneLine(await f.bob.run(['open', 'down-x', '--stdio'], { input: 'x' }), 7, /could not connect to its service/);
    oneLine(await f.bob.run(['open', `down-x:${dead === 65535 ? 1 : dead + 1}`, '--stdio'], { input: 'x' }), 8, new RegExp(`exposed on port ${dead}`));
    x.kill('SIGTERM');
    await once(x, 'exit');
    await eventually(async () => {
      const e = JSON.parse((await f.bob.run(['exposures', 'show', 'down-x', '--json'])).stdout) as { online: boolean };
      assert.equal(e.online, false);
    }, 15_000);
    oneLine(await f.bob.run(['open', 'down-x', '--stdio'], { input: 'x' }), 6, /not online/);
  });

  it('an egress grant works with tunnel open --egress, --stdio and --listen; a dead target is exit 7', async () => {
    const dead = await freePort();
    for (const [name, port] of [['echo-t', f.echo.port], ['dead-t', dead]] as const) {
      const r = await f.admin.run(['admin', 'egress', 'put', name, '--node', 'relay-1', '--host', '127.0.0.1', '--port', String(port), '--allow', 'bob']);
      assert.equal(r.code, 0, r.stderr);
    }
    const viaStdio = await f.bob.run(['open', '--egress', 'echo-t', '--stdio'], { input: 'egress by stdio\n' });
    assert.equal(viaStdio.code, 0, viaStdio.stderr);
    assert.equal(viaStdio.stdout, 'egress by stdio\nbye\n');

    const y = f.bob.spawn(['open', '--egress', 'echo-t', '--listen', '127.0.0.1:0', '--json']);
    const listening = JSON.parse(await waitForLine(y, /"event":"listening"/)) as { address: string; egress: string };
    assert.equal(listening.egress, 'echo-t');
    const got = await roundTrip(Number(listening.address.split(':').pop()), Buffer.from('egress by listen\n'));
    assert.equal(got.toString(), 'egress by listen\nbye\n');
    y.kill('SIGTERM');
    assert.equal((await once(y, 'exit'))[0], 0);

    oneLine(await f.bob.run(['open', '--egress', 'dead-t', '--stdio'], { input: 'x' }), 7, /could not connect to dead-t/);
    const carol = await f.stack.user('carol');
    oneLine(await carol.run(['open', '--egress', 'echo-t', '--stdio'], { input: 'x' }), 4, /./);
  });
});
