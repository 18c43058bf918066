import { sql, type SQL } from 'drizzle-orm';
import type { Deps } from '../deps.js';
import type { Db } from '../db/client.js';
import { egressTargets, exposures, refreshTokens, serviceTokens, users } from '../db/schema/index.js';
import { preparedPerDb } from '../db/prepared.js';
import { auditDate } from './audit.js';
import { serviceRowLive, sessionRowLive } from '../http/authenticate.js';
import type { Role, UserPrincipal } from './authz.js';
import type { SignedLease } from './leases.js';

/**
 * Where a lease row is written, and why a revocation never misses one (the race of the stop-19
 * note). A revocation writes its change (an allow list, a disabled user, a revoked service
 * token, a logout ...) and, in the same transaction, revokes the active leases the change no
 * longer allows (services/lease-revocation.ts). A lease decided on what was read before that
 * change, but written after the revocation's scan of the leases, would be missed, and its
 * certificate would hold at the relay until it expires.
 *
 * So a lease is written only by a statement that first takes a share lock (`FOR SHARE`) on every
 * row its decision rested on, keeps only the rows that still say what the decision read, and
 * writes the lease and its audit row only if all of them are there: the caller's user row (name,
 * role, not disabled), its login session's refresh token (live, expiring no earlier than the
 * lease) or its service token (live, same scopes and expiry), and the exposure (owner, allow list) or the egress targets (node, host, port, allow
 * list) of the lease. Every revocation writes one of these rows before it scans the leases, so:
 * - a lease statement that locked the row first holds the revocation's write back until it
 *   committed, and the revocation's scan then sees the lease (and revokes it);
 * - one that reaches the row after the revocation wrote it waits for the revocation to commit,
 *   and then reads the row as the revocation left it (READ COMMITTED re-checks a locked row's
 *   newest version, whatever the statement's snapshot): it no longer says what was read, and
 *   nothing is written; the request is decided again on the new state, and refused.
 * Locks are only taken on rows the decision read, never on the relay's row (its heartbeats would
 * queue behind leases). Lease statements take only share locks, which never wait for each other.
 */

const p = sql.placeholder;

/** The caller as the decision to issue read it: the principal, and its service token's scopes as stored. */
export interface CallerAsRead {
  userId: string;
  name: string;
  role: Role;
  sessionId: string | null;
  serviceTokenId: string | null;
  /** The service token's scopes as stored (null: not a service token's access token). */
  scopes: readonly string[] | null;
  /** The service token's expiry as stored (null: none, or not a service token's access token); the lease was capped at it. */
  tokenExpiresAt: Date | null;
}

/** `p` as the decision read it, with its service token's scopes as stored (`scopes`). */
export function callerAsRead(p: UserPrincipal, scopes: readonly string[] | null): CallerAsRead {
  return {
    userId: p.userId,
    name: p.name,
    role: p.role,
    sessionId: p.sessionId ?? null,
    serviceTokenId: p.serviceTokenId,
    scopes: p.serviceTokenId ? (scopes ?? []) : null,
    tokenExpiresAt: p.serviceTokenId ? (p.serviceTokenExpiresAt ?? null) : null,
  };
}

/**
 * The caller's rows, share-locked when they still say what was read (`leaseStatementParams`): the user
 * (same name and role, not disabled), one live refresh token of its login session that expires no
 * earlier than the lease (`expiresAt`), its live
 * service token with the same scopes and the same expiry (the lease's expiry was capped at the
 * one read). The expiry is compared in milliseconds, as it was read (a JS date): one stored with
 * microseconds (written by SQL, not by this control plane) would otherwise never match, and
 * every lease through that token would fail. `holds`: all of them are there.
 */
