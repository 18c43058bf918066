import { createPublicKey, diffieHellman, type KeyObject } from 'node:crypto';
import type { Client, Connection } from 'ssh2';
import { protocolOf } from './protocol.js';

/** ssh2's Curve25519Exchange (lib/protocol/kex.js), as far as this file uses it. */
interface Curve25519Exchange {
  _keys: { privateKey: KeyObject; publicKey: KeyObject } | null;
  generateKeys(): void;
  getPublicKey(): Buffer;
  computeSecret(otherPublicKey: Buffer): Buffer | Error;
}

const X25519_KEY_LENGTH = 32;
/** X25519's base point, u = 9 (RFC 7748 section 4.1): X25519(k, 9) is the public key of k. */
const BASE_POINT = x25519PublicKey(Buffer.concat([Buffer.of(9), Buffer.alloc(X25519_KEY_LENGTH - 1)]));

function x25519PublicKey(raw: Buffer): KeyObject {
  return createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: raw.toString('base64url') }, format: 'jwk' });
}

/** ssh2's convertToMpint (kex.js): the shared secret as an SSH mpint's bytes. */
function toMpint(buf: Buffer): Buffer {
  let idx = 0;
  while (idx < buf.length && buf[idx] === 0) idx++;
  const body = buf.subarray(idx);
  if (body.length > 0 && ((body[0] as number) & 0x80) !== 0) return Buffer.concat([Buffer.of(0), body]);
  return idx === 0 ? buf : Buffer.from(body);
}

/**
 * The two key conversions of ssh2's curve25519-sha256 exchange, without OpenSSL 3's DER
 * encoder and decoder: ssh2 exports its X25519 public key as SubjectPublicKeyInfo DER and takes
 * the last 32 bytes, and imports the peer's by building the DER and parsing it, about 150 and
 * 200 µs of CPU on this machine's Node 20 (OpenSSL 3.0), where an X25519 agreement is 65 µs and a
 * JWK import 15 µs: about a twentieth of the relay's CPU per connection setup (issue 11,
 * bench:load profile). Here the public key is the agreement with the base point (the
 * definition of an X25519 public key) and the peer's key is imported as a JWK. Not a JWK export:
 * under Node 20 that could deadlock with the GC (protocol/ssh-key.ts, rawPublicKey). Errors are
 * returned, not thrown, as ssh2's computeSecret does (a bad peer key fails the key exchange).
 */
const methods: Pick<Curve25519Exchange, 'getPublicKey' | 'computeSecret'> = {
  getPublicKey(this: Curve25519Exchange): Buffer {
    this.generateKeys();
    return diffieHellman({ privateKey: this._keys!.privateKey, publicKey: BASE_POINT });
  },
  computeSecret(this: Curve25519Exchange, otherPublicKey: Buffer): Buffer | Error {
    this.generateKeys();
    try {
      return toMpint(diffieHellman({ privateKey: this._keys!.privateKey, publicKey: x25519PublicKey(otherPublicKey) }));
    } catch (err) {
      return err instanceof Error ? err : new Error(String(err));
    }
  },
};

/** ssh2's own methods, kept once replaced (for tests). */
export let originalX25519Methods: Pick<Curve25519Exchange, 'getPublicKey' | 'computeSecret'> | undefined;

let unusable = false;

/**
 * ssh2 does not export the class: it is found on the key exchange of a connection's first
 * curve25519 handshake (the Protocol keeps `_kex` after it), so call this once a connection's
 * handshake is done. That first handshake, and any running beside it, took ssh2's own methods;
 * every later one takes these. Costs one property read once done. If ssh2's class no longer has
 * the methods replaced here, ssh2's stay (slower, not wrong) and this returns false for good:
 * node/ssh2-internals.test.ts checks that the replacement happens, so an ssh2 upgrade that
 * changes the class fails a test, not the relay.
 */
export function useFastX25519(conn: Connection | Client): boolean {
  if (originalX25519Methods) return true;
  if (unusable) return false;
  const kex = protocolOf(conn)._kex as Partial<Curve25519Exchange> | undefined;
  if (kex?.constructor?.name !== 'Curve25519Exchange') return false;
  const proto = Object.getPrototypeOf(kex) as Curve25519Exchange;
  if (!Object.hasOwn(proto, 'getPublicKey') || !Object.hasOwn(proto, 'computeSecret') || typeof proto.generateKeys !== 'function') {
    unusable = true;
    return false;
  }
  originalX25519Methods = { getPublicKey: proto.getPublicKey, computeSecret: proto.computeSecret };
  proto.getPublicKey = methods.getPublicKey;
  proto.computeSecret = methods.computeSecret;
  return true;
}
