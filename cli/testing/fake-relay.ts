import { generateKeyPairSync } from 'node:crypto';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import ssh2, { type Client, type Connection, type ServerChannel } from 'ssh2';
import { formatOpenSshPrivateKey } from '../../protocol/ssh-key.js';

/** What the fake relay does with a `direct-tcpip` open: accept or reject it later, or drop the connection. */
export type OnOpen = (accept: () => ServerChannel, conn: Connection) => void;

/**
 * A real ssh2 server standing in for a relay that misbehaves on channel opens (tests of
 * cli/commands/open.ts forwardOut), and an ssh2 client connected to it. Any user is
 * accepted; `onOpen` gets every `direct-tcpip` open. `close()` ends both.
 */
export async function clientOfFakeRelay(onOpen: OnOpen): Promise<{ client: Client; close: () => void }> {
  const hostKey = formatOpenSshPrivateKey(generateKeyPairSync('ed25519').privateKey);
  const server = new ssh2.Server({ hostKeys: [hostKey] }, (conn) => {
    conn.on('authentication', (ctx) => ctx.accept());
    conn.on('ready', () => conn.on('tcpip', (accept) => onOpen(accept, conn)));
    conn.on('error', () => {});
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const client: Client = new ssh2.Client();
  client.on('error', () => {});
  const close = () => {
    client.end();
    server.close();
  };
  try {
    client.connect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, username: 'y' });
    await once(client, 'ready');
  } catch (err) {
    close();
    throw err;
  }
  return { client, close };
}
