import { and, eq, gt, inArray, isNull, sql, type SQL } from 'drizzle-orm';
import type { Deps } from '../deps.js';
import type { Db } from '../db/client.js';
import { leases, revocations, serviceTokens, users } from '../db/schema/index.js';
import { auditAll } from './audit.js';
import { parseScopes, type UserPrincipal } from './authz.js';
import { CERT_BACKDATE_SECONDS } from '../../protocol/lease-claims-check.js';
import { databaseAgo } from '../db/database-clock.js';

/**
 * Revoking leases: marking them and appending them to their relays' revocation feeds, and, after
 * a grant shrank, finding the active leases it no longer allows.
 */

type LeaseRow = typeof leases.$inferSelect;

/** The NOTIFY channel of revocations; the payload is the comma-separated ids of the nodes concerned. */
export const REVOCATIONS_CHANNEL = 'tunnel_revocations';
/** pg_advisory_xact_lock key that orders revocation feed inserts (arbitrary constant, 'trev'). */
const REVOCATION_FEED_LOCK = 0x74726576;
/** NOTIFY payloads must stay under 8000 bytes; beyond this, '*' (every node's polls read again). */
const MAX_NOTIFY_PAYLOAD = 4000;

/** Which active leases, for `revokeLeases`. Every condition given must hold. */
export interface LeaseSelector {
  ids?: string[];
  userId?: string;
  exposure?: string;
  kind?: LeaseRow['kind'];
  nodeId?: string;
  serviceTokenId?: string;
  /** The login session (refresh-token family) the leases were issued through. */
  sessionId?: string;
  /** Further SQL on `leases` (for grants that need a subquery). */
  where?: SQL;
}

/** A revoked lease, as its relay's revocation feed needs it. */
interface RevokedLease {
  id: string;
  nodeId: string;
  expiresAt: Date;
}

/**
 * The lease revocations of one transaction (`revoking`): every lease `leases` or `noLongerAllowed`
 * revokes is marked and audited there, and appended to its relay's revocation feed at the end, in
 * the same transaction as the state change that ended it. So a change and the revocation of the
 * leases it no longer allows commit together or not at all: a crash or an error between the two
 * cannot leave the change committed and its leases valid.
 */
export class Revocations {
  readonly #tx: Db;
  readonly #now: Date;
  readonly #revoked: RevokedLease[] = [];

  constructor(tx: Db, now: Date) {
    this.#tx = tx;
    this.#now = now;
  }

