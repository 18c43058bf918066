import type { Context, MiddlewareHandler } from 'hono';
import { eq, sql } from 'drizzle-orm';
import { nodes, refreshTokens, serviceTokens, users } from '../db/schema/index.js';
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

/**
 * The caller of an access token in one statement: the user, whether the login session (for a
 * session's token) still stands, and the service token (for a service token's), so that a
 * logout, a refresh-token reuse or a revoked service token ends its access tokens at once, on
 * every replica. Prepared: it runs on every API call.
 */
const callerQuery = preparedPerDb((db) =>
  db
    .select({
      user: users,
      sessionLive: sql<boolean>`(${sql.placeholder('sid')}::text is null or exists (select 1 from ${refreshTokens} where ${refreshTokens.familyId} = ${sql.placeholder('sid')} and ${refreshTokens.revokedAt} is null))`,
      service: serviceTokens,
    })
    .from(users)
    .leftJoin(serviceTokens, eq(serviceTokens.id, sql.placeholder('sti')))
    .where(eq(users.id, sql.placeholder('sub')))
    .limit(1)
    .prepare('caller'),
);

/**
 * Who sends this access token: an enabled user, and the live service token it came from, if any.
 * The scopes are the service token's as stored now, not as minted, so a change applies at once.
 */
async function authenticateUser(c: Context<AppEnv>): Promise<UserPrincipal> {
  const deps = c.get('deps');
  const claims = await verifyAccessToken(deps, bearer(c.req.header('authorization')));
  const [row] = await callerQuery(deps.db).execute({ sub: claims.sub, sid: claims.sid ?? null, sti: claims.sti ?? null });
  const user = row?.user;
  if (!user || user.disabled) throw new AppError('TOKEN_INVALID', 'the user of this token no longer exists or is disabled');
  if (!row.sessionLive) throw new AppError('TOKEN_INVALID', 'this login session ended (logged out or revoked); log in again');
  let scopes: UserPrincipal['scopes'] = null;
  if (claims.sti) {
    const st = row.service;
    const now = deps.clock.now();
    if (!st || st.userId !== user.id || st.revokedAt || (st.expiresAt && st.expiresAt <= now)) {
      throw new AppError('TOKEN_INVALID', 'the service token behind this access token was revoked or expired');
    }
    scopes = parseScopes(st.scopes);
  }
  return {
    kind: 'user',
    userId: user.id,
    name: user.name,
    role: user.role,
    scopes,
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
 * the resource; the principal travels there.
 */
export function guard(actions: readonly Action[]): MiddlewareHandler<AppEnv> {
  const authn = authnOf(actions[0]!);
  if (actions.some((a) => authnOf(a) !== authn)) throw new Error(`guard(${actions.join(', ')}): actions need different credentials`);
  // One action without a resource is decided here; the others by the service (which knows which applies).
  const gate = actions.length === 1 && !needsResource(actions[0]!) ? (actions[0] as GateAction) : null;
  return async (c, next) => {
    if (authn === 'user') {
      const p = await authenticateUser(c);
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
