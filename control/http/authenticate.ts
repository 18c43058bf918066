import type { Context, MiddlewareHandler } from 'hono';
import { and, eq, sql } from 'drizzle-orm';
import { exposures, nodes, rateLimits, refreshTokens, serviceTokens, users } from '../db/schema/index.js';
import type { Db } from '../db/client.js';
import type { AppSettings } from '../deps.js';
import { assertUnderLimit, COUNT_ON_CONFLICT, rateWindow } from '../services/rate-limit.js';
import { sessionEnd, verifyAccessToken } from '../auth/access-tokens.js';
import { AppError, callerGone } from '../lib/errors.js';
import { hashSecret } from '../lib/ids.js';
import { preparedPerDb } from '../db/prepared.js';
import { EXPOSURE_NAME_RE } from '../../protocol/lease-claims.js';
import type { Logger } from '../../shared/logger.js';
import { lastSeenCaller, mayBeOpenOnExposure, rememberLeaseCaller, type LastSeenCaller } from '../services/lease-last-seen.js';
import { callerAsRead } from '../services/lease-insert.js';
import {
  ANONYMOUS,
  assertAllowed,
  authnOf,
  needsResource,
  parseScopes,
  type Action,
  type GateAction,
  type NodePrincipal,
  type UserPrincipal,
} from '../services/authz.js';
import type { AppEnv } from './env.js';
import { clientSource } from './client-address.js';
import { throttledLookup } from './miss-throttle.js';

const isTokenInvalid = (code: string): boolean => code === 'TOKEN_INVALID';

/**
 * The token of an `Authorization: Bearer <token>` header. The scheme is matched in any case and
 * may be followed by more than one space or tab (RFC 9110 section 11.1: auth schemes are
 * case-insensitive; RFC 6750 `"Bearer" 1*SP b64token`); anything else is refused.
 */
function bearer(header: string | undefined): string {
  if (!header) throw new AppError('UNAUTHENTICATED', 'send an access token: Authorization: Bearer <token> (see `tunnel login`)');
  const m = /^bearer[ \t]+([A-Za-z0-9._~+/=-]{1,4096})$/i.exec(header);
  if (!m) throw new AppError('UNAUTHENTICATED', 'Authorization header must be "Bearer <token>"');
  return m[1]!;
}

const p = sql.placeholder;

type ExposureRow = typeof exposures.$inferSelect;
type NodeRow = typeof nodes.$inferSelect;

/**
 * The caller's columns a request needs (not the password hash, nor anything else it never
 * reads): the caller lookup runs on every API call, and each column costs the driver and
 * drizzle a decode per row.
 */
const callerUser = () => ({ id: users.id, name: users.name, role: users.role, disabled: users.disabled });

/**
 * A refresh token of the access token's login session (`sid`) that is not revoked: while one is
 * there, the session stands. Its row test, here and in lease issuance's row locks
 * (services/lease-insert.ts `heldCaller`).
 */
export const sessionRowLive = () => sql<boolean>`${refreshTokens.familyId} = ${p('sid')} and ${refreshTokens.revokedAt} is null`;

/** The login session behind a session's access token still stands (true for other tokens). */
export const sessionLive = () => sql<boolean>`(${p('sid')}::text is null or exists (select 1 from ${refreshTokens} where ${sessionRowLive()}))`;

/**
 * The service token row (`sti`) is the caller's (`sub`), not revoked and not expired at `now`. Its
 * row test, here and in lease issuance's row locks (services/lease-insert.ts `heldCaller`).
 */
export const serviceRowLive = () =>
  sql<boolean>`${serviceTokens.id} = ${p('sti')} and ${serviceTokens.userId} = ${p('sub')} and ${serviceTokens.revokedAt} is null and (${serviceTokens.expiresAt} is null or ${serviceTokens.expiresAt} > ${p('now')}::timestamptz)`;

/**
 * The service token behind a service token's access token is live (`serviceRowLive`; true for
 * other tokens), on the service token row left-joined to the caller. Decided here, for the answer
 * and for counting.
 */
export const serviceLive = () => sql<boolean>`(${p('sti')}::text is null or coalesce(${serviceRowLive()}, false))`;

const callerFields = () => ({
  user: callerUser(),
  sessionLive: sessionLive(),
  serviceLive: serviceLive(),
  scopes: serviceTokens.scopes,
  tokenExpiresAt: serviceTokens.expiresAt,
});
const serviceTokenJoin = () => eq(serviceTokens.id, p('sti'));
const callerIs = () => eq(users.id, p('sub'));

/**
 * The caller of an access token in one statement: the user, whether the login session (for a
 * session's token) and the service token (for a service token's) are still live, so that a
 * logout, a refresh-token reuse or a revoked service token ends its access tokens at once, on
 * every replica. Prepared: one runs on every API call.
 */
