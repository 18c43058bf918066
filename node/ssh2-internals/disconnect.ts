import type { Connection } from 'ssh2';
import { socketOf } from './connection-fields.js';
import { protocolOf, ssh2SendPacket, type ProtocolInternals } from './protocol.js';

/** SSH_MSG_DISCONNECT reason codes used by the relay (RFC 4253 11.1). */
export const DISCONNECT = { PROTOCOL_ERROR: 2, BY_APPLICATION: 11, NO_MORE_AUTH_METHODS_AVAILABLE: 14 } as const;

/**
 * Sends SSH_MSG_DISCONNECT with a description, ends the socket, and ignores everything the peer
 * sends from then on (ignorePeer). ssh2's `Connection.end()`
 * always sends an empty description, so a client cut for revocation or expiry would not learn
 * why. The packet is built the way ssh2's own `Protocol.disconnect()` builds it (a KEX-safe
 * allocation, sent even mid key exchange). Falls back to `end()` if the internals changed.
 */
export function disconnectWithReason(conn: Connection, code: number, description: string): void {
  const proto = (conn as unknown as { _protocol?: Partial<ProtocolInternals> })._protocol;
  const w = proto?._packetRW?.write;
  const sock = socketOf(conn);
  const sendPacket = ssh2SendPacket();
  if (!w || typeof w.alloc !== 'function' || typeof sendPacket !== 'function' || !sock.writable) {
    conn.end();
    ignorePeer(conn);
    return;
  }
  const desc = Buffer.from(description.slice(0, 256), 'utf8');
  let p = w.allocStartKEX;
  const packet = w.alloc(1 + 4 + 4 + desc.length + 4, true);
  packet[p] = 1; // SSH_MSG_DISCONNECT
  packet.writeUInt32BE(code, ++p);
  packet.writeUInt32BE(desc.length, (p += 4));
  desc.copy(packet, (p += 4));
  packet.writeUInt32BE(0, p + desc.length); // empty language tag
  sendPacket(proto, w.finalize(packet, true), true);
  sock.end();
  ignorePeer(conn);
}

/**
 * Nothing the peer sends is parsed any more: once the relay said DISCONNECT (a revoked or expired
 * lease, a limit), the peer's channel data, channel opens and requests must not take effect in
 * the time before its socket closes (RFC 4253 11.1; sshd exits at once). The socket is still
 * read, so a peer's FIN closes the connection as before. server.js's socket 'data' listener
 * calls `Protocol#parse` through the instance for every chunk; if that is gone the socket is
 * destroyed instead (fail closed: the peer is not heard either way).
 */
export function ignorePeer(conn: Connection): void {
  const proto = protocolOf(conn) as ProtocolInternals & { parse?: unknown };
  if (typeof proto.parse !== 'function') {
    socketOf(conn).destroy();
    return;
  }
  proto.parse = () => {};
}
