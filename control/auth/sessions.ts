import { createHmac } from 'node:crypto';
import { and, eq, getTableColumns, isNull, sql } from 'drizzle-orm';
import type { AppSettings, Deps } from '../deps.js';
import type { Db } from '../db/client.js';
import { refreshTokens, users } from '../db/schema/index.js';
import { databaseAgo } from '../db/database-clock.js';
import { AppError } from '../lib/errors.js';
import { hashSecret } from '../lib/ids.js';
import { audit } from '../services/audit.js';
import { revoking, type Revocations } from '../services/lease-revocation.js';
import { lockLiveOwner } from '../services/owner-lock.js';
import { mintAccessToken } from './access-tokens.js';

type User = typeof users.$inferSelect;
type RefreshRow = typeof refreshTokens.$inferSelect;

export interface SessionTokens {
  access_token: string;
  token_type: 'Bearer';
  expires_in: number;
  refresh_token: string;
}

/**
 * The `client_id` the web console sends with its password grant (RFC 6749 §3.2.1: a public client
 * may name itself). Its sessions end after `consoleIdleTimeout` without a refresh: a console
 * left signed in on a shared machine must not stay usable for the refresh token's 30 days. The
 * name is not secret: any client that sends it only gets the stricter session.
 */
export const CONSOLE_CLIENT_ID = 'tunnel-console';
/** A console session's family id starts with this (other sessions' with `fam_`): fixed at login, kept by every rotation. */
export const CONSOLE_FAMILY = 'cfam';

/**
 * Starts a login session: a new refresh token family, whose id is the session id (`sid`) of
 * every access token minted for it, so ending the family ends those access tokens too. In one
 * transaction with the user's row locked (services/owner-lock.ts): a session started while the
 * user is being disabled waits for the disable and is refused with `refused()` (what the login
 * path answers a disabled user), instead of committing beside it and surviving it. The
 * `auth.login` audit row commits with the session.
 */
export async function startSession(
  deps: Deps,
  user: User,
  method: 'device' | 'password',
  refused: () => AppError,
  clientId?: string,
): Promise<SessionTokens> {
  const familyId = deps.ids.id(clientId === CONSOLE_CLIENT_ID ? CONSOLE_FAMILY : 'fam');
  const refresh = deps.ids.secret('tnl_rt');
  const started = await deps.db.transaction(async (tx) => {
    const live = await lockLiveOwner(tx, { id: user.id });
    if (!live) throw refused();
    const endsAt = await insertRefresh(tx, deps, live.id, familyId, refresh);
    await audit(tx, deps.clock.now(), { type: 'auth.login', actor: live.id, data: { method } });
    return { live, endsAt };
  });
  return tokensFor(deps, started.live, { id: familyId, endsAt: started.endsAt }, refresh);
}

/**
 * The refresh token that rotating `presented` yields. Derived (HMAC with a secret of the server),
 * not random, so that a second request with the same token shortly after (a CLI retrying after a
 * lost answer, or two racing refreshes) gets the same successor instead of looking like theft.
 */
function successorOf(deps: Pick<Deps, 'keys'>, presented: string): string {
  const mac = createHmac('sha256', deps.keys.derivedSecret('refresh-token-successor')).update(presented).digest('base64url');
  return `tnl_rt_${mac}`;
}

/**
 * Rotates a refresh token. A token that was already rotated, in a session still live, is a sign
 * of theft (`auth.refresh_reuse`): its whole family is revoked, so both the thief and the victim
 * must log in again. Except within `refreshReuseGrace` seconds of its rotation while its
 * successor is still unused: then the answer is that same successor (and a fresh access token),
 * since that is a retry, not a replay. A token of a session that was ended (logout, the user
 * disabled, an earlier reuse) gets the same invalid_grant, audited as `auth.refresh_after_end`.
 */
