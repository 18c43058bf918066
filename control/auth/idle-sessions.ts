import { and, asc, isNull, sql } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import type { Deps } from '../deps.js';
import { refreshTokens } from '../db/schema/index.js';
import { turnsEvery } from '../services/replica-turns.js';
import { CONSOLE_FAMILY, endIdleSession, idleAfterSeconds, issuedAtLeastAgo } from './sessions.js';

/**
 * Ends abandoned console sessions. A console session idle past `consoleIdleTimeout` was ended
 * only when its refresh token was presented again (auth/sessions.ts idleTooLong), so one nobody
 * came back to, a browser closed on a shared machine, stayed live in the database until its
 * absolute expiry and its end was never audited. Here, beside the history prune and scheduled
 * as it is (services/history-prune.ts: from a relay's heartbeat, at most once per
 * IDLE_SWEEP_EVERY_MS per replica and database, on the caller's clock), console sessions whose
 * live refresh token is past the idle deadline (and not expired: that end is their absolute
 * life, not idleness), both by the database's clock (a replica's own may be hours off), are
 * ended, oldest first, at most IDLE_SWEEP_BATCH per turn; a backlog
 * drains over the next turns. Each is ended in a transaction of its own by endIdleSession, which
 * claims the token under its user's row lock, so several replicas sweeping at once, or a sweep
 * and the session's own refresh, audit `auth.session_idle` once per session, and a session used
 * meanwhile (its token rotated) is not ended. A failure is logged, never passed on: the session
 * then ends at a later turn, or at its next refresh, and must not fail the relay's heartbeat.
 */
export const IDLE_SWEEP_EVERY_MS = 600_000;
export const IDLE_SWEEP_BATCH = 100;

const sweepTurn = turnsEvery(IDLE_SWEEP_EVERY_MS);

type SweepDeps = Pick<Deps, 'db' | 'clock' | 'logger' | 'settings'> & Partial<Pick<Deps, 'revocationHub'>>;

/** Sweeps when it is this replica's turn (and there is an idle timeout); returns the sessions ended (undefined: no sweep). */
export async function sweepIdleConsoleSessions(deps: SweepDeps, now: Date): Promise<number | undefined> {
  if (idleAfterSeconds(deps.settings) === null || !sweepTurn(deps.db, now)) return undefined;
  try {
    return await endIdleConsoleSessions(deps, now);
  } catch (err) {
    deps.logger.error('ending idle console sessions failed', { err });
    return undefined;
  }
}

/** One sweep, whoever's turn it is: ends up to IDLE_SWEEP_BATCH idle console sessions; returns how many this call ended. */
export async function endIdleConsoleSessions(deps: SweepDeps, now: Date): Promise<number> {
  const idleAfter = idleAfterSeconds(deps.settings);
  if (idleAfter === null) return 0;
  const due = await idleConsoleTokens(deps.db, idleAfter);
  let ended = 0;
  for (const row of due) if (await endIdleSession(deps, row, now)) ended++;
  return ended;
}

/**
 * The live (unrotated, unrevoked, unexpired) console refresh tokens issued at least `idleAfter`
 * seconds ago by the database's clock, oldest first, at most IDLE_SWEEP_BATCH: read through
 * refresh_tokens_console_live_idx, where Postgres read the whole table (a database in a non-C
 * collation, as most are, cannot use refresh_tokens_family_idx for a prefix) or every console
 * row, rotated ones kept until they expire among them.
 */
export function idleConsoleTokens(db: Db, idleAfter: number) {
  return db
    .select({ id: refreshTokens.id, familyId: refreshTokens.familyId, userId: refreshTokens.userId })
    .from(refreshTokens)
    .where(
      and(
        // A literal, not a parameter: the partial index refresh_tokens_console_live_idx (migration
        // 0009) has this predicate, and a generic plan can use it only for a constant.
        sql`starts_with(${refreshTokens.familyId}, ${sql.raw(`'${CONSOLE_FAMILY}_'`)})`,
        isNull(refreshTokens.revokedAt),
        isNull(refreshTokens.rotatedAt),
        issuedAtLeastAgo(idleAfter),
        sql`${refreshTokens.expiresAt} > now()`,
      ),
    )
    .orderBy(asc(refreshTokens.createdAt), asc(refreshTokens.id))
    .limit(IDLE_SWEEP_BATCH);
}
