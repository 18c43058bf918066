import { z } from 'zod';

/**
 * The one trust document a relay needs: `GET /.well-known/jwks.json`.
 * Lease-signing keys carry `use: "sig"` (so JOSE libraries pick them for JWT verification);
 * SSH user-CA keys carry `use: "ssh-ca"` (and are never accepted as JWT keys).
 */
export const JWK_USE_LEASE = 'sig';
export const JWK_USE_SSH_CA = 'ssh-ca';
export const JWKS_PATH = '/.well-known/jwks.json';

export const Ed25519JwkSchema = z.object({
  kty: z.literal('OKP'),
  crv: z.literal('Ed25519'),
  x: z.string().regex(/^[A-Za-z0-9_-]{43}$/),
  kid: z.string().min(1).max(128),
  use: z.enum([JWK_USE_LEASE, JWK_USE_SSH_CA]),
  alg: z.literal('EdDSA'),
});
export type Ed25519Jwk = z.infer<typeof Ed25519JwkSchema>;

export const JwksSchema = z.object({
  keys: z.array(Ed25519JwkSchema).max(64),
});
export type Jwks = z.infer<typeof JwksSchema>;

/** The 32 raw public-key bytes of an Ed25519 JWK. */
export function jwkPublicKeyBytes(jwk: Ed25519Jwk): Buffer {
  return Buffer.from(jwk.x, 'base64url');
}
