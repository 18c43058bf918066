import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { mintLease, startFakeControl, startRelay, type FakeControl, type StartedRelay } from '../harness/relay.js';
import { connectWithCertificate, renewLease } from './ssh2-cert-client.js';
import { clientFiles, killAll, spawnSsh, sshArgs, startEchoService, within, writeCert } from './ssh-tools.js';

const NAME = 'hostx-db';

/** Writes a line on a channel and resolves with the echo. */
function roundTrip(ch: Duplex, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    const on = (d: Buffer) => {
      got += d.toString();
      if (got.endsWith(`${text}\n`)) {
        ch.off('data', on);
        resolve(got);
      }
    };
    ch.on('data', on);
    ch.once('error', reject);
    ch.write(`${text}\n`);
  });
}

describe('lease lifetime: revocation, expiry, in-band renewal', () => {
  let fc: FakeControl;
  let relay: StartedRelay;
  let echo: Awaited<ReturnType<typeof startEchoService>>;

  before(async () => {
    fc = await startFakeControl();
    relay = await startRelay(fc);
    echo = await startEchoService('x');
    const x = await clientFiles(relay.port, relay.hostKeyLine);
    const lease = await mintLease(fc, { grant: { kind: 'expose', exposure: NAME, port: 22 }, clientPublicKey: x.privateKey, user: 'xowner' });
    await writeCert(x, lease.certificate);
    const online = relay.logger.waitFor((l) => l.msg === 'exposure online' && l.fields.exposure === NAME);
    spawnSsh(sshArgs(x, relay.port, 'xowner', { extra: ['-N', '-o', 'ExitOnForwardFailure=yes', '-R', `${NAME}:22:127.0.0.1:${echo.port}`] }));
    await online;
  });

  after(async () => {
    killAll();
    echo.server.close();
    await relay.stop();
    await fc.stop();
  });

  it('closes a live connection within 5 s of its lease being revoked', async () => {
    const y = await clientFiles(relay.port, relay.hostKeyLine);
    const lease = await mintLease(fc, { grant: { kind: 'open', exposure: NAME }, clientPublicKey: y.privateKey, user: 'yrev' });
    await writeCert(y, lease.certificate);
    const p = spawnSsh(sshArgs(y, relay.port, 'yrev', { extra: ['-v', '-N'] }));
    await p.waitStderr(/Entering interactive session/);
    fc.revoke(lease.claims.jti, lease.claims.exp);
    await within(p.exited, 5000, 'revoked connection closed');
    await relay.logger.waitFor((l) => l.msg === 'closing connection' && l.fields.reason === 'lease_revoked' && l.fields.leaseId === lease.claims.jti, 1000);
  });

  it('closes a connection when its lease expires', async () => {
    const y = await clientFiles(relay.port, relay.hostKeyLine);
    const lease = await mintLease(fc, { grant: { kind: 'open', exposure: NAME }, clientPublicKey: y.privateKey, user: 'yexp', ttlSeconds: 3 });
    await writeCert(y, lease.certificate);
    const p = spawnSsh(sshArgs(y, relay.port, 'yexp', { extra: ['-v', '-N'] }));
    await p.waitStderr(/Entering interactive session/);
    await within(p.exited, 10_000, 'expired connection closed');
    const line = await relay.logger.waitFor((l) => l.msg === 'closing connection' && l.fields.leaseId === lease.claims.jti, 1000);
    assert.equal(line.fields.reason, 'lease_expired');
    assert.ok(Date.now() >= lease.claims.exp * 1000, 'not closed before the lease ended');
  });

  it('keeps a live channel open across the original expiry after an in-band renewal', async () => {
    const { privateKey } = generateKeyPairSync('ed25519');
    const first = await mintLease(fc, { grant: { kind: 'open', exposure: NAME }, clientPublicKey: privateKey, user: 'yren', ttlSeconds: 3 });
    const client = await connectWithCertificate({ port: relay.port, username: 'yren', privateKey, certificate: first.certificate, hostKeyLine: relay.hostKeyLine });
    let closed = false;
    client.on('close', () => (closed = true));
    const ch = await new Promise<Duplex>((resolve, reject) =>
      client.forwardOut('127.0.0.1', 40000, NAME, 22, (err, stream) => (err ? reject(err) : resolve(stream))),
    );
    assert.equal(await roundTrip(ch, 'before'), 'x:before\n');

    const second = await mintLease(fc, { grant: { kind: 'open', exposure: NAME }, clientPublicKey: privateKey, user: 'yren', ttlSeconds: 60 });
    assert.equal(await renewLease(client, second.certificate), true);

    // A renewal for a different key is refused, and the connection stays.
    const other = generateKeyPairSync('ed25519').privateKey;
    const foreign = await mintLease(fc, { grant: { kind: 'open', exposure: NAME }, clientPublicKey: other, user: 'yren', ttlSeconds: 60 });
    assert.equal(await renewLease(client, foreign.certificate), false);

    // Wait (on the clock, not for synchronisation) until the first lease is over.
    const firstEnd = first.claims.exp * 1000 + 1500;
    await new Promise((r) => setTimeout(r, Math.max(0, firstEnd - Date.now())));
    assert.equal(closed, false, 'connection closed at the original expiry');
    assert.equal(await roundTrip(ch, 'after'), 'x:after\n');
    client.end();
  });

  it('refuses a renewal with an expired certificate or a different grant', async () => {
    const { privateKey } = generateKeyPairSync('ed25519');
    const first = await mintLease(fc, { grant: { kind: 'open', exposure: NAME }, clientPublicKey: privateKey, user: 'yren2', ttlSeconds: 60 });
    const client = await connectWithCertificate({ port: relay.port, username: 'yren2', privateKey, certificate: first.certificate, hostKeyLine: relay.hostKeyLine });
    const stale = await mintLease(fc, { grant: { kind: 'open', exposure: NAME }, clientPublicKey: privateKey, user: 'yren2', notBefore: new Date(Date.now() - 7200_000), ttlSeconds: 60 });
    assert.equal(await renewLease(client, stale.certificate), false);
    const otherGrant = await mintLease(fc, { grant: { kind: 'open', exposure: 'elsewhere' }, clientPublicKey: privateKey, user: 'yren2', ttlSeconds: 60 });
    assert.equal(await renewLease(client, otherGrant.certificate), false);
    client.end();
  });
});