export function heldCaller(db: Db) {
  const user = db
    .$with('held_user', { one: sql<number>`one` })
    .as(
      sql`select 1 as one from ${users} where ${users.id} = ${p('sub')} and not ${users.disabled} and ${users.name} = ${p('name')} and ${users.role} = ${p('role')} for share`,
    );
  // One refresh token of the session is enough: a logout revokes all of them, this one too. It
  // expires no earlier than the lease (which signLease capped at the session's end): a session
  // ends on its own when its refresh token expires, with no revocation of its leases.
  const session = db
    .$with('held_session', { one: sql<number>`one` })
    .as(sql`select 1 as one from ${refreshTokens} where ${sessionRowLive()} and ${refreshTokens.expiresAt} >= ${p('expiresAt')}::timestamptz limit 1 for share`);
  const token = db
    .$with('held_token', { one: sql<number>`one` })
    .as(sql`select 1 as one from ${serviceTokens} where ${serviceRowLive()} and ${serviceTokens.scopes} = ${p('scopes')}::jsonb
      and date_trunc('milliseconds', ${serviceTokens.expiresAt}) is not distinct from ${p('stExpiresAt')}::timestamptz for share`);
  const holds = sql`exists (select 1 from "held_user")
    and (${p('sid')}::text is null or exists (select 1 from "held_session"))
    and (${p('sti')}::text is null or exists (select 1 from "held_token"))`;
  return { ctes: [user, session, token] as const, holds };
}

/**
 * The exposure row, share-locked when it still has the owner and allow list that were read
 * (`ownerId`, `allow` as JSON), and `also` (more conditions on it). `holds`: it is there.
 */
export function heldExposure(db: Db, also: SQL = sql``) {
  const cte = db
    .$with('held_exposure', { one: sql<number>`one` })
    .as(
      sql`select 1 as one from ${exposures} where ${exposures.name} = ${p('exposure')} and ${exposures.ownerId} = ${p('ownerId')} and ${exposures.allow} = ${p('allow')}::jsonb ${also} for share`,
    );
  return { cte, holds: sql`exists (select 1 from "held_exposure")` };
}

/**
 * The lease row and its `lease.issued` audit row, inserted when `source` (what follows `select
 * <values>`: a FROM and WHERE giving one row, or none) gives its row. The audit row is dated as
 * every event is (audit.ts auditDate): no later than the database's clock plus AUDIT_AHEAD_MAX_MS.
 * Postgres runs a data-modifying WITH to completion with its statement: both or neither commit.
 */
export function insertedLease(db: Db, source: SQL) {
  const lease = db.$with('new_lease', { id: sql<string>`id` }).as(
    sql`insert into "leases" ("id", "kind", "user_id", "node_id", "exposure", "port", "targets", "ssh_key", "serial", "service_token_id", "session_id", "not_before", "expires_at", "revoked_at", "created_at")
      select ${p('id')}::text, ${p('kind')}::text, ${p('sub')}::text, ${p('nodeId')}::text, ${p('leaseExposure')}::text, ${p('port')}::int, ${p('targets')}::jsonb,
        ${p('sshKey')}::text, ${p('serial')}::text, ${p('sti')}::text, ${p('sid')}::text, ${p('notBefore')}::timestamptz, ${p('expiresAt')}::timestamptz, null, ${p('createdAt')}::timestamptz
      ${source}
      returning "id"`,
  );
  const audit = db.$with('new_lease_audit', { seq: sql<number>`seq` }).as(
    sql`insert into "audit_events" ("at", "type", "actor", "subject", "data")
      select ${auditDate(p('createdAt'))}, 'lease.issued', ${p('sub')}::text, "new_lease"."id", ${p('auditData')}::jsonb from "new_lease"
      returning "seq"`,
  );
  return [lease, audit] as const;
}

/**
 * The placeholders of `heldCaller` (the caller as the decision read it) and of `insertedLease`
 * (the signed lease), in one object literal; a statement adds its own with Object.assign. Not
 * spreads of two objects: V8 gave every object built by those hot spreads a hidden class of its
 * own (a map and its descriptors, most of the 14 KB the one-statement path allocated per lease),
 * and every placeholder the statement then read from it missed the property caches (issue 11).
 * `now`, when the caller's service token must still be live, is the lease's creation time.
 */
