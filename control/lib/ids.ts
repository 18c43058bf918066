import { randomBytes, randomFillSync, randomUUID, createHash } from 'node:crypto';

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

/**
 * Random bytes for small draws taken often (a lease's certificate serial): one `randomFillSync`
 * per 4 KiB instead of one per draw (issue 11: a call each was about 1% of a lease's CPU). Every
 * byte comes from the same CSPRNG and is handed out once; a used-up pool is replaced, never
 * refilled, so a draw already handed out (a subarray) never changes.
 */
const POOL_BYTES = 4096;
let pool = Buffer.alloc(0);
let poolOffset = 0;

/** `n` (at most 4 KiB) fresh random bytes: a view into the pool, not to be written to. */
export function pooledRandomBytes(n: number): Buffer {
  if (n > POOL_BYTES) throw new RangeError(`pooledRandomBytes: at most ${POOL_BYTES} bytes`);
  if (poolOffset + n > pool.length) {
    pool = randomFillSync(Buffer.allocUnsafeSlow(POOL_BYTES));
    poolOffset = 0;
  }
  const out = pool.subarray(poolOffset, poolOffset + n);
  poolOffset += n;
  return out;
}

export const randomIds: Ids = {
  id: (prefix) => `${prefix}_${randomUUID().replaceAll('-', '')}`,
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
  return createHash('sha256').update(secret).digest('base64url');
}
