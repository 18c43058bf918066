import { z } from 'zod';
import { JWK_KID_MAX, JWK_USE_LEASE, JWK_USE_SSH_CA, JWK_X_RE, JWKS_MAX_KEYS } from './jwks-check.js';

export * from './jwks-check.js';

/**
 * The one trust document a relay needs: `GET /.well-known/jwks.json`.
 * Lease-signing keys carry `use: "sig"` (so JOSE libraries pick them for JWT verification);
 * SSH user-CA keys carry `use: "ssh-ca"` (and are never accepted as JWT keys).
 * The relay reads it through jwks-check.ts's plain check, tested against these schemas.
 */

export const Ed25519JwkSchema = z.object({
  kty: z.literal('OKP'),
  crv: z.literal('Ed25519'),
  x: z.string().regex(JWK_X_RE),
  kid: z.string().min(1).max(JWK_KID_MAX),
  use: z.enum([JWK_USE_LEASE, JWK_USE_SSH_CA]),
  alg: z.literal('EdDSA'),
});
export type Ed25519Jwk = z.infer<typeof Ed25519JwkSchema>;

export const JwksSchema = z.object({
  keys: z.array(Ed25519JwkSchema).max(JWKS_MAX_KEYS),
});
export type Jwks = z.infer<typeof JwksSchema>;
