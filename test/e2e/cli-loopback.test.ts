/**
 * The CLI at both ends, on loopback, with the real control plane and relay binaries:
 * tunnel expose on "X", tunnel open (--listen and --stdio) on "Y", ACLs, revocation.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { cliFixture } from '../harness/stack.js';
import { roundTrip, waitForLine } from '../harness/streams.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('tunnel expose / tunnel open on loopback (real binaries)', () => {
  const f = cliFixture();

  it('exposes a service and carries bytes both ways byte-exactly, half-close included', async () => {
    const x = f.admin.spawn(['expose', String(f.echo.port), '--name', 'svc', '--allow', 'bob', '--json']);
    await waitForLine(x, /"event":"connected"/);
    const y = f.bob.spawn(['open', 'svc', '--listen', '127.0.0.1:0', '--json']);
    const listening = JSON.parse(await waitForLine(y, /"event":"listening"/)) as { address: string };
    const port = Number(listening.address.split(':').pop());
    const payload = randomBytes(8 * 1024 * 1024);
    const got = await roundTrip(port, payload);
    assert.equal(got.length, payload.length + 4);
    assert.equal(sha(got.subarray(0, payload.length)), sha(payload));
    assert.equal(got.subarray(payload.length).toString(), 'bye\n');
    y.kill('SIGTERM');
    assert.equal((await once(y, 'exit'))[0], 0);
  });

  it('--stdio carries one connection over stdin/stdout (ProxyCommand)', async () => {
    const r = await f.bob.run(['open', 'svc', '--stdio'], { input: 'hello through stdio\n' });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'hello through stdio\nbye\n');
  });

  it('a user outside the ACL gets exit code 4 and one line', async () => {
    const carol = await f.stack.user('carol');
    const r = await carol.run(['open', 'svc', '--stdio']);
    assert.equal(r.code, 4, r.stderr);
    assert.equal(r.stderr.trim().split('\n').length, 1);
  });

  it('an unknown exposure gives exit code 1', async () => {
    const r = await f.bob.run(['open', 'no-such-thing', '--stdio']);
    assert.equal(r.code, 1, r.stderr);
  });
});
