import { sql } from 'drizzle-orm';
import type { LeaseCreate, LeaseIssued } from '../../protocol/api-types.js';
import { parsePublicKeyLine } from '../../protocol/ssh-key.js';
import type { Deps } from '../deps.js';
import type { Db } from '../db/client.js';
import { exposures, nodes, rateLimits } from '../db/schema/index.js';
import { preparedPerDb } from '../db/prepared.js';
import type { CallerExposure, CallerRateLimit, LeaseExposure, LeaseNode } from '../http/authenticate.js';
import { sessionEnd, type AccessClaims } from '../auth/access-tokens.js';
import { assertUnderLimit, COUNT_ON_CONFLICT, rateWindow } from './rate-limit.js';
import { can, parseScopes, type Role, type UserPrincipal } from './authz.js';
import { exposureResource } from './exposures.js';
import { leaseIssued, signLease } from './leases.js';
import { onlineSince } from './node-selection.js';
import { callerAsRead, heldCaller, heldExposure, insertedLease, leaseStatementParams } from './lease-insert.js';

/**
 * Open leases in one round trip (issue 11, CPU per lease): the lease is signed on the caller and
 * the exposure as this replica saw them at its last lease for them, then one statement checks that
 * everything the decision rested on still holds in the database, counts the attempt against the
 * rate limit and inserts the lease and its audit row. When anything differs it writes nothing and
 * the request takes the usual path (caller lookup, decision, insert), with the same answers and
 * the same errors in the same order. What is remembered only says what to check: nothing is
 * granted from it, so a replica never lets a revoked grant through (the control plane runs as
 * stateless replicas; each one's memory of the last state is a guess the database confirms).
 */

/** What the caller of an access token was at its last lease here: the user and its service token's scopes and expiry. */
interface SeenCaller {
  user: { id: string; name: string; role: Role };
  /** The service token's scopes as stored (null: not a service token's access token). */
  scopes: string[] | null;
  /**
   * The service token's expiry as stored (null: none, or not a service token's access token).
   * The lease is capped at it, and the statement checks the row still has it (lease-insert.ts).
   */
  tokenExpiresAt: Date | null;
}

/** An exposure held online at the last lease for it here, and the node holding it. */
interface SeenExposure {
  exp: LeaseExposure & { onlinePort: number };
  current: LeaseNode;
}

/** Entries kept per kind; past it, the oldest goes (a miss only costs the usual path). */
const MAX_SEEN = 10_000;

class LastSeen {
  readonly callers = new Map<string, SeenCaller>();
  readonly exposures = new Map<string, SeenExposure>();
}

const seenPerDb = new WeakMap<Db, LastSeen>();

function lastSeen(db: Db): LastSeen {
  let seen = seenPerDb.get(db);
  if (!seen) {
    seen = new LastSeen();
    seenPerDb.set(db, seen);
  }
  return seen;
}

function remember<V>(map: Map<string, V>, key: string, value: V): void {
  map.delete(key);
  map.set(key, value);
  if (map.size > MAX_SEEN) map.delete(map.keys().next().value!);
}

const callerKey = (claims: Pick<AccessClaims, 'sub' | 'sid' | 'sti'>): string => `${claims.sub}\n${claims.sid ?? ''}\n${claims.sti ?? ''}`;

/**
 * Remembers what the usual path read for a live caller (http/authenticate.ts, lease issuance),
 * for the next lease of the same access token's caller and exposure.
 */
export function rememberLeaseCaller(
  db: Db,
  claims: Pick<AccessClaims, 'sub' | 'sid' | 'sti'>,
  caller: SeenCaller,
  exposure: CallerExposure | undefined,
): void {
  const seen = lastSeen(db);
  remember(seen.callers, callerKey(claims), caller);
  if (!exposure) return;
  const { exp, current } = exposure;
  if (exp && current && exp.onlinePort !== null) {
    // Named fields, not a spread: a spread-built object gets a hidden class of its own, kept
    // here for as long as the entry (leaseStatementParams in lease-insert.ts).
    const held = {
      name: exp.name,
      ownerId: exp.ownerId,
      allow: exp.allow,
      pinnedNodeId: exp.pinnedNodeId,
      currentNodeId: exp.currentNodeId,
      online: exp.online,
      onlinePort: exp.onlinePort,
      statusAt: exp.statusAt,
    } satisfies SeenExposure['exp'];
    remember(seen.exposures, exposure.name, { exp: held, current });
  }
  else seen.exposures.delete(exposure.name);
}