export async function rotateRefreshToken(deps: Deps, presented: string): Promise<SessionTokens> {
  const now = deps.clock.now();
  const idleAfter = idleAfterSeconds(deps.settings);
  const [row] = await deps.db
    .select({ ...getTableColumns(refreshTokens), idle: idleAfter === null ? sql<boolean>`false` : issuedAtLeastAgo(idleAfter) })
    .from(refreshTokens)
    .where(eq(refreshTokens.tokenHash, hashSecret(presented)))
    .limit(1);
  if (!row) throw invalidGrant();
  if (row.revokedAt || row.rotatedAt) return retryOrReuse(deps, row, presented, now);
  if (row.expiresAt <= now) throw invalidGrant();
  if (isConsole(row.familyId) && row.idle) return endIdle(deps, row, now);
  const successor = successorOf(deps, presented);
  // Claim and successor in one transaction: a concurrent rotation of the same token waits for
  // it, then finds the token rotated and its successor there.
  // The user's row locked first, as a disable does (services/owner-lock.ts): a successor written
  // while the user is being disabled would escape the disable's revocation of every session.
  const endsAt = await deps.db.transaction(async (tx) => {
    if (!(await lockLiveOwner(tx, { id: row.userId }))) throw invalidGrant();
    const won = await tx
      .update(refreshTokens)
      .set({ rotatedAt: now })
      .where(and(eq(refreshTokens.id, row.id), isNull(refreshTokens.rotatedAt), isNull(refreshTokens.revokedAt)))
      .returning({ id: refreshTokens.id });
    if (won.length === 0) return undefined;
    // A console session ends its refreshTokenTtl after sign-in however it is used: its successor
    // keeps the expiry (a CLI session's gets a new one, so a long-running client is not cut off).
    return insertRefresh(tx, deps, row.userId, row.familyId, successor, isConsole(row.familyId) ? row.expiresAt : undefined);
  });
  if (!endsAt) {
    const [now2] = await deps.db.select().from(refreshTokens).where(eq(refreshTokens.id, row.id)).limit(1);
    return retryOrReuse(deps, now2 ?? row, presented, now);
  }
  const user = await liveUser(deps, row.userId);
  return tokensFor(deps, user, { id: row.familyId, endsAt }, successor);
}

async function retryOrReuse(deps: Deps, row: RefreshRow, presented: string, now: Date): Promise<SessionTokens> {
  const graceMs = deps.settings.refreshReuseGrace * 1000;
  if (!row.revokedAt && row.rotatedAt && now.getTime() - row.rotatedAt.getTime() <= graceMs) {
    const successor = successorOf(deps, presented);
    const [next] = await deps.db
      .select()
      .from(refreshTokens)
      .where(and(eq(refreshTokens.tokenHash, hashSecret(successor)), eq(refreshTokens.familyId, row.familyId)))
      .limit(1);
    if (next && !next.revokedAt && !next.rotatedAt && next.expiresAt > now) {
      return tokensFor(deps, await liveUser(deps, row.userId), { id: row.familyId, endsAt: next.expiresAt }, successor);
    }
  }
  // A revoked token's session was ended already (logout, the user disabled, a reuse found
  // before): presenting it is a client that was not told, not a sign of theft, and has nothing
  // left to end. A token rotated away in a session still live is the theft sign: the session ends.
  const ended = row.revokedAt !== null;
  await revoking(deps, async (tx, revoke) => {
    // Also for an ended one (a no-op then, unless a successor escaped the end: it goes too).
    await endSession(tx, revoke, row.familyId, now, row.userId, 'session_revoked');
    await audit(tx, now, { type: ended ? 'auth.refresh_after_end' : 'auth.refresh_reuse', actor: row.userId, subject: row.familyId });
  });
  if (ended) deps.logger.info('refresh token of an ended session', { family: row.familyId, user: row.userId });
  else deps.logger.warn('refresh token reuse; family revoked', { family: row.familyId, user: row.userId });
  throw invalidGrant();
}

/**
 * A console session made no request for `consoleIdleTimeout` when its live refresh token was
 * issued at least this many seconds ago; null: no idle timeout. The token was issued (at its
 * login or its last refresh, which a console in use makes whenever its access token has expired)
 * with an access token that served its requests for up to `accessTokenTtl` more, so its last
 * request may be that much later. Counted from the issue alone, a console in use was ended at its
 * first refresh whenever the timeout was no longer than the access token's life (10m, the lowest
 * allowed) and, for any timeout, after as little as the timeout less that life idle.
 */
export function idleAfterSeconds(settings: Pick<AppSettings, 'consoleIdleTimeout' | 'accessTokenTtl'>): number | null {
  const idle = settings.consoleIdleTimeout;
  return idle > 0 ? idle + settings.accessTokenTtl : null;
}

/**
 * Whether a refresh token row was issued at least `seconds` ago by the database's clock: the one
 * clock every replica shares. By the replica's own, one whose clock ran 12 hours ahead found every
 * console session idle, at its refreshes and in its sweeps, and ended them all.
 */
export const issuedAtLeastAgo = (seconds: number) =>
  sql<boolean>`${refreshTokens.createdAt} <= ${databaseAgo(seconds * 1000)}`;

const isConsole = (familyId: string): boolean => familyId.startsWith(`${CONSOLE_FAMILY}_`);

/** Ends an idle console session (endIdleSession) and refuses the token. */
async function endIdle(deps: Deps, row: RefreshRow, now: Date): Promise<never> {
  await endIdleSession(deps, row, now);
  throw invalidGrant();
}

