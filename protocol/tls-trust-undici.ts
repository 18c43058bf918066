import type { TLSSocket } from 'node:tls';
import { buildConnector } from 'undici';
import { checkPeerPin, trustTls, type TrustSettings } from './tls-trust.js';

/**
 * An undici connector for these trust settings (protocol/tls-trust.ts: system CAs, a CA file, or
 * a pin), for the CLI and the tests. With a pin the handshake is completed without chain checks,
 * then the socket is closed before any byte is sent unless the server's key matches the pin.
 * The relay does not use undici (it costs the idle relay about 8 MB): tls-trust-https.ts.
 */
export function trustConnector(trust: TrustSettings, timeoutMs: number): buildConnector.connector {
  const { tls, pin } = trustTls(trust);
  if (pin === undefined) return buildConnector({ ...tls, timeout: timeoutMs });
  const base = buildConnector({ ...tls, maxCachedSessions: 0, timeout: timeoutMs });
  return (opts, callback) => {
    base(opts, (err, socket) => {
      if (err || !socket) return callback(err ?? new Error('no socket'), null);
      if (opts.protocol !== 'https:') return callback(null, socket);
      const refused = checkPeerPin(socket as TLSSocket, pin);
      if (refused) {
        socket.destroy();
        return callback(refused, null);
      }
      callback(null, socket);
    });
  };
}
