/**
 * installQuietChannelDestroy (node/ssh2-internals/channel-destroy.ts) on a real ssh2 server and
 * client: a channel that finished both ways is destroyed without the `end()` that only built an
 * unused error, and one destroyed before it ended still sends EOF and CLOSE.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import ssh2 from 'ssh2';
import type { ClientChannel, ServerChannel } from 'ssh2';
import { formatOpenSshPrivateKey } from '../protocol/ssh-key.js';
import { installQuietChannelDestroy, originalChannelDestroy } from './ssh2-internals.js';

describe('installQuietChannelDestroy (real ssh2 server and client)', () => {
  let server: ssh2.Server;
  let client: ssh2.Client;
  /** Server-side channels, in the order the client opened them. */
  const serverChannels: ServerChannel[] = [];
  let onServerChannel: (() => void) | undefined;

  before(async () => {
    installQuietChannelDestroy();
    installQuietChannelDestroy(); // idempotent: the original stays the original
    const hostKey = formatOpenSshPrivateKey(generateKeyPairSync('ed25519').privateKey);
    server = new ssh2.Server({ hostKeys: [hostKey] }, (conn) => {
      conn.on('error', () => {});
      conn.on('authentication', (ctx) => ctx.accept());
      conn.on('tcpip', (accept) => {
        const ch = accept();
        ch.on('error', () => {});
        serverChannels.push(ch);
        onServerChannel?.();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    client = new ssh2.Client();
    client.on('error', () => {});
    const ready = once(client, 'ready');
    client.connect({ host: '127.0.0.1', port: (server.address() as { port: number }).port, username: 'u', hostVerifier: () => true });
    await ready;
  });

  after(async () => {
    client.end();
    await new Promise<void>((r) => server.close(() => r()));
  });

  /** A direct-tcpip channel from the client and its server side. */
  async function open(): Promise<{ ch: ClientChannel; peer: ServerChannel }> {
    const seen = new Promise<void>((r) => (onServerChannel = r));
    const ch = await new Promise<ClientChannel>((resolve, reject) =>
      client.forwardOut('127.0.0.1', 1, '127.0.0.1', 2, (err, c) => (err ? reject(err) : resolve(c))),
    );
    ch.on('error', () => {});
    await seen;
    return { ch, peer: serverChannels.at(-1)! };
  }

  it("keeps ssh2's own destroy as the original", () => {
    assert.equal(typeof originalChannelDestroy, 'function');
    assert.match(String(originalChannelDestroy), /this\.end\(\)/);
  });

  it('destroys a channel that finished both ways without calling end() again', async () => {
    const { ch, peer } = await open();
    const ends: boolean[] = [];
    const end = ch.end.bind(ch);
    ch.end = ((...args: Parameters<ClientChannel['end']>) => {
      ends.push(ch.writableFinished);
      return end(...args);
    }) as ClientChannel['end'];
    const got: Buffer[] = [];
    peer.on('data', (d: Buffer) => got.push(d));
    // The server's end() sends EOF and CLOSE (ssh2 server channels); the client answers CLOSE.
    peer.once('end', () => peer.end('bye'));
    ch.end('hello');
    const data: Buffer[] = [];
    ch.on('data', (d: Buffer) => data.push(d));
    await once(ch, 'close');
    assert.equal(Buffer.concat(got).toString(), 'hello');
    assert.equal(Buffer.concat(data).toString(), 'bye');
    // ssh2 destroys the channel itself once both sides finished (autoDestroy); with its own
    // destroy that calls end() on the finished writable: [false, true].
    assert.deepEqual(ends, [false]);
  });

  it('still sends EOF and then CLOSE for a channel destroyed before it ended', async () => {
    const { ch, peer } = await open();
    const order: string[] = [];
    peer.on('end', () => order.push('eof'));
    peer.on('close', () => order.push('close'));
    peer.resume();
    const closed = once(peer, 'close');
    ch.destroy();
    await closed;
    assert.deepEqual(order, ['eof', 'close']);
  });
});