function callerStatement(db: Db) {
  return db.select(callerFields()).from(users).leftJoin(serviceTokens, serviceTokenJoin()).where(callerIs()).limit(1).prepare('caller');
}

/**
 * The caller lookup of a rate-limited route (lease issuance), in one statement: the caller as
 * `callerStatement` reads it; the attempt counted against the rate limit when, and only when,
 * the caller is live (what the route would have counted after authenticating: one round trip
 * less); and the exposure named by `exposure` (null: none) with the node holding it now, read
 * only when the caller is live too (one more round trip less, issue 11). The exposure's read is
 * gated on the count's row (`exists` over the counting CTE: uncorrelated, so Postgres evaluates
 * it once, as a one-time filter before it scans `exposures`), so a dead caller's statement never
 * looks the exposure up and cannot tell through it whether it exists (caller-exposure.test
 * checks the executed plan).
 */
function countedCallerStatement(db: Db) {
  const fields = callerFields();
  const join = serviceTokenJoin();
  const who = callerIs();
  const count = db.$with('counted', { count: rateLimits.count }).as(
    db
      .insert(rateLimits)
      .select(
        sql`select ${p('key')}::text, ${p('windowStart')}::timestamptz, 1 from ${users} left join ${serviceTokens} on ${join} where ${who} and not ${users.disabled} and ${sessionLive()} and ${serviceLive()}`,
      )
      .onConflictDoUpdate(COUNT_ON_CONFLICT)
      .returning({ count: rateLimits.count })
      .getSQL(),
  );
  // The name is the key, so `limit 1` changes no answer; it keeps Postgres from pulling the
  // subquery up into the join, where the gate became a join filter applied after the scan
  // instead of a one-time filter before it (caller-exposure.test saw the scan run).
  const exposure = db
    .select()
    .from(exposures)
    .where(and(eq(exposures.name, p('exposure')), sql`exists (select 1 from "counted")`))
    .limit(1)
    .as('caller_exposure');
  return db
    .with(count)
    .select({
      ...fields,
      count: sql<number | null>`(select "count" from "counted")`,
      exposure: {
        name: exposure.name,
        ownerId: exposure.ownerId,
        allow: exposure.allow,
        pinnedNodeId: exposure.pinnedNodeId,
        currentNodeId: exposure.currentNodeId,
        online: exposure.online,
        onlinePort: exposure.onlinePort,
        statusAt: exposure.statusAt,
      } satisfies Record<keyof LeaseExposure, unknown>,
      exposureNode: { id: nodes.id, name: nodes.name, address: nodes.address, hostKey: nodes.hostKey, lastSeenAt: nodes.lastSeenAt } satisfies Record<
        keyof LeaseNode,
        unknown
      >,
    })
    .from(users)
    .leftJoin(serviceTokens, join)
    .leftJoin(exposure, sql`true`)
    .leftJoin(nodes, and(eq(exposure.online, true), eq(nodes.id, exposure.currentNodeId)))
    .where(who)
    .limit(1)
    .prepare('caller_counted');
}
const callerQuery = preparedPerDb(callerStatement);
/** Exported for its plan test (caller-exposure.test). */
export const countedCallerQuery = preparedPerDb(countedCallerStatement);

/** A per-user rate limit the guard counts in its caller lookup (lease issuance: http/lease-rate-limit.ts). */
export interface CallerRateLimit {
  key(userId: string): string;
  limit(settings: AppSettings): number;
}

/**
 * An exposure the guard read with the caller (`exposureOf`), for the route's service: its row
 * (undefined: no such exposure) and the node holding it now (null: none online). Read after
 * the caller was found live; authorization is still the service's, on this row.
 */
export interface CallerExposure {
  name: string;
  exp: LeaseExposure | undefined;
  current: LeaseNode | null;
}

/** What lease issuance reads of an exposure (services/leases.ts, node-selection.ts). */
export type LeaseExposure = Omit<ExposureRow, 'createdAt' | 'updatedAt'>;
/** What lease issuance reads of a relay node: where it is, its host key, whether it is online. */
export type LeaseNode = Pick<NodeRow, 'id' | 'name' | 'address' | 'hostKey' | 'lastSeenAt'>;

/**
 * Who sends this access token: an enabled user, and the live service token it came from, if any.
 * The scopes are the service token's as stored now, not as minted, so a change applies at once.
 * With `rateLimit`, a live caller's attempt is counted, and refused (RATE_LIMITED) over the limit;
 * and `exposure` (a valid exposure name, or null) is read in the same statement.
 */
