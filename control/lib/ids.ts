import { randomBytes, randomUUID, createHash } from 'node:crypto';

/** Injected source of identifiers and secrets. */
export interface Ids {
  /** Opaque resource id with a readable prefix, e.g. `lse_...`. */
  id(prefix: string): string;
  /** A bearer secret with a prefix, e.g. `tnl_rt_...`; only its hash is stored. */
  secret(prefix: string): string;
  /** Random 64-bit certificate serial. */
  serial(): bigint;
  /** Human-typable device user code, `XXXX-XXXX`. */
  userCode(): string;
}

// RFC 8628 §6.1: a reduced alphabet without vowels or look-alikes.
const USER_CODE_ALPHABET = 'BCDFGHJKLMNPQRSTVWXZ';

export const randomIds: Ids = {
  id: (prefix) => `${prefix}_${randomUUID().replaceAll('-', '')}`,
  secret: (prefix) => `${prefix}_${randomBytes(32).toString('base64url')}`,
  serial: () => randomBytes(8).readBigUInt64BE(0),
  userCode: () => {
    const bytes = randomBytes(8);
    let s = '';
    for (let i = 0; i < 8; i++) {
      // 256 % 20 != 0 gives a tiny bias; acceptable for a 10^10 space that expires in minutes.
      s += USER_CODE_ALPHABET[bytes[i]! % USER_CODE_ALPHABET.length];
      if (i === 3) s += '-';
    }
    return s;
  },
};

/** Hash of a bearer secret as stored in the database (secrets are high-entropy, so no salt). */
export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('base64url');
}
