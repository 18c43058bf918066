import { randomPool } from '../../shared/random-pool.js';
import { requireSsh2 } from './protocol.js';

/** CSPRNG bytes that packet padding is taken from (shared/random-pool.ts). */
const paddingBytes = randomPool(64 * 1024);
export function fillPadding(packet: Buffer, offset: number, len: number): void {
  paddingBytes(len).copy(packet, offset);
}

export interface OutboundCipher {
  allocPacket(payloadLen: number): Buffer;
  free(): void;
  _encBlockLen?: number;
  _aadLen?: number;
  _macLen?: number;
}
type AllocPacket = (this: OutboundCipher, payloadLen: number) => Buffer;

/**
 * ssh2's `allocPacket` as lib/protocol/crypto.js writes it for every cipher class, with the
 * random padding taken from a pool: `block` the cipher's block length, `aad` 4 when the length
 * field is not encrypted (AEAD, encrypt-then-MAC), `extra` the room left after the packet for
 * the tag or MAC that the native binding writes in place.
 */
function pooledAllocPacket(shape: (c: OutboundCipher) => { block: number; aad: number; extra: number }, inPlace: boolean): AllocPacket {
  return function (this: OutboundCipher, payloadLen: number): Buffer {
    const { block, aad, extra } = shape(this);
    let pktLen = 4 + 1 + payloadLen;
    let padLen = block - ((pktLen - aad) & (block - 1));
    if (padLen < 4) padLen += block;
    pktLen += padLen;
    const packet = (inPlace ? inPlacePackets?.(pktLen + extra) : undefined) ?? Buffer.allocUnsafe(pktLen + extra);
    packet.writeUInt32BE(pktLen - 4, 0);
    packet[4] = padLen;
    fillPadding(packet, 5 + payloadLen, padLen);
    return packet;
  };
}

/**
 * The cipher classes (ssh2's native binding) that encrypt a packet in place and write that same
 * Buffer to the socket: their packets may come from a pool that takes them back once written
 * (node/packet-pool.ts). The pure-JS classes write other Buffers.
 */
const IN_PLACE_CLASSES = new Set(['AESGCMCipherBinding', 'ChaChaPolyCipherBinding', 'GenericCipherBinding']);

let inPlacePackets: ((size: number) => Buffer | undefined) | undefined;
/**
 * Where the packets of IN_PLACE_CLASSES get their memory from now on (the relay: its packet pool,
 * node/packet-pool.ts); `take` answering undefined, or no `take`, is Buffer.allocUnsafe as before.
 */
export function takeInPlacePacketsFrom(take: ((size: number) => Buffer | undefined) | undefined): void {
  inPlacePackets = take;
}

/** Each ssh2 outbound cipher class (by constructor name) and the shape of its packets. */
const CIPHER_SHAPES: Record<string, (c: OutboundCipher) => { block: number; aad: number; extra: number }> = {
  AESGCMCipherBinding: () => ({ block: 16, aad: 4, extra: 16 }),
  AESGCMCipherNative: () => ({ block: 16, aad: 4, extra: 0 }),
  ChaChaPolyCipherBinding: () => ({ block: 8, aad: 4, extra: 16 }),
  ChaChaPolyCipherNative: () => ({ block: 8, aad: 4, extra: 0 }),
  GenericCipherBinding: (c) => ({ block: c._encBlockLen ?? NaN, aad: c._aadLen ?? NaN, extra: c._macLen ?? NaN }),
  GenericCipherNative: (c) => ({ block: c._encBlockLen ?? NaN, aad: c._aadLen ?? NaN, extra: 0 }),
};

/** The packet shape of an outbound cipher object (see pooledAllocPacket); undefined for a class not known. */
export function packetShape(cipher: OutboundCipher): { block: number; aad: number; extra: number } | undefined {
  const shape = CIPHER_SHAPES[(Object.getPrototypeOf(cipher) as { constructor: { name: string } }).constructor.name]?.(cipher);
  return shape && Number.isInteger(shape.block) && Number.isInteger(shape.aad) && Number.isInteger(shape.extra) ? shape : undefined;
}

interface CryptoModule {
  CIPHER_INFO?: Record<string, { keyLen: number; ivLen: number }>;
  MAC_INFO?: Record<string, { len: number }>;
  createCipher?: (config: unknown) => OutboundCipher;
}

/** One instance of every outbound cipher class ssh2 can create here (binding and pure JS), made with throwaway keys. */
export function sampleCiphers(): OutboundCipher[] {
  const crypto = requireSsh2('ssh2/lib/protocol/crypto.js') as CryptoModule;
  const { CIPHER_INFO, MAC_INFO, createCipher } = crypto;
  if (!CIPHER_INFO || !MAC_INFO || typeof createCipher !== 'function') throw new Error('ssh2 internals changed: protocol/crypto.js CIPHER_INFO, MAC_INFO or createCipher missing');
  const out: OutboundCipher[] = [];
  for (const name of ['aes128-gcm@openssh.com', 'chacha20-poly1305@openssh.com', 'aes128-ctr']) {
    const info = CIPHER_INFO[name];
    const mac = MAC_INFO['hmac-sha2-256-etm@openssh.com'];
    if (!info || !mac) throw new Error(`ssh2 internals changed: no CIPHER_INFO for ${name}`);
    for (const forceNative of [false, true]) {
      out.push(
        createCipher({
          outbound: {
            onWrite: () => {},
            cipherInfo: info,
            cipherKey: Buffer.alloc(info.keyLen),
            cipherIV: Buffer.alloc(info.ivLen),
            seqno: 0,
            macInfo: mac,
            macKey: Buffer.alloc(mac.len),
            forceNative,
          },
        }),
      );
    }
  }
  return out;
}

let paddingInstalled = false;
/** ssh2's own allocPacket of each cipher class, before installPooledPadding replaced it (for tests). */
export const ORIGINAL_ALLOC_PACKET = new Map<string, AllocPacket>();

/**
 * ssh2 fills each packet's 4 to 19 bytes of random padding with its own `randomFillSync` call
 * (lib/protocol/crypto.js, every cipher class's `allocPacket`): one call into OpenSSL per packet,
 * about 5% of the relay's CPU while it moves data. This replaces `allocPacket` on the prototype
 * of each outbound cipher class with the same arithmetic, taking the padding from a pool of
 * CSPRNG bytes refilled 64 KiB at a time. Packets are byte-for-byte the same shape, the padding
 * still random (RFC 4253 6), for every peer. Idempotent; throws "ssh2 internals changed" if a
 * class is not one it knows.
 */
export function installPooledPadding(): void {
  if (paddingInstalled) return;
  const samples = sampleCiphers();
  for (const c of samples) {
    const proto = Object.getPrototypeOf(c) as { constructor: { name: string }; allocPacket: AllocPacket };
    const name = proto.constructor.name;
    const shape = CIPHER_SHAPES[name];
    if (!shape || typeof proto.allocPacket !== 'function') throw new Error(`ssh2 internals changed: unknown cipher class ${name}`);
    if (!ORIGINAL_ALLOC_PACKET.has(name)) {
      ORIGINAL_ALLOC_PACKET.set(name, proto.allocPacket);
      proto.allocPacket = pooledAllocPacket(shape, IN_PLACE_CLASSES.has(name));
    }
    c.free();
  }
  paddingInstalled = true;
}
