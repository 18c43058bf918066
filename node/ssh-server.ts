import { createServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import ssh2 from 'ssh2';
import type { ClientInfo, Connection } from 'ssh2';
import type { Logger } from './logger.js';

export interface SshServerOptions {
  /** OpenSSH private key file contents (ed25519). */
  hostKey: string;
  keepaliveIntervalMs: number;
  keepaliveCountMax: number;
  logger: Logger;
  /** Decides before the handshake whether a TCP connection may proceed (rate limits). */
  admit(socket: Socket): boolean;
  onConnection(conn: Connection, info: ClientInfo): void;
}

export interface SshServer {
  listen(host: string, port: number): Promise<AddressInfo>;
  /** Stops accepting; existing connections stay. */
  stopAccepting(): Promise<void>;
}

/**
 * The relay's SSH listener. The relay owns the `net.Server` and hands each socket to ssh2
 * with `injectSocket()`, so it can set TCP_NODELAY and TCP keepalive and destroy a socket
 * whose peer vanished (ssh2's keepalive only calls `end()`; DESIGN "Facts about ssh2").
 */
export function createSshServer(opts: SshServerOptions): SshServer {
  const ssh = new ssh2.Server(
    {
      hostKeys: [opts.hostKey],
      ident: 'tunnel-node',
      keepaliveInterval: opts.keepaliveIntervalMs,
      keepaliveCountMax: opts.keepaliveCountMax,
    },
    (conn, info) => opts.onConnection(conn, info),
  );
  ssh.on('error', (err: Error) => opts.logger.warn('ssh server error', { err }));

  const tcp: NetServer = createServer({ noDelay: true, keepAlive: true, keepAliveInitialDelay: opts.keepaliveIntervalMs }, (sock) => {
    sock.on('error', () => {}); // reported through ssh2's connection 'error'
    if (!opts.admit(sock)) {
      sock.destroy();
      return;
    }
    sock.setNoDelay(true);
    sock.setKeepAlive(true, opts.keepaliveIntervalMs);
    ssh.injectSocket(sock);
  });

  return {
    listen: (host, port) =>
      new Promise((resolve, reject) => {
        tcp.once('error', reject);
        tcp.listen({ host, port }, () => {
          tcp.off('error', reject);
          resolve(tcp.address() as AddressInfo);
        });
      }),
    // close() stops listening at once, but its callback waits until every accepted socket has
    // ended, which is what draining is for: waiting for it here hung shutdown while any client
    // stayed connected.
    stopAccepting: async () => {
      tcp.close();
    },
  };
}
