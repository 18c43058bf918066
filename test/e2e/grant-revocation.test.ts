/**
 * Issue 9, must-show 5: removing a grant reaches live connections. Real control plane and relay
 * binaries on loopback, real OpenSSH clients: X holds an exposure with `ssh -R`, Y (bob, on the
 * allow list) has a live `ssh -W` channel to it; the owner takes bob off the allow list, and the
 * relay closes Y's connection through the revocation feed within its bound, while X stays up.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { LeaseIssued } from '../../protocol/api-types.js';
import { parseCertificateLine } from '../../protocol/ssh-cert.js';
import { formatPublicKeyLine, rawPublicKey } from '../../protocol/ssh-key.js';
import { loadOrCreateHostKey } from '../../node/enrollment.js';
import { noopLogger } from '../../shared/logger.js';
import { expectStatus, passwordLogin } from '../harness/control.js';
import { ADMIN, startStack, type Stack } from '../harness/stack.js';
import { eventually } from '../harness/streams.js';
import { clientFiles, killAll, spawnSsh, sshArgs, startEchoService, within, writeCert, type ClientFiles } from '../node/ssh-tools.js';

const NAME = 'granted-svc';
const BOB = { name: 'bob', password: 'bob-password-1234' };
/** The relay polls the revocation feed every few seconds; 5 s is the bound the API documents. */
const FEED_BOUND_MS = 5000;

describe('grant removal closes live connections (real binaries, OpenSSH)', () => {
  let stack: Stack;
  let hostKeyLine: string;
  let echo: Awaited<ReturnType<typeof startEchoService>>;
  let bobToken: string;

  before(async () => {
    stack = await startStack();
    hostKeyLine = (await loadOrCreateHostKey(stack.relay.dataDir, noopLogger)).publicKeyLine;
    echo = await startEchoService('x');
    expectStatus(await stack.call('POST', '/v1/users', { token: stack.adminToken, body: { name: BOB.name, password: BOB.password } }), 201, 'bob');
    bobToken = await passwordLogin(stack.call, BOB.name, BOB.password);
  });

  after(async () => {
    killAll();
    echo?.server.close();
    await stack?.stop();
  });

  async function lease(token: string, body: Record<string, unknown>): Promise<{ files: ClientFiles; issued: LeaseIssued }> {
    const files = await clientFiles(stack.relay.sshPort, hostKeyLine);
    const r = expectStatus(
      await stack.call('POST', '/v1/leases', { token, body: { ...body, public_key: formatPublicKeyLine(rawPublicKey(files.privateKey)) } }),
      201,
      'issue lease',
    );
    const issued = r.body as LeaseIssued;
    await writeCert(files, parseCertificateLine(issued.certificate));
    return { files, issued };
  }

  it('taking bob off the allow list closes his live ssh -W connection within the feed bound', async () => {
    expectStatus(await stack.call('PUT', `/v1/exposures/${NAME}`, { token: stack.adminToken, body: { allow: [BOB.name] } }), 201, 'exposure');
    const x = await lease(stack.adminToken, { kind: 'expose', exposure: NAME });
    const xSsh = spawnSsh(
      sshArgs(x.files, stack.relay.sshPort, ADMIN.name, { extra: ['-v', '-N', '-o', 'ExitOnForwardFailure=yes', '-R', `${NAME}:22:127.0.0.1:${echo.port}`] }),
    );
    await eventually(async () => {
      const e = expectStatus(await stack.call('GET', `/v1/exposures/${NAME}`, { token: stack.adminToken }), 200, 'exposure').body as { online: boolean };
      if (!e.online) throw new Error('not online yet');
    }, 20_000);

    const y = await lease(bobToken, { kind: 'open', exposure: NAME });
    const ySsh = spawnSsh(sshArgs(y.files, stack.relay.sshPort, BOB.name, { extra: ['-W', `${NAME}:22`] }));
    let got = '';
    ySsh.child.stdout!.setEncoding('utf8').on('data', (d: string) => (got += d));
    ySsh.child.stdin!.write('hello\n');
    await eventually(async () => {
      if (!got.includes('x:hello')) throw new Error(`no echo yet: ${JSON.stringify(got)}`);
    }, 20_000, 100);

    // The grant goes: bob is no longer on the allow list.
    expectStatus(await stack.call('PUT', `/v1/exposures/${NAME}`, { token: stack.adminToken, body: { allow: [] } }), 200, 'edit allow list');
    const l = expectStatus(await stack.call('GET', `/v1/leases/${y.issued.lease.id}`, { token: bobToken }), 200, 'lease').body as { revoked_at: string | null };
    assert.notEqual(l.revoked_at, null, "bob's open lease is revoked by the edit itself");
    await within(ySsh.exited, FEED_BOUND_MS, "bob's connection closed through the revocation feed");
    await stack.relay.waitForStderr(
      new RegExp(`"msg":"closing connection".*"reason":"lease_revoked".*"leaseId":"${y.issued.lease.id}"`),
      0,
      FEED_BOUND_MS,
    );
    // X, whose grant did not change, is still connected, and bob cannot come back.
    assert.equal(xSsh.child.exitCode, null, xSsh.stderr());
    expectStatus(
      await stack.call('POST', '/v1/leases', {
        token: bobToken,
        body: { kind: 'open', exposure: NAME, public_key: formatPublicKeyLine(rawPublicKey(y.files.privateKey)) },
      }),
      403,
      'bob cannot open any more',
    );
  });
});