async function authenticateUser(
  c: Context<AppEnv>,
  rateLimit?: CallerRateLimit,
  exposure: string | null = null,
  remember = false,
): Promise<{ principal: UserPrincipal; exposure: CallerExposure | undefined; scopes: string[] | null }> {
  const deps = c.get('deps');
  const claims = await verifyAccessToken(deps, bearer(c.req.header('authorization')));
  const now = deps.clock.now();
  const sub = claims.sub;
  const sid = claims.sid ?? null;
  const sti = claims.sti ?? null;
  const at = now.toISOString();
  const windowStart = rateWindow(now);
  // Literals, not a spread of the caller's placeholders (services/lease-insert.ts leaseStatementParams).
  const [counted] = rateLimit
    ? await countedCallerQuery(deps.db).execute({ sub, sid, sti, now: at, key: rateLimit.key(sub), windowStart: windowStart.toISOString(), exposure })
    : [];
  const [row] = rateLimit ? [counted] : await callerQuery(deps.db).execute({ sub, sid, sti, now: at });
  const user = row?.user;
  if (!user || user.disabled) throw callerGone();
  if (!row.sessionLive) throw new AppError('TOKEN_INVALID', 'this login session ended (logged out or revoked); log in again');
  if (!row.serviceLive) throw new AppError('TOKEN_INVALID', 'the service token behind this access token was revoked or expired');
  const read: CallerExposure | undefined =
    exposure === null || !counted ? undefined : { name: exposure, exp: counted.exposure ?? undefined, current: counted.exposureNode ?? null };
  const scopes = claims.sti ? (row.scopes ?? []) : null;
  const tokenExpiresAt = claims.sti ? (row.tokenExpiresAt ?? null) : null;
  if (remember) rememberLeaseCaller(deps.db, claims, { user: { id: user.id, name: user.name, role: user.role }, scopes, tokenExpiresAt }, read);
  if (rateLimit) assertUnderLimit(counted?.count ?? undefined, rateLimit.limit(deps.settings), windowStart, now);
  const principal: UserPrincipal = {
    kind: 'user',
    userId: user.id,
    name: user.name,
    role: user.role,
    scopes: claims.sti ? parseScopes(row.scopes ?? []) : null,
    serviceTokenId: claims.sti ?? null,
    serviceTokenExpiresAt: tokenExpiresAt,
    sessionId: claims.sid ?? null,
    sessionEndsAt: sessionEnd(claims),
  };
  return { principal, exposure: read, scopes };
}

/**
 * Lease issuance on the state this replica saw last (services/lease-last-seen.ts): the caller of
 * the verified access token and the exposure the body names, when the body may be an open lease
 * request (`mayBeOpenOnExposure`) and this replica has seen both; undefined otherwise (the usual
 * path then). The body is not validated here: the route's validator does that next, once per
 * request (it was done twice, ~2% of the CPU per lease, issue 11), the route takes the one-statement
 * path only on the validated request (`lastSeenRequest`), and a body that fails validation gets
 * the usual path's caller lookup first (`leaseCallerBeforeValidation`), so its answers and their
 * order are the usual path's. Nothing is read from the database here, and nothing counted: the
 * lease's one statement does both, or the usual path does.
 */
async function leaseOnLastSeen(c: Context<AppEnv>): Promise<LastSeenCaller | undefined> {
  const deps = c.get('deps');
  const body: unknown = await c.req.json().catch(() => undefined);
  if (!mayBeOpenOnExposure(body)) return undefined;
  const claims = await verifyAccessToken(deps, bearer(c.req.header('authorization')));
  return lastSeenCaller(deps.db, claims, body.exposure);
}

/**
 * Before a validation error is answered: a lease request whose caller lookup the guard deferred
 * (GuardOptions.lastSeenLease) gets it now, counted, so that a dead token, a disabled user or
 * the rate limit answer first, as for any other request.
 */
export async function leaseCallerBeforeValidation(c: Context<AppEnv>): Promise<void> {
  await c.get('leaseLastSeen')?.usualPath();
}

const nodeQuery = preparedPerDb((db) =>
  db.select().from(nodes).where(eq(nodes.tokenHash, sql.placeholder('tokenHash'))).limit(1).prepare('node_caller'),
);

/** Relay nodes authenticate with the node token they got at enrollment. */
async function authenticateNode(c: Context<AppEnv>): Promise<NodePrincipal> {
  const deps = c.get('deps');
  const token = bearer(c.req.header('authorization'));
  // A stranger's made-up credential costs a lookup; a source that misses too often is refused before it.
  const node = await throttledLookup(deps.credentialMisses, clientSource(c), deps.clock.now(), isTokenInvalid, async () => {
    const [row] = await nodeQuery(deps.db).execute({ tokenHash: hashSecret(token) });
    if (!row) throw new AppError('TOKEN_INVALID', 'unknown node credential; enroll the node again');
    return row;
  });
  c.set('node', node);
  return { kind: 'node', nodeId: node.id, name: node.name };
}

