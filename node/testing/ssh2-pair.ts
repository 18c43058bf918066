/**
 * A real ssh2 server and client on loopback, for tests of channel windows (no relay): the server
 * accepts any client and hands each direct-tcpip open to `onOpen`, which accepts it (or not).
 */
import { generateKeyPairSync } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import ssh2, { type ClientChannel, type Connection, type ServerChannel } from 'ssh2';
import { formatOpenSshPrivateKey } from '../../protocol/ssh-key.js';

export interface Ssh2Pair {
  client: ssh2.Client;
  /** Opens a direct-tcpip channel from the client. */
  open(): Promise<ClientChannel>;
  close(): Promise<void>;
}

export async function ssh2Pair(onOpen: (conn: Connection, accept: () => ServerChannel) => void): Promise<Ssh2Pair> {
  const hostKey = formatOpenSshPrivateKey(generateKeyPairSync('ed25519').privateKey);
  const conns: Connection[] = [];
  const server = new ssh2.Server({ hostKeys: [hostKey] }, (conn) => {
    conns.push(conn);
    conn.on('error', () => {});
    conn.on('authentication', (ctx) => ctx.accept());
    conn.on('tcpip', (accept) => onOpen(conn, accept));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const client = new ssh2.Client();
  client.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    client.once('ready', resolve).once('error', reject);
    client.connect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, username: 'u', hostVerifier: () => true });
  });
  return {
    client,
    open: () => new Promise((resolve, reject) => client.forwardOut('127.0.0.1', 1, '127.0.0.1', 2, (err, ch) => (err ? reject(err) : resolve(ch)))),
    async close() {
      client.end();
      for (const c of conns) c.end();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
