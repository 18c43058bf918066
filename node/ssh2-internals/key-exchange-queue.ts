import type { Client, Connection } from 'ssh2';
import { protocolOf } from './protocol.js';

/**
 * Bytes ssh2 holds for the peer outside the socket. ssh2 writes every packet straight to the
 * socket (server.js `onWrite`: `socket.write(data)`, return value ignored) except during a key
 * exchange: from the moment either side sent KEXINIT until NEWKEYS, `sendPacket`
 * (protocol/utils.js) appends each packet to `Protocol#_queue`, and `_onHandshakeComplete`
 * flushes the queue to the socket and sets it back to undefined. A peer that starts a re-key
 * and never finishes it makes this queue grow without bound. Channel writes add no other
 * buffer: `Channel#_write` (lib/Channel.js) calls back as soon as the peer's window allows.
 *
 * An ssh2 upgrade must re-check: that `_queue` is still the only outbound holding place (and
 * still an array of packets), that `onWrite` still writes to the socket given to
 * `injectSocket`, and that the server still emits `handshake` after flushing the queue.
 *
 * The same holds for a Client (the CLI): its channel writes queue there while the relay's key
 * exchange is unfinished (cli/ssh/send-backpressure.ts).
 *
 * Returns a reader that sums the queue incrementally (the same array only ever grows), so a
 * flood of small queued packets costs O(new packets) per call.
 */
export function keyExchangeQueue(conn: Connection | Client): () => number {
  const proto = protocolOf(conn);
  let seen: Uint8Array[] | undefined;
  let counted = 0;
  let bytes = 0;
  return () => {
    const q = proto._queue;
    if (!q) {
      seen = undefined;
      return 0;
    }
    if (q !== seen || q.length < counted) {
      seen = q;
      counted = 0;
      bytes = 0;
    }
    for (; counted < q.length; counted++) bytes += q[counted]?.length ?? 0;
    return bytes;
  };
}