/** What a guard does besides authenticating and asking the policy. */
export interface GuardOptions {
  /** A per-user rate limit (user credentials only): counted in the caller lookup, refused over the limit. */
  rateLimit?: CallerRateLimit;
  /**
   * The exposure the request names (needs `rateLimit`), read in the same statement as the
   * caller, once the caller is found live, and handed to the route as `callerExposure`. Given
   * the request before its validation: a name that is not a valid exposure name is not read.
   */
  exposureOf?: (c: Context<AppEnv>) => Promise<string | null | undefined>;
  /**
   * Lease issuance (needs `rateLimit` and `exposureOf`): a request whose caller and exposure this
   * replica saw at an earlier lease skips the caller lookup, and the route tries the lease's one
   * statement on that state (`leaseLastSeen`) when its validated request still qualifies; it
   * calls `usualPath` when that did not issue, and the app's validation hook calls it before it
   * answers a body that fails validation (`leaseCallerBeforeValidation`).
   * Other requests are looked up as usual, and what was read is remembered. Either way the route
   * gets the caller as read (`callerAsRead`, for the lease's locked insert: services/lease-insert.ts)
   * and `leaseCallerAgain`, an uncounted lookup for deciding again when that insert found a change.
   */
  lastSeenLease?: boolean;
}

/** A lease request the guard let through on the state last seen (GuardOptions.lastSeenLease). */
export interface DeferredLeaseCaller extends LastSeenCaller {
  /** The usual caller lookup (counted), which sets the principal and `callerExposure` as the guard does. */
  usualPath(): Promise<void>;
}

/**
 * The route's door: authenticates the credential the action needs (none, a user's access token,
 * a node credential), records the principal, and lets the policy decide right away when the
 * route's one action needs no resource. Actions on a resource are decided by the service once it has loaded
 * the resource; the principal travels there. `rateLimit` (user credentials only): the caller's
 * attempt is counted once authenticated, before any policy decision, and refused over the limit.
 */
export function guard(actions: readonly Action[], options: GuardOptions = {}): MiddlewareHandler<AppEnv> {
  const { rateLimit, exposureOf, lastSeenLease: onLastSeen } = options;
  const authn = authnOf(actions[0]!);
  if (actions.some((a) => authnOf(a) !== authn)) throw new Error(`guard(${actions.join(', ')}): actions need different credentials`);
  // One action without a resource is decided here; the others by the service (which knows which applies).
  const gate = actions.length === 1 && !needsResource(actions[0]!) ? (actions[0] as GateAction) : null;
  if (rateLimit && authn !== 'user') throw new Error(`guard(${actions.join(', ')}): a rate limit per user needs a user's credential`);
  if (exposureOf && !rateLimit) throw new Error(`guard(${actions.join(', ')}): exposureOf is read with the rate limit's count`);
  if (onLastSeen && !exposureOf) throw new Error(`guard(${actions.join(', ')}): lastSeenLease needs exposureOf`);
  const usual = async (c: Context<AppEnv>, logger: Logger): Promise<void> => {
    const name = exposureOf ? await exposureOf(c) : undefined;
    const { principal: p, exposure, scopes } = await authenticateUser(c, rateLimit, typeof name === 'string' && EXPOSURE_NAME_RE.test(name) ? name : null, onLastSeen);
    c.set('principal', p);
    c.set('user', p);
    if (onLastSeen) c.set('callerAsRead', callerAsRead(p, scopes));
    if (exposure) c.set('callerExposure', exposure);
    c.set('logger', logger.child({ user: p.name }));
  };
  const again = async (c: Context<AppEnv>): Promise<void> => {
    const { principal: p, scopes } = await authenticateUser(c);
    c.set('principal', p);
    c.set('user', p);
    c.set('callerAsRead', callerAsRead(p, scopes));
  };
  return async (c, next) => {
    if (authn === 'user') {
      const logger = c.get('logger');
      const seen = onLastSeen ? await leaseOnLastSeen(c) : undefined;
      if (seen) {
        c.set('principal', seen.principal);
        c.set('user', seen.principal);
        c.set('logger', logger.child({ user: seen.principal.name }));
        c.set('callerAsRead', callerAsRead(seen.principal, seen.scopes));
        // Named fields, not a spread of `seen` (services/lease-insert.ts leaseStatementParams).
        c.set('leaseLastSeen', { claims: seen.claims, principal: seen.principal, scopes: seen.scopes, exposure: seen.exposure, usualPath: () => usual(c, logger) });
      } else await usual(c, logger);
      if (onLastSeen) c.set('leaseCallerAgain', () => again(c));
    } else if (authn === 'node') {
      const p = await authenticateNode(c);
      c.set('principal', p);
      c.set('logger', c.get('logger').child({ node: p.name }));
    } else {
      c.set('principal', ANONYMOUS);
    }
    if (gate) assertAllowed(c.get('principal'), gate);
    await next();
  };
}
