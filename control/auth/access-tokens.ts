import { createHash } from 'node:crypto';
import { createLocalJWKSet, errors as joseErrors, jwtVerify, SignJWT } from 'jose';
import { z } from 'zod';
import { ACCESS_TOKEN_TYP } from '../../protocol/lease-claims.js';
import { buildJwks } from '../ca/lease-issuer.js';
import type { Deps } from '../deps.js';
import { AppError } from '../lib/errors.js';
import { unixSeconds } from '../lib/clock.js';

/** Audience of access tokens: the API itself (leases carry a node id instead). */
export const apiAudience = (issuer: string) => `${issuer}/v1`;

const AccessClaimsSchema = z.object({
  sub: z.string(),
  name: z.string(),
  role: z.enum(['admin', 'member']),
  jti: z.string(),
  scope: z.string().optional(),
  sti: z.string().optional(),
  /** The login session (refresh token family) the token belongs to; checked on every use. */
  sid: z.string().optional(),
});
export type AccessClaims = z.infer<typeof AccessClaimsSchema>;

export async function mintAccessToken(
  deps: Pick<Deps, 'keys' | 'clock' | 'ids' | 'settings'>,
  user: { id: string; name: string; role: 'admin' | 'member' },
  service?: { id: string; scopes: string[] },
  sessionId?: string,
): Promise<{ token: string; expiresIn: number }> {
  const key = await deps.keys.signing('sig');
  const now = unixSeconds(deps.clock.now());
  const ttl = deps.settings.accessTokenTtl;
  const token = await new SignJWT({
    name: user.name,
    role: user.role,
    ...(service ? { scope: service.scopes.join(' '), sti: service.id } : {}),
    ...(sessionId ? { sid: sessionId } : {}),
  })
    .setProtectedHeader({ alg: 'EdDSA', kid: key.kid, typ: ACCESS_TOKEN_TYP })
    .setIssuer(deps.settings.issuer)
    .setAudience(apiAudience(deps.settings.issuer))
    .setSubject(user.id)
    .setJti(deps.ids.id('at'))
    .setIssuedAt(now)
    .setExpirationTime(now + ttl)
    .sign(key.privateKey);
  return { token, expiresIn: ttl };
}

type LocalJwks = ReturnType<typeof createLocalJWKSet>;
/**
 * The verifier for the current key set, per key store. A kid names one immutable key, so the
 * kid list identifies the set; reusing the verifier keeps jose from importing the keys again on
 * every request (a third of the cost of a verification).
 */
const verifiers = new WeakMap<object, { kids: string; jwks: LocalJwks }>();

function verifierFor(store: object, published: Parameters<typeof buildJwks>[0]): LocalJwks {
  const kids = published.map((k) => k.kid).join(' ');
  const cached = verifiers.get(store);
  if (cached?.kids === kids) return cached.jwks;
  const jwks = createLocalJWKSet(buildJwks(published));
  verifiers.set(store, { kids, jwks });
  return jwks;
}

/**
 * Tokens that verified, by SHA-256 of the token, with their expiry: a signature check is the
 * costliest part of an API call and its result never changes, so a client that reuses its token
 * (they all do, for up to 10 minutes) pays for it once per replica. Expiry is checked on every
 * use; a key leaves the JWKS only after everything it signed expired. Bounded (oldest evicted).
 * Only the signature is cached: whether the session, user or service token behind the token is
 * still live is read from the database on every request (requireUser), so a logout or a revoked
 * family ends the token at once on every replica.
 */
const VERIFIED_MAX = 10_000;
const verifiedTokens = new WeakMap<object, Map<string, { claims: AccessClaims; exp: number }>>();

/** Verifies an access token's signature, type, issuer, audience and lifetime. */
export async function verifyAccessToken(deps: Pick<Deps, 'keys' | 'clock' | 'settings'>, token: string): Promise<AccessClaims> {
  let cache = verifiedTokens.get(deps.keys);
  if (!cache) verifiedTokens.set(deps.keys, (cache = new Map()));
  const key = createHash('sha256').update(token).digest('base64url');
  const hit = cache.get(key);
  if (hit && hit.exp * 1000 > deps.clock.now().getTime()) return hit.claims;
  if (hit) cache.delete(key);
  const claims = await verifyFully(deps, token);
  if (cache.size >= VERIFIED_MAX) cache.delete(cache.keys().next().value!);
  cache.set(key, claims);
  return claims.claims;
}

async function verifyFully(deps: Pick<Deps, 'keys' | 'clock' | 'settings'>, token: string): Promise<{ claims: AccessClaims; exp: number }> {
  const jwks = verifierFor(deps.keys, await deps.keys.published());
  try {
    const { payload } = await jwtVerify(token, jwks, {
      algorithms: ['EdDSA'],
      issuer: deps.settings.issuer,
      audience: apiAudience(deps.settings.issuer),
      typ: ACCESS_TOKEN_TYP,
      currentDate: deps.clock.now(),
      requiredClaims: ['exp', 'sub', 'jti'],
    });
    const parsed = AccessClaimsSchema.safeParse(payload);
    if (!parsed.success || typeof payload.exp !== 'number') throw new AppError('TOKEN_INVALID', 'access token has unexpected claims');
    return { claims: parsed.data, exp: payload.exp };
  } catch (err) {
    if (err instanceof AppError) throw err;
    if (err instanceof joseErrors.JWTExpired) throw new AppError('TOKEN_EXPIRED', 'access token expired; refresh it or log in again');
    // Never echo the token or jose's message (which may quote claims).
    throw new AppError('TOKEN_INVALID', 'access token is not valid for this server', { cause: err });
  }
}
