import type { Deps } from '../deps.js';
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
