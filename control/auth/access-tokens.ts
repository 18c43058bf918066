import { hash, type KeyObject } from 'node:crypto';
import { z } from 'zod';
import { checkTimeClaims, hasAudience, JwsError, signJws, verifyJws } from '../../protocol/jws.js';
import { ACCESS_TOKEN_TYP } from '../../protocol/lease-claims.js';
import type { PublishedKey } from '../keys/key-store.js';
import type { Deps } from '../deps.js';
import { AppError } from '../lib/errors.js';
import { unixSeconds } from '../../shared/clock.js';

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
  /**
   * When that session ends unless it is refreshed (unix seconds, rounded down): the expiry of the
   * refresh token minted with this access token. A session's end only moves later (a CLI
   * session's refresh) or comes early by a revocation (checked on every use), so no lease issued
   * through the token may outlive it (services/leases.ts signLease).
   */
  sxp: z.number().int().optional(),
});
export type AccessClaims = z.infer<typeof AccessClaimsSchema>;

/** When the login session of a session's access token ends unless it is refreshed (`sxp`); null: not a session's token, or one without it. */
export const sessionEnd = (claims: Pick<AccessClaims, 'sid' | 'sxp'>): Date | null =>
  claims.sid !== undefined && claims.sxp !== undefined ? new Date(claims.sxp * 1000) : null;

export async function mintAccessToken(
  deps: Pick<Deps, 'keys' | 'clock' | 'ids' | 'settings'>,
  user: { id: string; name: string; role: 'admin' | 'member' },
  service?: { id: string; scopes: string[] },
  session?: { id: string; endsAt: Date },
): Promise<{ token: string; expiresIn: number }> {
  const key = await deps.keys.signing('sig');
  const now = unixSeconds(deps.clock.now());
  // A session's access token ends by the session's end: a session that ends on its own (its
  // refresh token expires) is revoked by nothing, and the token's use checks only revocation.
  const ttl = session ? Math.max(1, Math.min(deps.settings.accessTokenTtl, unixSeconds(session.endsAt) - now)) : deps.settings.accessTokenTtl;
  const token = signJws(
    { kid: key.kid, typ: ACCESS_TOKEN_TYP },
    {
      name: user.name,
      role: user.role,
      ...(service ? { scope: service.scopes.join(' '), sti: service.id } : {}),
      ...(session ? { sid: session.id, sxp: unixSeconds(session.endsAt) } : {}),
      iss: deps.settings.issuer,
      aud: apiAudience(deps.settings.issuer),
      sub: user.id,
      jti: deps.ids.id('at'),
      iat: now,
      exp: now + ttl,
    },
    key.privateKey,
  );
  return { token, expiresIn: ttl };
}

/**
 * The verifying keys for the current key set, per key store: only `sig` keys (SSH CA keys never
 * verify a JWT). A kid names one immutable key, so the kid list identifies the set.
 */
const verifiers = new WeakMap<object, { kids: string; keys: Map<string, KeyObject> }>();

function verifierFor(store: object, published: PublishedKey[]): Map<string, KeyObject> {
  const kids = published.map((k) => k.kid).join(' ');
  const cached = verifiers.get(store);
  if (cached?.kids === kids) return cached.keys;
  const keys = new Map(published.filter((k) => k.use === 'sig').map((k) => [k.kid, k.publicKey]));
  verifiers.set(store, { kids, keys });
  return keys;
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
  const key = hash('sha256', token, 'base64url');
  const hit = cache.get(key);
  if (hit && hit.exp * 1000 > deps.clock.now().getTime()) return hit.claims;
  if (hit) cache.delete(key);
  const claims = await verifyFully(deps, token);
  if (cache.size >= VERIFIED_MAX) cache.delete(cache.keys().next().value!);
  cache.set(key, claims);
  return claims.claims;
}

async function verifyFully(deps: Pick<Deps, 'keys' | 'clock' | 'settings'>, token: string): Promise<{ claims: AccessClaims; exp: number }> {
  const keys = verifierFor(deps.keys, await deps.keys.published());
  try {
    const payload = verifyJws(token, ACCESS_TOKEN_TYP, (kid) => keys.get(kid));
    if (payload.iss !== deps.settings.issuer || !hasAudience(payload, apiAudience(deps.settings.issuer))) {
      throw new JwsError('claims', 'wrong issuer or audience');
    }
    const { exp } = checkTimeClaims(payload, deps.clock.now());
    const parsed = AccessClaimsSchema.safeParse(payload);
    if (!parsed.success) throw new AppError('TOKEN_INVALID', 'access token has unexpected claims');
    return { claims: parsed.data, exp };
  } catch (err) {
    if (err instanceof AppError) throw err;
    if (err instanceof JwsError && err.reason === 'expired') throw new AppError('TOKEN_EXPIRED', 'access token expired; refresh it or log in again');
    // Never echo the token or its claims.
    throw new AppError('TOKEN_INVALID', 'access token is not valid for this server', { cause: err });
  }
}
