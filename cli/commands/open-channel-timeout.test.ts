/**
 * A relay that never answers a channel open (h-attack, found and not fixed): `forwardOut`
 * gives up after its timeout with one CliError (exit 5, unreachable) instead of waiting for
 * ever, and a channel the relay grants after that is closed at once. The relay is a real ssh2
 * server holding `direct-tcpip` opens unanswered; the timeout is shortened for the test.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { after, it } from 'node:test';
import ssh2, { type Client } from 'ssh2';
import { formatOpenSshPrivateKey } from '../../protocol/ssh-key.js';
import { CliError, EXIT } from '../errors.js';
import { forwardOut } from './open.js';

const hostKey = formatOpenSshPrivateKey(generateKeyPairSync('ed25519').privateKey);

it('gives up on a channel open the relay never answers, and closes a channel granted after that', { timeout: 30_000 }, async () => {
  const pending: { accept: () => ssh2.ServerChannel }[] = [];
  let lateClosed!: () => void;
  const closedLate = new Promise<void>((r) => (lateClosed = r));
  const server = new ssh2.Server({ hostKeys: [hostKey] }, (conn) => {
    conn.on('authentication', (ctx) => ctx.accept());
    conn.on('ready', () => {
      conn.on('tcpip', (accept) => {
        pending.push({ accept });
      });
    });
    conn.on('error', () => {});
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const client: Client = new ssh2.Client();
  after(() => {
    client.end();
    server.close();
  });
  client.connect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, username: 'y' });
  client.on('error', () => {});
  await once(client, 'ready');

  const dest = { host: 'svc', port: 22, label: 'svc:22' };
  const err = await forwardOut(client, 0, dest, () => {}, 200).then(
    () => assert.fail('the open resolved without an answer'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof CliError, String(err));
  assert.equal(err.exitCode, EXIT.UNREACHABLE);
  assert.match(err.message, /did not answer the request to open svc:22 within 200 ms/);
  assert.equal(pending.length, 1, 'the relay saw the open and left it unanswered');

  const late = pending[0]!.accept();
  late.resume(); // read to its end: the channel's 'close' comes after it
  late.on('close', () => lateClosed());
  await closedLate; // the CLI closed the channel it no longer wanted
});
