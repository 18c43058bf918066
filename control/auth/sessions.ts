import { and, eq, isNull } from 'drizzle-orm';
import type { Deps } from '../deps.js';
import { refreshTokens, users } from '../db/schema/index.js';
import { AppError } from '../lib/errors.js';
import { hashSecret } from '../lib/ids.js';
import { audit } from '../services/audit.js';
import { mintAccessToken } from './access-tokens.js';

type User = typeof users.$inferSelect;

export interface SessionTokens {
  access_token: string;
  token_type: 'Bearer';
  expires_in: number;
  refresh_token: string;
}

/** Starts a login session: an access token and the first refresh token of a new family. */
export async function startSession(deps: Deps, user: User, familyId = deps.ids.id('fam')): Promise<SessionTokens> {
  const now = deps.clock.now();
  const refresh = deps.ids.secret('tnl_rt');
  await deps.db.insert(refreshTokens).values({
    id: deps.ids.id('rt'),
    familyId,
    userId: user.id,
    tokenHash: hashSecret(refresh),
    createdAt: now,
    expiresAt: new Date(now.getTime() + deps.settings.refreshTokenTtl * 1000),
  });
  const at = await mintAccessToken(deps, user);
  return { access_token: at.token, token_type: 'Bearer', expires_in: at.expiresIn, refresh_token: refresh };
}

/**
 * Rotates a refresh token. A token that was already rotated (or revoked) is a sign of theft:
 * its whole family is revoked, so both the thief and the victim must log in again.
 */
export async function rotateRefreshToken(deps: Deps, presented: string): Promise<SessionTokens> {
  const now = deps.clock.now();
  const hash = hashSecret(presented);
  const [row] = await deps.db.select().from(refreshTokens).where(eq(refreshTokens.tokenHash, hash)).limit(1);
  const invalid = () => new AppError('INVALID_GRANT', 'refresh token is not valid; log in again', { oauthError: 'invalid_grant' });
  if (!row) throw invalid();
  if (row.rotatedAt || row.revokedAt) {
    await revokeFamily(deps, row.familyId, now);
    await audit(deps.db, now, { type: 'auth.refresh_reuse', actor: row.userId, subject: row.familyId });
    deps.logger.warn('refresh token reuse; family revoked', { family: row.familyId, user: row.userId });
    throw invalid();
  }
  if (row.expiresAt <= now) throw invalid();
  // Conditional update: of two concurrent rotations only one wins; the other counts as reuse.
  const claimed = await deps.db
    .update(refreshTokens)
    .set({ rotatedAt: now })
    .where(and(eq(refreshTokens.id, row.id), isNull(refreshTokens.rotatedAt), isNull(refreshTokens.revokedAt)))
    .returning({ id: refreshTokens.id });
  if (claimed.length === 0) {
    await revokeFamily(deps, row.familyId, now);
    throw invalid();
  }
  const [user] = await deps.db.select().from(users).where(eq(users.id, row.userId)).limit(1);
  if (!user || user.disabled) throw invalid();
  return startSession(deps, user, row.familyId);
}

export async function revokeFamily(deps: Pick<Deps, 'db'>, familyId: string, now: Date): Promise<void> {
  await deps.db
    .update(refreshTokens)
    .set({ revokedAt: now })
    .where(and(eq(refreshTokens.familyId, familyId), isNull(refreshTokens.revokedAt)));
}

export async function revokeAllSessions(deps: Pick<Deps, 'db'>, userId: string, now: Date): Promise<void> {
  await deps.db
    .update(refreshTokens)
    .set({ revokedAt: now })
    .where(and(eq(refreshTokens.userId, userId), isNull(refreshTokens.revokedAt)));
}
