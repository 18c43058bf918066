import type { Connection } from 'ssh2';
import { SshWriter } from '../../protocol/ssh-wire.js';
import { protocolOf, ssh2SendPacket, type ProtocolInternals } from './protocol.js';

/** SSH_MSG_EXT_INFO (RFC 8308). */
const MSG_EXT_INFO = 7;

/**
 * ssh2 1.17 sends `server-sig-algs` malformed: its Protocol.js joins two string literals
 * without a comma (`...ecdsa-sha2-nistp521rsa-sha2-512...`), and it lists algorithms the relay
 * never accepts. This sends a correct EXT_INFO instead of ssh2's, with `algs`, at the place ssh2
 * would have sent its own: after the first NEWKEYS, before anything else is emitted, and only
 * when the client announced `ext-info-c`. Call it from the server's `connection` event (the
 * client's identification line has arrived; the key exchange has not finished).
 */
export function sendServerSigAlgs(conn: Connection, algs: readonly string[]): void {
  const proto = protocolOf(conn);
  const orig = proto._onHandshakeComplete;
  if (typeof orig !== 'function') throw new Error('ssh2 internals changed: Protocol._onHandshakeComplete missing');
  let first = true;
  proto._onHandshakeComplete = (...args: unknown[]) => {
    if (first) {
      first = false;
      const kex = proto._kex;
      if (kex?.remoteExtInfoEnabled === true) {
        // ssh2 checks this flag right after this call to decide whether to send its own.
        kex.remoteExtInfoEnabled = false;
        // ssh2 sends EXT_INFO after draining its queue and before emitting 'handshake'.
        conn.prependOnceListener('handshake', () => sendExtInfo(proto, algs));
      }
    }
    orig(...args);
  };
}

function sendExtInfo(proto: ProtocolInternals, algs: readonly string[]): void {
  const write = proto._packetRW?.write;
  if (!write) throw new Error('ssh2 internals changed: Protocol._packetRW.write missing');
  const payload = new SshWriter().uint8(MSG_EXT_INFO).uint32(1).string('server-sig-algs').string(algs.join(',')).toBuffer();
  const packet = write.alloc(payload.length);
  payload.copy(packet, write.allocStart);
  const sendPacket = ssh2SendPacket();
  if (!sendPacket) throw new Error('ssh2 internals changed: protocol/utils.js sendPacket missing');
  sendPacket(proto, write.finalize(packet)); // encrypts, or queues while a re-key is in progress
}
