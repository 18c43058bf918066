import type { Duplex } from 'node:stream';
import { fillPadding, packetShape, type OutboundCipher } from './pooled-padding.js';
import { ssh2SendPacket, type ProtocolInternals } from './protocol.js';

/** SSH_MSG_CHANNEL_DATA (RFC 4254 5.2). */
const MSG_CHANNEL_DATA = 94;

/**
 * Bytes before a channel's data in a packet that channelDataInPlace sends: packet length (4),
 * padding length (1), then the CHANNEL_DATA message's type (1), recipient channel (4) and data
 * length (4).
 */
export const IN_PLACE_HEAD = 14;
/** Room after the data: the longest padding (block 16: up to 19 bytes) and the longest tag or MAC (hmac-sha2-512, 64). */
export const IN_PLACE_TAIL = 19 + 64;

interface SendingChannel {
  outgoing?: { id?: number; window?: number; packetSize?: number; state?: string };
  _client?: { _protocol?: ProtocolInternals & { _kexinit?: unknown; _cipher?: OutboundCipher } };
}

/** Sends channel data that was read straight into a buffer laid out as a packet (channelDataInPlace). */
export interface ChannelDataInPlace {
  /**
   * Sends `buf[IN_PLACE_HEAD, IN_PLACE_HEAD + n)` as one CHANNEL_DATA packet built around it in
   * `buf` (the headers before it, padding and room for the tag or MAC after it; ssh2's cipher
   * encrypts it in place and hands it to the socket) and counts it against the peer's window:
   * the packet ssh2's own `Channel#_write` and `Protocol#channelData` would have sent, without
   * their copy into a fresh packet. Sends nothing and returns false when it cannot: the channel
   * is not open, `n` is more than the window left or the peer's maximum packet size, a key
   * exchange is in progress (ssh2 then queues bare payloads), the packet writer compresses, the
   * cipher is not one whose packet shape is known, or the packet does not fit in `buf`. The
   * caller then sends the data through the channel's Writable side, which waits for the window.
   */
  trySend(buf: Buffer, n: number): boolean;
  /** The peer's maximum data per packet on this channel. */
  maxData(): number;
}

/**
 * Sending on an ssh2 channel (client or server side) from buffers laid out as packets (see
 * ChannelDataInPlace); undefined when the channel lacks what it needs. Relies on
 * `Channel.outgoing.{id, window, packetSize, state}`, `_client._protocol.{_kexinit, _cipher,
 * _packetRW.write}` (outside a key exchange a plain `PacketWriter`, `allocStart` 5, whose
 * `finalize` returns the packet as is) and lib/protocol/utils.js `sendPacket`.
 */
export function channelDataInPlace(ch: Duplex): ChannelDataInPlace | undefined {
  const c = ch as unknown as SendingChannel;
  const o = c.outgoing;
  const proto = c._client?._protocol;
  const send = ssh2SendPacket();
  if (!o || typeof o.id !== 'number' || typeof o.window !== 'number' || typeof o.packetSize !== 'number' || !proto?._packetRW || !send) return undefined;
  const out = o as { id: number; window: number; packetSize: number; state?: string };
  let shapeOf: OutboundCipher | undefined;
  let shape: ReturnType<typeof packetShape>;
  return {
    maxData: () => out.packetSize,
    trySend(buf, n) {
      if (out.state !== 'open' || n > out.window || n > out.packetSize || proto._kexinit !== undefined) return false;
      const w = proto._packetRW?.write;
      const cipher = proto._cipher;
      if (!w || w.allocStart !== 5 || w.constructor.name !== 'PacketWriter' || !cipher) return false;
      // A re-key replaces the cipher object; its shape is looked up once per cipher.
      if (cipher !== shapeOf) {
        shapeOf = cipher;
        shape = packetShape(cipher);
      }
      if (!shape) return false;
      let pktLen = IN_PLACE_HEAD + n;
      let padLen = shape.block - ((pktLen - shape.aad) & (shape.block - 1));
      if (padLen < 4) padLen += shape.block;
      pktLen += padLen;
      const total = pktLen + shape.extra;
      if (total > buf.length) return false;
      buf.writeUInt32BE(pktLen - 4, 0);
      buf[4] = padLen;
      buf[5] = MSG_CHANNEL_DATA;
      buf.writeUInt32BE(out.id, 6);
      buf.writeUInt32BE(n, 10);
      fillPadding(buf, IN_PLACE_HEAD + n, padLen);
      out.window -= n;
      send(proto, total === buf.length ? buf : buf.subarray(0, total));
      return true;
    },
  };
}