/**
 * Ends the idle console session whose live (unrotated, unrevoked) refresh token is `row`, as
 * its next refresh finds it (endIdle) or the sweep of abandoned ones does (auth/idle-sessions.ts),
 * whichever comes first: its family revoked, its leases with it, and `auth.session_idle` audited
 * once. The user's row is locked first, as every write to a user's sessions takes it (login,
 * rotation, logout, disable); then the token is claimed: revoked only if still unrotated and
 * unrevoked. So of two replicas' sweeps, or a sweep and a refresh, of the same session, the one
 * that waited finds it claimed and neither ends nor audits it again; and a token rotated
 * meanwhile (the session in use) is not ended. Returns whether this call ended it.
 */
export async function endIdleSession(
  deps: Pick<Deps, 'db' | 'clock' | 'logger' | 'settings'> & Partial<Pick<Deps, 'revocationHub'>>,
  row: Pick<RefreshRow, 'id' | 'familyId' | 'userId'>,
  now: Date,
): Promise<boolean> {
  const ended = await revoking(deps, async (tx, revoke) => {
    // A disabled user's sessions were revoked by the disable: the claim below then finds none.
    await lockLiveOwner(tx, { id: row.userId });
    const claimed = await tx
      .update(refreshTokens)
      .set({ revokedAt: now })
      .where(and(eq(refreshTokens.id, row.id), isNull(refreshTokens.rotatedAt), isNull(refreshTokens.revokedAt)))
      .returning({ id: refreshTokens.id });
    if (claimed.length === 0) return false;
    await endSession(tx, revoke, row.familyId, now, row.userId, 'session_revoked');
    await audit(tx, now, { type: 'auth.session_idle', actor: row.userId, subject: row.familyId, data: { idle_timeout: deps.settings.consoleIdleTimeout } });
    return true;
  });
  if (ended) deps.logger.info('idle console session ended', { family: row.familyId, user: row.userId });
  return ended;
}

const invalidGrant = () => new AppError('INVALID_GRANT', 'refresh token is not valid; log in again', { oauthError: 'invalid_grant' });

async function liveUser(deps: Deps, userId: string): Promise<User> {
  const [user] = await deps.db.select().from(users).where(eq(users.id, userId)).limit(1);
  if (!user || user.disabled) throw invalidGrant();
  return user;
}

async function insertRefresh(
  db: Pick<Db, 'insert'>,
  deps: Pick<Deps, 'clock' | 'ids' | 'settings'>,
  userId: string,
  familyId: string,
  token: string,
  expiresAt?: Date,
): Promise<Date> {
  const now = deps.clock.now();
  const ends = expiresAt ?? new Date(now.getTime() + deps.settings.refreshTokenTtl * 1000);
  await db.insert(refreshTokens).values({
    id: deps.ids.id('rt'),
    familyId,
    userId,
    tokenHash: hashSecret(token),
    // The database's time, as idleness is judged by (issuedAtLeastAgo): by the replica's, one
    // running 12 hours behind issued tokens that were idle from the start.
    createdAt: sql`now()`,
    expiresAt: ends,
  });
  return ends;
}

/**
 * The access token for a session and its refresh token `refresh`; `session.endsAt`: that refresh
 * token's expiry, the session's end unless it is refreshed again, which the access token carries
 * (`sxp`): no lease issued through it outlives it (services/leases.ts signLease).
 */
async function tokensFor(deps: Deps, user: User, session: { id: string; endsAt: Date }, refresh: string): Promise<SessionTokens> {
  const at = await mintAccessToken(deps, user, undefined, session);
  return { access_token: at.token, token_type: 'Bearer', expires_in: at.expiresIn, refresh_token: refresh };
}

/**
 * Ends a login session in `revoke`'s transaction: revokes its refresh-token family (so its access
 * tokens stop at once), then the active leases issued through it (`reason`: 'logout',
 * 'session_revoked'); both commit together (services/lease-revocation.ts `revoking`). In this
 * order: a lease being written share-locks a live refresh token of its session
 * (services/lease-insert.ts), so it either committed before the family's write, and the scan
 * after it revokes it, or it finds the family revoked and writes nothing.
 */
export async function endSession(
  tx: Pick<Db, 'update'>,
  revoke: Revocations,
  familyId: string,
  now: Date,
  actor: string,
  reason: 'logout' | 'session_revoked',
): Promise<void> {
  await tx
    .update(refreshTokens)
    .set({ revokedAt: now })
    .where(and(eq(refreshTokens.familyId, familyId), isNull(refreshTokens.revokedAt)));
  await revoke.leases({ sessionId: familyId }, actor, reason);
}

export async function revokeAllSessions(db: Pick<Db, 'update'>, userId: string, now: Date): Promise<void> {
  await db
    .update(refreshTokens)
    .set({ revokedAt: now })
    .where(and(eq(refreshTokens.userId, userId), isNull(refreshTokens.revokedAt)));
}
