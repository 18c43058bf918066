import type { MiddlewareHandler } from 'hono';
import { and, eq, sql } from 'drizzle-orm';
import { nodes, refreshTokens, serviceTokens, users } from '../db/schema/index.js';
import { verifyAccessToken } from '../auth/access-tokens.js';
import { AppError } from '../lib/errors.js';
import { hashSecret } from '../lib/ids.js';
import type { AppEnv } from './env.js';

function bearer(header: string | undefined): string {
  if (!header) throw new AppError('UNAUTHENTICATED', 'send an access token: Authorization: Bearer <token> (see `tunnel login`)');
  const m = /^Bearer ([A-Za-z0-9._~+/=-]{1,4096})$/.exec(header);
  if (!m) throw new AppError('UNAUTHENTICATED', 'Authorization header must be "Bearer <token>"');
  return m[1]!;
}

/** Requires a valid access token of an enabled user (and a live service token, if it came from one). */
export const requireUser: MiddlewareHandler<AppEnv> = async (c, next) => {
  const deps = c.get('deps');
  const claims = await verifyAccessToken(deps, bearer(c.req.header('authorization')));
  // The user and, for a login session's token, whether the session still stands, in one query:
  // a logout or a refresh-token reuse ends its access tokens at once, on every replica.
  const sessionLive = claims.sid
    ? sql<boolean>`exists (select 1 from ${refreshTokens} where ${refreshTokens.familyId} = ${claims.sid} and ${refreshTokens.revokedAt} is null)`
    : sql<boolean>`true`;
  const [row] = await deps.db.select({ user: users, sessionLive }).from(users).where(eq(users.id, claims.sub)).limit(1);
  const user = row?.user;
  if (!user || user.disabled) throw new AppError('TOKEN_INVALID', 'the user of this token no longer exists or is disabled');
  if (!row.sessionLive) throw new AppError('TOKEN_INVALID', 'this login session ended (logged out or revoked); log in again');
  if (claims.sti) {
    const [st] = await deps.db.select().from(serviceTokens).where(eq(serviceTokens.id, claims.sti)).limit(1);
    const now = deps.clock.now();
    if (!st || st.revokedAt || (st.expiresAt && st.expiresAt <= now)) {
      throw new AppError('TOKEN_INVALID', 'the service token behind this access token was revoked or expired');
    }
  }
  c.set('principal', {
    userId: user.id,
    name: user.name,
    role: user.role,
    scopes: claims.sti ? (claims.scope ?? '').split(' ').filter(Boolean) : null,
    serviceTokenId: claims.sti ?? null,
    sessionId: claims.sid ?? null,
  });
  c.set('logger', c.get('logger').child({ user: user.name }));
  await next();
};

export const requireAdmin: MiddlewareHandler<AppEnv> = async (c, next) => {
  const p = c.get('principal');
  if (p.role !== 'admin') throw new AppError('FORBIDDEN', 'this needs the admin role');
  if (p.scopes) throw new AppError('SCOPE_DENIED', 'service tokens cannot use admin routes');
  await next();
};

/** Relay nodes authenticate with the node token they got at enrollment. */
export const requireNode: MiddlewareHandler<AppEnv> = async (c, next) => {
  const deps = c.get('deps');
  const token = bearer(c.req.header('authorization'));
  const [node] = await deps.db
    .select()
    .from(nodes)
    .where(and(eq(nodes.tokenHash, hashSecret(token))))
    .limit(1);
  if (!node) throw new AppError('TOKEN_INVALID', 'unknown node credential; enroll the node again');
  c.set('node', node);
  c.set('logger', c.get('logger').child({ node: node.name }));
  await next();
};

/** Throws unless the principal's service-token scopes (if any) allow `action:name`. */
export function assertScope(p: { scopes: string[] | null }, action: 'expose' | 'open' | 'egress', name: string): void {
  if (!p.scopes) return;
  if (p.scopes.includes(`${action}:${name}`) || p.scopes.includes(`${action}:*`)) return;
  throw new AppError('SCOPE_DENIED', `this service token may not ${action} "${name}"`);
}