/** A lease request's caller and exposure as last seen here (the guard's part, before the body is validated). */
export interface LastSeenCaller {
  claims: AccessClaims;
  principal: UserPrincipal;
  /** The service token's scopes as last seen (null: not a service token's access token). */
  scopes: string[] | null;
  exposure: SeenExposure;
}

/** A lease request that may take the one-statement path: its caller and exposure as last seen here, and the request as validated. */
export interface LastSeenLease extends LastSeenCaller {
  req: LeaseCreate & { kind: 'open'; exposure: string };
}

/**
 * Whether a request body, not validated yet, asks for an open lease on an exposure and nothing
 * else that the one statement does not do (a port, targets, relays to avoid): only such a request
 * is worth deferring the caller lookup for. The route validates the body after the guard, and
 * `lastSeenRequest` checks the validated request again; this only saves a second validation.
 */
export function mayBeOpenOnExposure(body: unknown): body is { exposure: string } {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return false;
  const b = body as Record<string, unknown>;
  return b.kind === 'open' && typeof b.exposure === 'string' && b.port === undefined && b.targets === undefined && b.avoid_nodes === undefined;
}

/**
 * The caller of `claims` and the exposure named `exposure` as this replica last saw them, when
 * both are known; else undefined (the usual path).
 */
export function lastSeenCaller(db: Db, claims: AccessClaims, exposure: string): LastSeenCaller | undefined {
  const seen = lastSeen(db);
  const caller = seen.callers.get(callerKey(claims));
  const exp = seen.exposures.get(exposure);
  if (!caller || !exp) return undefined;
  const principal: UserPrincipal = {
    kind: 'user',
    userId: caller.user.id,
    name: caller.user.name,
    role: caller.user.role,
    scopes: claims.sti ? parseScopes(caller.scopes ?? []) : null,
    serviceTokenId: claims.sti ?? null,
    serviceTokenExpiresAt: claims.sti ? caller.tokenExpiresAt : null,
    sessionId: claims.sid ?? null,
    sessionEndsAt: sessionEnd(claims),
  };
  return { claims, principal, scopes: claims.sti ? (caller.scopes ?? []) : null, exposure: exp };
}

/**
 * `seen` with the validated request, when that is a valid open lease request on the exposure
 * `seen` was looked up for; else undefined (the usual path).
 */
export function lastSeenRequest(seen: LastSeenCaller, req: LeaseCreate): LastSeenLease | undefined {
  if (req.kind !== 'open' || req.exposure !== seen.exposure.exp.name || req.port !== undefined || req.targets || req.avoid_nodes) return undefined;
  // Named fields, not spreads of `seen` and `req`: an object built by a hot spread gets a hidden
  // class of its own, and so do the objects after it (see leaseStatementParams).
  const open = { kind: 'open', exposure: req.exposure, public_key: req.public_key, ttl_seconds: req.ttl_seconds } satisfies LeaseCreate;
  return { claims: seen.claims, principal: seen.principal, scopes: seen.scopes, exposure: seen.exposure, req: open };
}

const p = sql.placeholder;

/**
 * The one statement: counts the attempt when, and only when, the caller is live and is the user
 * (name, role, service token scopes) this replica saw, and the exposure is as it saw it (owner,
 * allow list, online on the same port through the same node, which is still online); then, under
 * the limit, inserts the lease and its `lease.issued` audit row. Answers the count after this
 * attempt, or null when something differed (nothing was written). Postgres runs a
 * data-modifying WITH to completion with its statement: all of it or nothing commits.
 * The caller's and the exposure's rows are share-locked, as for every lease written
 * (services/lease-insert.ts: a revocation racing it either waits for it and then revokes it, or
 * makes it write nothing), before the count waits for the caller's counter row. The relay's row
 * is read, not locked.
 */
