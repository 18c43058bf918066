import { randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto';

function scrypt(password: string, salt: Buffer, keylen: number, opts: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scryptCb(password, salt, keylen, opts, (err, key) => (err ? reject(err) : resolve(key))),
  );
}

export interface PasswordHasher {
  hash(password: string): Promise<string>;
  verify(password: string, stored: string | null): Promise<boolean>;
}

/**
 * scrypt password hashes stored as `scrypt$N$r$p$salt$hash` (base64url). `cost` is log2(N):
 * 15 in production (about 32 MiB and 50 ms per hash); tests may pass less.
 */
export function scryptHasher(cost = 15): PasswordHasher {
  const N = 2 ** cost;
  const r = 8;
  const p = 1;
  const maxmem = 256 * N * r;
  // A fixed dummy hash makes unknown users cost as much as known ones (no user enumeration by timing).
  let dummy: Promise<string> | undefined;
  const hasher: PasswordHasher = {
    async hash(password) {
      const salt = randomBytes(16);
      const key = await scrypt(password.normalize('NFKC'), salt, 32, { N, r, p, maxmem });
      return `scrypt$${N}$${r}$${p}$${salt.toString('base64url')}$${key.toString('base64url')}`;
    },
    async verify(password, stored) {
      if (stored === null) {
        dummy ??= hasher.hash('dummy-password-for-timing');
        await hasher.verify(password, await dummy);
        return false;
      }
      const parts = stored.split('$');
      if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
      const [, n, rr, pp, salt, hash] = parts as [string, string, string, string, string, string];
      const expected = Buffer.from(hash, 'base64url');
      const sN = Number(n);
      const key = await scrypt(password.normalize('NFKC'), Buffer.from(salt, 'base64url'), expected.length, {
        N: sN,
        r: Number(rr),
        p: Number(pp),
        maxmem: 256 * sN * Number(rr),
      });
      return key.length === expected.length && timingSafeEqual(key, expected);
    },
  };
  return hasher;
}
