import { and, eq, gt, isNull } from 'drizzle-orm';
import type { Deps } from '../deps.js';
import type { Db } from '../db/client.js';
import { enrollmentTokens } from '../db/schema/index.js';
import { hashSecret } from '../lib/ids.js';
import { audit } from './audit.js';
import { assertAllowed, type UserPrincipal } from './authz.js';
import { lockActorAndTarget } from './owner-lock.js';

/**
 * Makes a one-time node enrollment token (only its hash is stored), as `p` (null: the operator,
 * at start): in one transaction with the acting admin's row locked and the policy asked again
 * with its role now (owner-lock.ts `lockActorAndTarget`), so an admin demoted or disabled
 * meanwhile cannot leave a token that enrolls a relay.
 */
export async function createEnrollmentToken(
  deps: Pick<Deps, 'db' | 'clock' | 'ids'>,
  p: UserPrincipal | null,
  name: string,
  ttlSeconds: number,
): Promise<{ token: string; expiresAt: Date }> {
  if (p) assertAllowed(p, 'node.enrollment_token.create');
  const now = deps.clock.now();
  const token = deps.ids.secret('tnl_enr');
  const expiresAt = new Date(now.getTime() + ttlSeconds * 1000);
  await deps.db.transaction(async (tx) => {
    if (p) assertAllowed((await lockActorAndTarget(tx, p, null)).actor, 'node.enrollment_token.create');
    await tx.insert(enrollmentTokens).values({
      id: deps.ids.id('enr'),
      name,
      tokenHash: hashSecret(token),
      createdBy: p?.userId ?? null,
      createdAt: now,
      expiresAt,
    });
    await audit(tx, now, { type: 'node.enrollment_token_created', actor: p?.userId ?? null, subject: name });
  });
  return { token, expiresAt };
}

/** How many token names a withdrawal's audit row lists (sorted; its count is of them all). */
export const WITHDRAWN_NAMES_AUDITED = 20;

/**
 * Withdraws the unused enrollment tokens `userId` made, in the transaction that demotes or
 * disables them (services/users.ts): an enrollment token's power (enroll a relay, or replace the
 * key, address and credential of the enrolled relay of its name) was the admin role's, and an
 * admin removed must not keep it for the token's life (up to 7 days), nor get it back when made an
 * admin again. Marked used, as a claim marks it: enrollNode claims only unused tokens, so one
 * racing the demotion either claimed its token first (the relay enrolled before the demotion
 * committed) or waits for it on the row and then finds it used. Audited with how many and the
 * first WITHDRAWN_NAMES_AUDITED names they were for: nothing bounds how many tokens an admin
 * makes, and the audit row listed every name. Expired ones are left as they are: they enroll
 * nothing already, and nothing deletes them, so years of them went into each withdrawal's row.
 */
export async function withdrawEnrollmentTokens(tx: Pick<Db, 'update' | 'insert'>, user: { id: string; name: string }, actor: string, now: Date): Promise<void> {
  const gone = await tx
    .update(enrollmentTokens)
    .set({ usedAt: now })
    .where(and(eq(enrollmentTokens.createdBy, user.id), isNull(enrollmentTokens.usedAt), gt(enrollmentTokens.expiresAt, now)))
    .returning({ id: enrollmentTokens.id, name: enrollmentTokens.name });
  if (!gone.length) return;
  const names = [...new Set(gone.map((g) => g.name))].sort().slice(0, WITHDRAWN_NAMES_AUDITED);
  await audit(tx, now, { type: 'node.enrollment_tokens_withdrawn', actor, subject: user.name, data: { names, count: gone.length } });
}
