import { connect, type Socket } from 'node:net';

/**
 * One outbound TCP connection for an egress channel: TCP_NODELAY (DESIGN "Facts about ssh2"),
 * half-open allowed (the bridge forwards EOF per direction), an optional fixed local port, and
 * a connect timeout. Rejects with the socket error (`code` kept) or an ETIMEDOUT error.
 */
export function dialTcp(o: { host: string; port: number; localPort?: number; timeoutMs: number }): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host: o.host, port: o.port, allowHalfOpen: true, noDelay: true, ...(o.localPort ? { localPort: o.localPort } : {}) });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(Object.assign(new Error(`connect to ${o.host}:${o.port} timed out after ${o.timeoutMs} ms`), { code: 'ETIMEDOUT' }));
    }, o.timeoutMs);
    const onError = (err: Error) => {
      clearTimeout(timer);
      sock.destroy();
      reject(err);
    };
    sock.once('error', onError);
    sock.once('connect', () => {
      clearTimeout(timer);
      sock.off('error', onError);
      // Until the bridge takes over, a reset must not become an uncaught 'error'.
      sock.on('error', () => undefined);
      sock.setNoDelay(true);
      resolve(sock);
    });
  });
}

/** What dials an egress target: dialTcp, or in tests one that wraps it (RelayDeps.egressDial). */
export type Dialer = typeof dialTcp;
