import { and, count, eq, gt, isNull, or, sql } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import type { Deps } from '../deps.js';
import { exposures, serviceTokens } from '../db/schema/index.js';
import { AppError } from '../lib/errors.js';
import { isAdmin, type UserPrincipal } from './authz.js';

/**
 * What one member may hold: at most `maxExposuresPerMember` exposures and
 * `maxServiceTokensPerMember` live service tokens (neither revoked nor expired). Without a cap
 * one member could create exposures or service tokens for as long as they liked (tens per second
 * each), and every exposure or service-token list, everyone's, reads the whole table: 50,000
 * exposures made `GET /v1/exposures` take 3 s and 7.5 MB for every user (more with long allow
 * lists: up to 256 names each, about 17 KB). Admins, who create the
 * members, are not capped. Checked by the service in the transaction that inserts, after it
 * locked the member's row (services/owner-lock.ts `lockLiveOwner`): concurrent creates of one
 * member queue there, so each counts the ones committed before it and the cap holds exactly
 * (checked before the create and outside any lock, concurrent creates passed it together:
 * 105 live tokens at a cap of 100). The service decides first whether the caller may create at all.
 */

/** Refuses (CONFLICT) a member's new exposure past the cap; an existing name (an update, or not theirs) passes here. */
export async function assertMayCreateExposure(deps: Pick<Deps, 'settings'>, tx: Pick<Db, 'select'>, p: UserPrincipal, name: string): Promise<void> {
  if (isAdmin(p)) return;
  const [row] = await tx
    .select({
      owned: sql<number>`count(*) filter (where ${exposures.ownerId} = ${p.userId} and ${exposures.name} <> ${name})`.mapWith(Number),
      exists: sql<boolean>`coalesce(bool_or(${exposures.name} = ${name}), false)`,
    })
    .from(exposures)
    .where(or(eq(exposures.ownerId, p.userId), eq(exposures.name, name)));
  const max = deps.settings.maxExposuresPerMember;
  if (row && !row.exists && row.owned >= max) {
    throw new AppError('CONFLICT', `you own ${row.owned} exposures, the most a member may own (${max}); delete one you no longer use, or ask an admin`);
  }
}

/** Refuses (CONFLICT) a member's new service token past the cap of live ones. */
export async function assertMayCreateServiceToken(deps: Pick<Deps, 'clock' | 'settings'>, tx: Pick<Db, 'select'>, p: UserPrincipal): Promise<void> {
  if (isAdmin(p)) return;
  const now = deps.clock.now();
  const [row] = await tx
    .select({ live: count() })
    .from(serviceTokens)
    .where(
      and(
        eq(serviceTokens.userId, p.userId),
        isNull(serviceTokens.revokedAt),
        or(isNull(serviceTokens.expiresAt), gt(serviceTokens.expiresAt, now)),
      ),
    );
  const max = deps.settings.maxServiceTokensPerMember;
  if ((row?.live ?? 0) >= max) {
    throw new AppError('CONFLICT', `you have ${row!.live} live service tokens, the most a member may have (${max}); revoke one you no longer use, or ask an admin`);
  }
}
