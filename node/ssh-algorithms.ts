/**
 * What the relay's SSH server offers, explicitly (README "SSH clients and algorithms"). ssh2's defaults
 * include a key exchange its server cannot perform (`diffie-hellman-group-exchange-sha256`),
 * SHA-1 and encrypt-and-MAC MACs, NIST curves, and plain `zlib`, which compresses before
 * authentication. Everything here is something ssh2 1.17's server really performs (each is
 * forced by a real OpenSSH client in test/interop/openssh-algorithms.test.ts), and a client
 * still picks from it in its own order of preference.
 */
import type { Algorithms, CipherAlgorithm, CompressionAlgorithm, KexAlgorithm, MacAlgorithm } from 'ssh2';

/**
 * Key exchange. curve25519 first (fast, constant time). The finite-field groups are for
 * clients without curve25519: group14-sha256 is the one RFC 9142 says every implementation
 * MUST have, group16-sha512 the stronger one nearly everybody else has. group18-sha512 is left
 * out on purpose: each exchange costs the relay about 33 ms of CPU before authentication
 * (curve25519: 0.2 ms), a cheap lever for anyone with a TCP connection. No NIST curves (which
 * ssh-audit fails), no SHA-1 groups, and no group exchange (ssh2's server does not implement it).
 * ssh2 appends `kex-strict-s-v00@openssh.com` (the Terrapin countermeasure) by itself.
 */
export const KEX: readonly KexAlgorithm[] = Object.freeze([
  'curve25519-sha256',
  'curve25519-sha256@libssh.org',
  'diffie-hellman-group16-sha512',
  'diffie-hellman-group14-sha256',
]);

/** AEAD ciphers first; CTR (with the ETM MACs below) for clients without them, such as paramiko. */
export const CIPHERS: readonly CipherAlgorithm[] = Object.freeze([
  'chacha20-poly1305@openssh.com',
  'aes128-gcm@openssh.com',
  'aes256-gcm@openssh.com',
  'aes128-ctr',
  'aes192-ctr',
  'aes256-ctr',
]);

/** MACs (used only with CTR ciphers): encrypt-then-MAC with SHA-2, nothing else. */
export const MACS: readonly MacAlgorithm[] = Object.freeze(['hmac-sha2-256-etm@openssh.com', 'hmac-sha2-512-etm@openssh.com']);

/**
 * No compression. The relay passes bytes it never looks at; compressing them costs relay CPU on
 * every tunnel, and ssh2 bounds an inflated packet only by Node's buffer limit, which does not
 * fit a relay that bounds its memory per connection. Clients that ask for compression
 * (`ssh -C`, `plink -C`) connect uncompressed: every client offers `none`.
 */
export const COMPRESSION: readonly CompressionAlgorithm[] = Object.freeze(['none']);

/**
 * Signature algorithms the relay verifies in user authentication (sent as `server-sig-algs`,
 * RFC 8308): certificates are ed25519 keys signed by an ed25519 CA, nothing else is accepted.
 */
export const SERVER_SIG_ALGS = Object.freeze(['ssh-ed25519']);

/** The `algorithms` option of ssh2's Server. Host key algorithms follow the host key (ssh-ed25519). */
export function serverAlgorithms(): Algorithms {
  return { kex: [...KEX], cipher: [...CIPHERS], hmac: [...MACS], compress: [...COMPRESSION] };
}
