import { arr, obj, oneOf, read, str } from './check.js';
import type { Ed25519Jwk, Jwks } from './jwks.js';

/**
 * The JWKS's names (jwks.ts holds its zod schemas and re-exports these), and the relay's plain
 * check of it: tunnel-node reads the JWKS without zod (issue 11, idle relay RSS;
 * protocol/check.ts). protocol/relay-checks.test compares checkJwks with JwksSchema.
 */

export const JWK_USE_LEASE = 'sig';
export const JWK_USE_SSH_CA = 'ssh-ca';
export const JWKS_PATH = '/.well-known/jwks.json';
export const JWK_X_RE = /^[A-Za-z0-9_-]{43}$/;
export const JWKS_MAX_KEYS = 64;
/** The longest key id a JWKS may name (the control plane's are `sig_`/`ca_` and 32 hex digits). */
export const JWK_KID_MAX = 128;

const jwk = obj({
  kty: oneOf(['OKP']),
  crv: oneOf(['Ed25519']),
  x: str({ re: JWK_X_RE }),
  kid: str({ min: 1, max: JWK_KID_MAX }),
  use: oneOf([JWK_USE_LEASE, JWK_USE_SSH_CA] as const),
  alg: oneOf(['EdDSA']),
});
const jwks = obj({ keys: arr(jwk, { max: JWKS_MAX_KEYS }) });

/** A JWKS read with JwksSchema's rules (unknown keys dropped), or undefined when it is not one. */
export function checkJwks(v: unknown): Jwks | undefined {
  const r = read(jwks, v);
  return r.ok ? r.value : undefined;
}

/** The 32 raw public-key bytes of an Ed25519 JWK. */
export function jwkPublicKeyBytes(jwk: Ed25519Jwk): Buffer {
  return Buffer.from(jwk.x, 'base64url');
}