export function leaseStatementParams(c: CallerAsRead, signed: SignedLease): Record<string, unknown> {
  const { row, times } = signed;
  return {
    sub: c.userId,
    sid: c.sessionId,
    sti: c.serviceTokenId,
    now: times.createdAt,
    name: c.name,
    role: c.role,
    scopes: c.scopes === null ? null : JSON.stringify(c.scopes),
    stExpiresAt: c.tokenExpiresAt === null ? null : c.tokenExpiresAt.toISOString(),
    id: row.id,
    kind: row.kind,
    nodeId: row.nodeId,
    leaseExposure: row.exposure,
    port: row.port,
    targets: row.targets === null ? null : JSON.stringify(row.targets),
    sshKey: row.sshKey,
    serial: row.serial,
    notBefore: times.notBefore,
    expiresAt: times.expiresAt,
    createdAt: times.createdAt,
    auditData: JSON.stringify(signed.auditData),
  };
}

/** An expose or open lease's statement: the caller's rows and the exposure's, then the lease. */
const onExposureQuery = preparedPerDb((db) => {
  const caller = heldCaller(db);
  const exposure = heldExposure(db);
  return db
    .with(...caller.ctes, exposure.cte, ...insertedLease(db, sql`where ${caller.holds} and ${exposure.holds}`))
    .select({ inserted: sql<number>`(select count(*) from "new_lease")::int` })
    .from(sql`(select 1) as "one"`)
    .prepare('lease_insert_exposure');
});

/**
 * An egress lease's statement: the caller's rows and every egress target's (`targets`: JSON
 * records of name, node_id, host, port and allow as read), then the lease.
 */
const onTargetsQuery = preparedPerDb((db) => {
  const caller = heldCaller(db);
  const targets = db.$with('held_targets', { name: sql<string>`name` }).as(
    sql`select t."name" as name
      from ${egressTargets} t join jsonb_to_recordset(${p('heldTargets')}::jsonb) as x(name text, node_id text, host text, port int, allow jsonb)
        on t."name" = x.name and t."node_id" = x.node_id and t."host" = x.host and t."port" = x.port and t."allow" = x.allow
      for share of t`,
  );
  const holds = sql`(select count(*) from "held_targets") = jsonb_array_length(${p('heldTargets')}::jsonb)`;
  return db
    .with(...caller.ctes, targets, ...insertedLease(db, sql`where ${caller.holds} and ${holds}`))
    .select({ inserted: sql<number>`(select count(*) from "new_lease")::int` })
    .from(sql`(select 1) as "one"`)
    .prepare('lease_insert_targets');
});

/** What a lease's decision read besides the caller: its exposure, or its egress targets. */
export type DecidedOn =
  | { exposure: { name: string; ownerId: string; allow: readonly string[] } }
  | { targets: { name: string; nodeId: string; host: string; port: number; allow: readonly string[] }[] };

/**
 * Writes a signed lease and its audit row if, under share locks, the caller's rows and `on` still
 * say what the decision read (see the top of this file). False: something changed, nothing was
 * written; decide again on what is there now.
 */
export async function insertLeaseIfUnchanged(deps: Pick<Deps, 'db'>, caller: CallerAsRead, on: DecidedOn, signed: SignedLease): Promise<boolean> {
  const values = leaseStatementParams(caller, signed);
  const [answer] =
    'exposure' in on
      ? await onExposureQuery(deps.db).execute(
          Object.assign(values, { exposure: on.exposure.name, ownerId: on.exposure.ownerId, allow: JSON.stringify(on.exposure.allow) }),
        )
      : await onTargetsQuery(deps.db).execute(
          Object.assign(values, {
            heldTargets: JSON.stringify(on.targets.map((t) => ({ name: t.name, node_id: t.nodeId, host: t.host, port: t.port, allow: t.allow }))),
          }),
        );
  return (answer?.inserted ?? 0) > 0;
}
