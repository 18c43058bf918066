import type { Context, MiddlewareHandler } from 'hono';
import { eq, sql } from 'drizzle-orm';
import { nodes, rateLimits, refreshTokens, serviceTokens, users } from '../db/schema/index.js';
import type { Db } from '../db/client.js';
import type { AppSettings } from '../deps.js';
import { assertUnderLimit, COUNT_ON_CONFLICT, rateWindow } from '../services/rate-limit.js';
import { verifyAccessToken } from '../auth/access-tokens.js';
import { AppError } from '../lib/errors.js';
import { hashSecret } from '../lib/ids.js';
import { preparedPerDb } from '../db/prepared.js';
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

function bearer(header: string | undefined): string {
  if (!header) throw new AppError('UNAUTHENTICATED', 'send an access token: Authorization: Bearer <token> (see `tunnel login`)');
  const m = /^Bearer ([A-Za-z0-9._~+/=-]{1,4096})$/.exec(header);
  if (!m) throw new AppError('UNAUTHENTICATED', 'Authorization header must be "Bearer <token>"');
  return m[1]!;
}

const p = sql.placeholder;

/** The login session behind a session's access token still stands (true for other tokens). */
const sessionLive = () =>
  sql<boolean>`(${p('sid')}::text is null or exists (select 1 from ${refreshTokens} where ${refreshTokens.familyId} = ${p('sid')} and ${refreshTokens.revokedAt} is null))`;

/**
 * The service token behind a service token's access token is the user's, not revoked and not
 * expired at `now` (true for other tokens). Decided here only, for the answer and for counting.
 */
const serviceLive = () =>
  sql<boolean>`(${p('sti')}::text is null or coalesce(${serviceTokens.userId} = ${users.id} and ${serviceTokens.revokedAt} is null and (${serviceTokens.expiresAt} is null or ${serviceTokens.expiresAt} > ${p('now')}::timestamptz), false))`;

/**
 * The caller of an access token in one statement: the user, whether the login session (for a
 * session's token) and the service token (for a service token's) are still live, so that a
 * logout, a refresh-token reuse or a revoked service token ends its access tokens at once, on
 * every replica. With `counted`, the same statement also counts the attempt against a rate
 * limit when, and only when, the caller is live (what the route would have counted after
 * authenticating: one round trip less). Prepared: one runs on every API call.
 */
function callerStatement(db: Db, counted: boolean) {
  const fields = {
    user: users,
    sessionLive: sessionLive(),
    serviceLive: serviceLive(),
    scopes: serviceTokens.scopes,
  };
  const join = eq(serviceTokens.id, p('sti'));
  const who = eq(users.id, p('sub'));
  if (!counted) {
    return db.select({ ...fields, count: sql<number | null>`null::integer` }).from(users).leftJoin(serviceTokens, join).where(who).limit(1).prepare('caller');
  }
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
  return db
    .with(count)
    .select({ ...fields, count: sql<number | null>`(select "count" from "counted")` })
    .from(users)
    .leftJoin(serviceTokens, join)
    .where(who)
    .limit(1)
    .prepare('caller_counted');
}
const callerQuery = preparedPerDb((db) => callerStatement(db, false));
const countedCallerQuery = preparedPerDb((db) => callerStatement(db, true));

/** A per-user rate limit the guard counts in its caller lookup (lease issuance: http/lease-rate-limit.ts). */
export interface CallerRateLimit {
  key(userId: string): string;
  limit(settings: AppSettings): number;
}

/**
 * Who sends this access token: an enabled user, and the live service token it came from, if any.
 * The scopes are the service token's as stored now, not as minted, so a change applies at once.
 * With `rateLimit`, a live caller's attempt is counted, and refused (RATE_LIMITED) over the limit.
 */
async function authenticateUser(c: Context<AppEnv>, rateLimit?: CallerRateLimit): Promise<UserPrincipal> {
  const deps = c.get('deps');
  const claims = await verifyAccessToken(deps, bearer(c.req.header('authorization')));
  const now = deps.clock.now();
  const params = { sub: claims.sub, sid: claims.sid ?? null, sti: claims.sti ?? null, now: now.toISOString() };
  const windowStart = rateWindow(now);
  const [row] = rateLimit
    ? await countedCallerQuery(deps.db).execute({ ...params, key: rateLimit.key(claims.sub), windowStart: windowStart.toISOString() })
    : await callerQuery(deps.db).execute(params);
  const user = row?.user;
  if (!user || user.disabled) throw new AppError('TOKEN_INVALID', 'the user of this token no longer exists or is disabled');
  if (!row.sessionLive) throw new AppError('TOKEN_INVALID', 'this login session ended (logged out or revoked); log in again');
  if (!row.serviceLive) throw new AppError('TOKEN_INVALID', 'the service token behind this access token was revoked or expired');
  if (rateLimit) assertUnderLimit(row.count ?? undefined, rateLimit.limit(deps.settings), windowStart, now);
  return {
    kind: 'user',
    userId: user.id,
    name: user.name,
    role: user.role,
    scopes: claims.sti ? parseScopes(row.scopes ?? []) : null,
    serviceTokenId: claims.sti ?? null,
    sessionId: claims.sid ?? null,
  };
}

const nodeQuery = preparedPerDb((db) =>
  db.select().from(nodes).where(eq(nodes.tokenHash, sql.placeholder('tokenHash'))).limit(1).prepare('node_caller'),
);

/** Relay nodes authenticate with the node token they got at enrollment. */
async function authenticateNode(c: Context<AppEnv>): Promise<NodePrincipal> {
  const deps = c.get('deps');
  const token = bearer(c.req.header('authorization'));
  const [node] = await nodeQuery(deps.db).execute({ tokenHash: hashSecret(token) });
  if (!node) throw new AppError('TOKEN_INVALID', 'unknown node credential; enroll the node again');
  c.set('node', node);
  return { kind: 'node', nodeId: node.id, name: node.name };
}

/**
 * The route's door: authenticates the credential the action needs (none, a user's access token,
 * a node credential), records the principal, and lets the policy decide right away when the
 * route's one action needs no resource. Actions on a resource are decided by the service once it has loaded
 * the resource; the principal travels there. `rateLimit` (user credentials only): the caller's
 * attempt is counted once authenticated, before any policy decision, and refused over the limit.
 */
export function guard(actions: readonly Action[], rateLimit?: CallerRateLimit): MiddlewareHandler<AppEnv> {
  const authn = authnOf(actions[0]!);
  if (actions.some((a) => authnOf(a) !== authn)) throw new Error(`guard(${actions.join(', ')}): actions need different credentials`);
  // One action without a resource is decided here; the others by the service (which knows which applies).
  const gate = actions.length === 1 && !needsResource(actions[0]!) ? (actions[0] as GateAction) : null;
  if (rateLimit && authn !== 'user') throw new Error(`guard(${actions.join(', ')}): a rate limit per user needs a user's credential`);
  return async (c, next) => {
    if (authn === 'user') {
      const p = await authenticateUser(c, rateLimit);
      c.set('principal', p);
      c.set('user', p);
      c.set('logger', c.get('logger').child({ user: p.name }));
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
