/**
 * A relay out of service (its node credential refused, or its revocation feed stale) drops new
 * connections at accept and closes the ones it holds. A connection accepted just before the flip
 * whose client had not yet sent its identification line was in neither set: ssh2 hands the relay
 * a connection only once that line arrives, so the close loop did not see it, and it went on to
 * authenticate with a lease the relay could no longer know to be revoked, and stayed. A stranger
 * can hold that line back for the whole login grace. In-process relay against the fake control
 * plane; the member is an ssh2 client with a certificate, over a TCP connection the test opened
 * before the flip.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { describe, it } from 'node:test';
import type { Client } from 'ssh2';
import { mintLease } from '../harness/relay.js';
import { connectWithCertificate } from './ssh2-cert-client.js';
import { relayUnderTest, type RelayUnderTest } from './relay-under-test.js';
import { within } from './ssh-tools.js';

/** A TCP connection the relay admitted (it sent its identification line) and the client has not spoken on yet. */
async function admittedSilent(port: number): Promise<Socket> {
  const sock = connect({ host: '127.0.0.1', port });
  sock.on('error', () => {});
  await once(sock, 'readable');
  return sock;
}

/** Runs the SSH handshake over `sock` with a fresh lease: resolves the client when it authenticated, and whether it stayed open. */
async function handshake(t: RelayUnderTest, sock: Socket): Promise<Client> {
  const { privateKey } = generateKeyPairSync('ed25519');
  const lease = await mintLease(t.fc, { grant: { kind: 'open', exposure: 'anything' }, clientPublicKey: privateKey, user: 'mallory' });
  const client = await connectWithCertificate({ port: t.relay.port, sock, username: 'mallory', privateKey, certificate: lease.certificate, hostKeyLine: t.relay.hostKeyLine });
  return t.track(client);
}

/**
 * The handshake fails or the relay closes the connection at once: it never stays in. (ssh2's
 * client reports a socket closed before the handshake ended only by 'close', not 'error'.)
 */
async function refused(t: RelayUnderTest, sock: Socket, reason: string, from: number): Promise<void> {
  const sockClosed = once(sock, 'close').then(() => undefined);
  const client = await Promise.race([handshake(t, sock).catch(() => undefined), sockClosed]);
  if (client) await within(once(client, 'close'), 10_000, 'the connection that authenticated after the flip closed');
  const closing = await t.relay.logger.waitFor((l) => l.msg === 'closing connection' && l.fields.reason === reason, 5000, from);
  assert.equal(closing.fields.reason, reason);
}

describe('a connection in its handshake when the node credential is refused', { timeout: 60_000 }, () => {
  const t = relayUnderTest(['--revocation-poll-interval', '1h', '--revocation-wait', '0s']);

  it('is closed, not left to authenticate and stay', async () => {
    const { fc, relay } = t;
    const sock = await admittedSilent(relay.port);
    const from = relay.logger.lines.length;
    const restore = fc.replaceCredential();
    try {
      await relay.relay.pollRevocations();
      assert.equal(relay.relay.health().status, 'credential_rejected');
      await refused(t, sock, 'credential_rejected', from);
    } finally {
      restore();
    }
  });
});

describe('a connection in its handshake when the revocation feed turns stale', { timeout: 60_000 }, () => {
  const t = relayUnderTest(['--revocation-poll-interval', '100ms', '--revocation-wait', '0s', '--revocation-max-stale', '1s']);

  it('is closed, not left to authenticate and stay', async () => {
    const { fc, relay } = t;
    const sock = await admittedSilent(relay.port);
    const from = relay.logger.lines.length;
    const restore = fc.refuseRevocations();
    try {
      await relay.logger.waitFor((l) => l.level === 'error' && /revocation feed has not answered/.test(l.msg), 10_000, from);
      await refused(t, sock, 'revocations_stale', from);
    } finally {
      restore();
    }
  });
});