function fastStatement(db: Db) {
  const caller = heldCaller(db);
  const exposure = heldExposure(db, sql`and ${exposures.online} and ${exposures.onlinePort} = ${p('port')}::int and ${exposures.currentNodeId} = ${p('nodeId')}`);
  const nodeOnline = sql`exists (select 1 from ${nodes} where ${nodes.id} = ${p('nodeId')} and ${nodes.name} = ${p('nodeName')} and ${nodes.address} = ${p('nodeAddress')}
    and ${nodes.hostKey} = ${p('hostKey')} and ${nodes.lastSeenAt} >= ${p('onlineSince')}::timestamptz)`;
  const counted = db.$with('fast_counted', { count: rateLimits.count }).as(
    db
      .insert(rateLimits)
      .select(sql`select ${p('key')}::text, ${p('windowStart')}::timestamptz, 1 where ${caller.holds} and ${exposure.holds} and ${nodeOnline}`)
      .onConflictDoUpdate(COUNT_ON_CONFLICT)
      .returning({ count: rateLimits.count })
      .getSQL(),
  );
  return db
    .with(...caller.ctes, exposure.cte, counted, ...insertedLease(db, sql`from "fast_counted" where "fast_counted"."count" <= ${p('limit')}::int`))
    .select({ count: sql<number | null>`(select "count" from "fast_counted")` })
    .from(sql`(select 1) as "one"`)
    .prepare('lease_last_seen');
}
const fastQuery = preparedPerDb(fastStatement);

/**
 * Issues an open lease on the state last seen here (see the top of this file), in one round
 * trip; RATE_LIMITED over the limit, as the usual path. Undefined when the request cannot take
 * this path or the database no longer agrees (nothing written, not counted): the caller then
 * takes the usual path.
 */
export async function issueOnLastSeen(deps: Deps, seen: LastSeenLease, rateLimit: CallerRateLimit): Promise<LeaseIssued | undefined> {
  const { principal: p, req, exposure, claims } = seen;
  const { exp, current: node } = exposure;
  const now = deps.clock.now();
  // What the usual path would decide on this state: allowed, and a valid key. Anything else is
  // its to answer (after counting, in its order). Whether the node is online is the statement's
  // to check, on the database's last heartbeat, not on the one seen here.
  if (!can(p, 'lease.issue.open', exposureResource(req.exposure, exp))) return undefined;
  let clientKey: Buffer;
  try {
    clientKey = parsePublicKeyLine(req.public_key).publicKey;
  } catch {
    return undefined;
  }
  const signed = await signLease(deps, p, req, { grant: { kind: 'open', exposure: exp.name }, node, openPort: exp.onlinePort, clientKey, now });
  const windowStart = rateWindow(now);
  // The lease's placeholders, then the statement's own (over them: the same port and node).
  const values = Object.assign(leaseStatementParams(callerAsRead(p, seen.scopes), signed), {
    key: rateLimit.key(claims.sub),
    windowStart: windowStart.toISOString(),
    exposure: exp.name,
    ownerId: exp.ownerId,
    allow: JSON.stringify(exp.allow),
    port: exp.onlinePort,
    nodeId: node.id,
    nodeName: node.name,
    nodeAddress: node.address,
    hostKey: node.hostKey,
    onlineSince: onlineSince(deps, now).toISOString(),
    limit: rateLimit.limit(deps.settings),
  });
  const [answer] = await fastQuery(deps.db).execute(values);
  const count = answer?.count ?? null;
  const outcome = (o: 'changed' | 'issued') =>
    deps.metrics.inc('tunnel_control_lease_last_seen_total', 'Open leases tried in one statement on the state last seen, by outcome', { outcome: o });
  if (count === null) {
    outcome('changed');
    return undefined;
  }
  assertUnderLimit(count, rateLimit.limit(deps.settings), windowStart, now);
  outcome('issued');
  return leaseIssued(deps, p, node, signed);
}
