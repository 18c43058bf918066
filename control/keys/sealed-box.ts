import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

/**
 * AES-256-GCM sealing of private keys at rest with the master key.
 * Layout (base64url of): version(1)=1 | iv(12) | tag(16) | ciphertext. The kid is bound as AAD,
 * so a sealed key cannot be swapped onto another row.
 */
const VERSION = 1;

export function seal(masterKey: Buffer, plaintext: Buffer, aad: string): string {
  assertKey(masterKey);
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', masterKey, iv);
  cipher.setAAD(Buffer.from(aad));
  const ct = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([Buffer.from([VERSION]), iv, cipher.getAuthTag(), ct]).toString('base64url');
}

export class SealedBoxError extends Error {
  readonly code = 'SEALED_BOX_INVALID';
}

export function open(masterKey: Buffer, sealed: string, aad: string): Buffer {
  assertKey(masterKey);
  const raw = Buffer.from(sealed, 'base64url');
  if (raw.length < 1 + 12 + 16 + 1 || raw[0] !== VERSION) throw new SealedBoxError('sealed key has an unknown format');
  const decipher = createDecipheriv('aes-256-gcm', masterKey, raw.subarray(1, 13));
  decipher.setAAD(Buffer.from(aad));
  decipher.setAuthTag(raw.subarray(13, 29));
  try {
    return Buffer.concat([decipher.update(raw.subarray(29)), decipher.final()]);
  } catch (cause) {
    throw new SealedBoxError('cannot decrypt a stored private key: is TUNNEL_MASTER_KEY the one it was created with?', {
      cause,
    });
  }
}

function assertKey(k: Buffer): void {
  if (k.length !== 32) throw new SealedBoxError('master key must be 32 bytes');
}
