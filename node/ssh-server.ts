import { createServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import type { ClientInfo, Connection } from 'ssh2';
import { RELAY_SOFTWARE } from '../protocol/ssh-idents.js';
import type { Logger } from '../shared/logger.js';
import { SERVER_SIG_ALGS, serverAlgorithms } from './ssh-algorithms.js';
import { dropRequestsAfterClose, forgetKeyExchangeSecrets, hostKeyWithKeyObject, installPooledPadding, installQuietChannelDestroy, sendServerSigAlgs, socketOf, Ssh2Server, useFastX25519 } from './ssh2-internals.js';
import { batchWrites } from './write-batching.js';
import type { StartupDrop, Startups } from './startups.js';

/** Why a socket was closed before it authenticated. */
export type PreauthDrop = StartupDrop | 'login_grace' | 'auth_rate_limited' | 'draining' | 'credential_rejected' | 'revocations_stale';

export interface SshServerOptions {
  /** OpenSSH private key file contents (ed25519). */
  hostKey: string;
  keepaliveIntervalMs: number;
  keepaliveCountMax: number;
  logger: Logger;
  /** Caps on connections that have not authenticated yet (MaxStartups, PerSourceMaxStartups). */
  startups: Startups;
  /** From TCP accept until authentication completes (LoginGraceTime); then the socket is destroyed. */
  loginGraceMs: number;
  /** Decides before the handshake whether a TCP connection may proceed (draining, rate limits). */
  admit(socket: Socket): true | 'auth_rate_limited' | 'draining' | 'credential_rejected' | 'revocations_stale';
  /** Counts a socket closed before authentication (metrics). */
  onDrop(reason: PreauthDrop): void;
  onConnection(conn: Connection, info: ClientInfo): void;
}

export interface SshServer {
  listen(host: string, port: number): Promise<AddressInfo>;
  /** Stops accepting; existing connections stay. */
  stopAccepting(): Promise<void>;
  /** Accepted TCP connections still open, whether or not they ever sent an SSH identification line. */
  readonly sockets: number;
}

/**
 * The relay's SSH listener. The relay owns the `net.Server` and hands each socket to ssh2
 * with `injectSocket()`, so it can set TCP_NODELAY and TCP keepalive, destroy a socket
 * whose peer vanished (ssh2's keepalive only calls `end()`; DESIGN "Facts about ssh2"), and
 * hold every socket to the startup caps and the login grace deadline from the moment it is
 * accepted: ssh2 itself only sees a connection once the client's identification line arrived,
 * so a socket that never sends one would otherwise stay open, uncounted, forever.
 */
export function createSshServer(opts: SshServerOptions): SshServer {
  /** Sockets still in their handshake: the deadline timer and the startup slot. */
  const pending = new WeakMap<Socket, () => void>();
  let sockets = 0;
  const dropLog = throttledDropLog(opts.logger);

  // Padding randomness from a pool instead of one randomFillSync per packet, and no unused error
  // per closed channel (ssh2-internals).
  installPooledPadding();
  installQuietChannelDestroy();
  const ssh = new Ssh2Server(
    {
      hostKeys: [{ key: hostKeyWithKeyObject(opts.hostKey) }],
      ident: RELAY_SOFTWARE,
      algorithms: serverAlgorithms(),
      keepaliveInterval: opts.keepaliveIntervalMs,
      keepaliveCountMax: opts.keepaliveCountMax,
    },
    (conn, info) => {
      const sock = socketOf(conn);
      // ssh2 writes packet by packet: leave in one writev per tick (node/write-batching.ts).
      batchWrites(sock);
      conn.once('ready', () => {
        pending.get(sock)?.();
        useFastX25519(conn); // from the first connection on (ssh2-internals/x25519-exchange.ts)
      });
      // Protocol fixes for every connection, before the key exchange finishes (ssh2-internals);
      // and no key pair or shared secret kept once each key exchange is over.
      sendServerSigAlgs(conn, SERVER_SIG_ALGS);
      dropRequestsAfterClose(conn);
      forgetKeyExchangeSecrets(conn);
      opts.onConnection(conn, info);
    },
  );
  ssh.on('error', (err: Error) => opts.logger.warn('ssh server error', { err }));

  const drop = (sock: Socket, reason: PreauthDrop) => {
    opts.onDrop(reason);
    dropLog(reason, sock.remoteAddress ?? '');
    sock.destroy();
  };

  const tcp: NetServer = createServer({ noDelay: true, keepAlive: true, keepAliveInitialDelay: opts.keepaliveIntervalMs }, (sock) => {
    sock.on('error', () => {}); // reported through ssh2's connection 'error'
    sockets++;
    sock.once('close', () => sockets--);
    const admitted = opts.admit(sock);
    if (admitted !== true) return drop(sock, admitted);
    const slot = opts.startups.admit(sock.remoteAddress ?? '');
    if (!slot.ok) return drop(sock, slot.reason);
    // The slot is freed before the drop is counted: a scrape between the two (the socket's 'close'
    // comes a tick later) saw the drop and the connection still unauthenticated.
    const grace = setTimeout(() => {
      slot.release();
      drop(sock, 'login_grace');
    }, opts.loginGraceMs);
    grace.unref();
    const authenticated = () => {
      clearTimeout(grace);
      slot.release();
      pending.delete(sock);
    };
    pending.set(sock, authenticated);
    sock.once('close', authenticated);
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
    get sockets() {
      return sockets;
    },
  };
}

/**
 * Logs pre-authentication drops without letting a flood of them flood the log: the first drop
 * of each reason at once, then one summary line per reason every 10 s while drops continue.
 */
function throttledDropLog(logger: Logger, everyMs = 10_000): (reason: PreauthDrop, remote: string) => void {
  const state = new Map<PreauthDrop, { at: number; suppressed: number }>();
  return (reason, remote) => {
    const now = Date.now();
    const s = state.get(reason);
    if (s && now - s.at < everyMs) {
      s.suppressed++;
      return;
    }
    state.set(reason, { at: now, suppressed: 0 });
    logger.warn('connection dropped before authentication', { reason, remote, droppedSinceLastLine: s?.suppressed ?? 0 });
  };
}
