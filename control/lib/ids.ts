import { hash, randomBytes } from 'node:crypto';
import { randomPool } from '../../shared/random-pool.js';

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

/** `n` (at most 4 KiB) fresh random bytes for small draws taken often: a view into a pool (shared/random-pool.ts), not to be written to. */
export const pooledRandomBytes = randomPool(4096);

export const randomIds: Ids = {
  // 32 hex digits of the pool (as many as a dashless UUID has, all of them random): a request id
  // and a lease id per lease, and a UUID's formatting and dash removal cost about 0.4% of its CPU (issue 11).
  id: (prefix) => `${prefix}_${pooledRandomBytes(16).toString('hex')}`,
  secret: (prefix) => `${prefix}_${randomBytes(32).toString('base64url')}`,
  serial: () => pooledRandomBytes(8).readBigUInt64BE(0),
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
  return hash('sha256', secret, 'base64url');
}