  /**
   * Revokes the active leases `where` selects (already revoked ones, and those expired longer than
   * REVOKED_AFTER_EXPIRY_MS ago by the database's clock, are left alone).
   * The rows are locked in id order: two revocations whose leases overlap (a user disabled while
   * an exposure of theirs is deleted) take the rows they share in the same order, so neither
   * can hold one the other waits for while it waits for one the other holds (a deadlock, which
   * Postgres would end by failing one of them). Returns the revoked ids.
   */
  async leases(where: LeaseSelector, actor: string | null, reason?: string): Promise<string[]> {
    const tx = this.#tx;
    const locked = tx
      .select({ id: leases.id })
      .from(leases)
      .where(and(...selectorConditions(where)))
      .orderBy(leases.id)
      .for('update');
    const revoked = await tx
      .update(leases)
      .set({ revokedAt: this.#now })
      .where(inArray(leases.id, locked))
      .returning({ id: leases.id, nodeId: leases.nodeId, expiresAt: leases.expiresAt });
    if (!revoked.length) return [];
    await auditAll(
      tx,
      revoked.map((r) => ({ at: this.#now, e: { type: 'lease.revoked' as const, actor, subject: r.id, ...(reason ? { data: { reason } } : {}) } })),
    );
    this.#revoked.push(...revoked);
    return revoked.map((r) => r.id);
  }

  /**
   * After a grant shrank (in this transaction): asks `stillAllowed` again, for every active lease
   * `where` selects, with the principal it was issued to as that principal is now (the user's
   * role, the service token's current scopes), and revokes the leases it no longer allows.
   */
  async noLongerAllowed(
    where: LeaseSelector,
    stillAllowed: (p: UserPrincipal, lease: LeaseRow) => boolean,
    actor: string | null,
    reason: string,
  ): Promise<string[]> {
    const rows = await this.#tx
      .select({ lease: leases, user: users, scopes: serviceTokens.scopes })
      .from(leases)
      .innerJoin(users, eq(users.id, leases.userId))
      .leftJoin(serviceTokens, eq(serviceTokens.id, leases.serviceTokenId))
      .where(and(...selectorConditions(where)));
    const gone = rows
      .filter((r) => {
        const p: UserPrincipal = {
          kind: 'user',
          userId: r.user.id,
          name: r.user.name,
          role: r.user.role,
          scopes: r.lease.serviceTokenId ? parseScopes(r.scopes ?? []) : null,
          serviceTokenId: r.lease.serviceTokenId,
        };
        return !stillAllowed(p, r.lease);
      })
      .map((r) => r.lease.id);
    return gone.length ? this.leases({ ids: gone }, actor, reason) : [];
  }

  /** The leases revoked so far. */
  get revoked(): readonly RevokedLease[] {
    return this.#revoked;
  }

  /**
   * Appends the revoked leases to their relays' feeds: the transaction's last writes. Feed
   * entries are numbered in commit order (a relay that read up to seq N must never see a smaller
   * seq commit later: it would skip it), so revokers take turns from here to commit, and take no
   * lease row lock after this (one revoker waiting for another's turn holds no row the other wants).
   */
  async writeFeed(): Promise<void> {
    if (!this.#revoked.length) return;
    const tx = this.#tx;
    await tx.execute(sql`select pg_advisory_xact_lock(${REVOCATION_FEED_LOCK})`);
    await tx
      .insert(revocations)
      .values(this.#revoked.map((r) => ({ leaseId: r.id, nodeId: r.nodeId, expiresAt: r.expiresAt, createdAt: this.#now })));
    // Other replicas hear it at commit and wake their relays' long polls (services/revocation-hub.ts).
    const nodeIds = [...new Set(this.#revoked.map((r) => r.nodeId))].join(',');
    await tx.execute(sql`select pg_notify(${REVOCATIONS_CHANNEL}, ${nodeIds.length <= MAX_NOTIFY_PAYLOAD ? nodeIds : '*'})`);
  }
}

/**
 * Runs `change` (a state change that ends grants, and the revocation of the leases it ends,
 * through `revoke`) in one transaction, then tells this replica's waiting relay polls about the
 * revoked leases once it committed. A change writes the rows a lease statement share-locks (the
 * user, the session's refresh tokens, the service token, the exposure or egress target) before
 * it revokes: see services/lease-insert.ts for why that order leaves no lease behind.
 */
export async function revoking<T>(
  deps: Pick<Deps, 'db' | 'clock'> & Partial<Pick<Deps, 'revocationHub'>>,
  change: (tx: Db, revoke: Revocations) => Promise<T>,
): Promise<T> {
  const now = deps.clock.now();
  const { result, revoked } = await deps.db.transaction(async (tx) => {
    const revoke = new Revocations(tx, now);
    const result = await change(tx, revoke);
    await revoke.writeFeed();
    return { result, revoked: revoke.revoked };
  });
  // Committed: this replica's waiting polls get the entries at once.
  const byNode = new Map<string, { lease_id: string; exp: number }[]>();
  for (const r of revoked) {
    const list = byNode.get(r.nodeId) ?? [];
    list.push({ lease_id: r.id, exp: Math.floor(r.expiresAt.getTime() / 1000) });
    byNode.set(r.nodeId, list);
  }
  for (const [nodeId, list] of byNode) deps.revocationHub?.publish(nodeId, list);
  return result;
}

/**
 * Revokes the active leases `where` selects, on its own (no state change with it): marks them
 * and appends them to their nodes' revocation feeds, in one transaction, so every relay closes
 * their connections within the feed's bound. Returns the revoked ids.
 */
export function revokeLeases(
  deps: Pick<Deps, 'db' | 'clock'> & Partial<Pick<Deps, 'revocationHub'>>,
  where: LeaseSelector,
  actor: string | null,
  reason?: string,
): Promise<string[]> {
  return revoking(deps, (_tx, revoke) => revoke.leases(where, actor, reason));
}

/**
 * How long after its expiry, by the database's clock, a lease is still revoked: a relay decides
 * expiry by its own clock, which may lag by as much as the skew a certificate's start is allowed
 * (the mirror of the relay's REVOCABLE_AFTER_EXPIRY_MS, node/leases/lease-registry.ts). Revoking
 * only leases unexpired by the control plane's clock, a change made 30 s ahead of a relay left the
 * leases in their last 30 s (by the relay's clock) out of the feed, and the relay accepted them
 * to the end. An expired lease revoked costs an audit row and a feed entry the relay prunes.
 * The database's clock, not this replica's: a replica whose clock ran over this far ahead read
 * leases live by real time (and the relay's) as expired, and a removal made there left them out.
 */
export const REVOKED_AFTER_EXPIRY_MS = CERT_BACKDATE_SECONDS * 1000;

function selectorConditions(where: LeaseSelector): SQL[] {
  const conds = [isNull(leases.revokedAt), gt(leases.expiresAt, databaseAgo(REVOKED_AFTER_EXPIRY_MS))];
  if (where.ids) conds.push(inArray(leases.id, where.ids));
  if (where.userId) conds.push(eq(leases.userId, where.userId));
  if (where.exposure) conds.push(eq(leases.exposure, where.exposure));
  if (where.kind) conds.push(eq(leases.kind, where.kind));
  if (where.nodeId) conds.push(eq(leases.nodeId, where.nodeId));
  if (where.serviceTokenId) conds.push(eq(leases.serviceTokenId, where.serviceTokenId));
  if (where.sessionId) conds.push(eq(leases.sessionId, where.sessionId));
  if (where.where) conds.push(where.where);
  return conds;
}
