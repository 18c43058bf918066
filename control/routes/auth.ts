import { createRoute, type z } from '@hono/zod-openapi';
import { and, eq } from 'drizzle-orm';
import {
  DeviceAuthorizationRequestSchema,
  DeviceAuthorizationResponseSchema,
  GRANT_DEVICE_CODE,
  GRANT_SERVICE_TOKEN,
  LogoutRequestSchema,
  MeSchema,
  SetupRequestSchema,
  TokenRequestSchema,
  TokenResponseSchema,
  type TokenRequest,
  UserSchema,
} from '../../protocol/api-types.js';
import { deviceCodes, refreshTokens, serviceTokens, users } from '../db/schema/index.js';
import type { App } from '../http/env.js';
import { clientAddress, clientSource } from '../http/client-address.js';
import { throttledLookup } from '../http/miss-throttle.js';
import { AppError } from '../lib/errors.js';
import { hashSecret } from '../lib/ids.js';
import { audit } from '../services/audit.js';
import { lockLiveOwner } from '../services/owner-lock.js';
import { rateLimit } from '../services/rate-limit.js';
import { mintAccessToken } from '../auth/access-tokens.js';
import { endSession, rotateRefreshToken, startSession } from '../auth/sessions.js';
import { revoking } from '../services/lease-revocation.js';
import { consumeSetupCode, setupCodeUsable } from '../auth/setup-code.js';
import { pollDeviceCode } from '../auth/device-codes.js';
import { checkPassword } from '../auth/password-login.js';
import { createUser, userView } from '../services/users.js';
import { formatScope } from '../services/authz.js';
import { bearerSecurity, errorResponses, guarded, json, jsonBody, oauthErrorResponses, oauthRequestBody, registerRequestComponent } from './common.js';
import { oauthBody } from '../http/oauth.js';

const isInvalidGrant = (code: string): boolean => code === 'INVALID_GRANT';

const KNOWN_GRANTS = new Set<string>([GRANT_DEVICE_CODE, 'refresh_token', 'password', GRANT_SERVICE_TOKEN]);

/** RFC 6749 §5.2: a grant type we do not know is unsupported_grant_type, not a schema error. */
function rejectUnknownGrant(raw: Record<string, unknown>): void {
  if (typeof raw.grant_type === 'string' && !KNOWN_GRANTS.has(raw.grant_type)) {
    throw new AppError('UNSUPPORTED_GRANT_TYPE', 'grant_type is not supported', { oauthError: 'unsupported_grant_type' });
  }
}

export function registerAuth(app: App): void {
  registerRequestComponent(app, 'DeviceAuthorizationRequest', DeviceAuthorizationRequestSchema);
  registerRequestComponent(app, 'TokenRequest', TokenRequestSchema);

  app.openapi(
    createRoute(guarded('auth.device.start', {
      method: 'post',
      path: '/v1/auth/device',
      tags: ['auth'],
      summary: 'Start a device authorization (RFC 8628 §3.1; form or JSON)',
      extraMiddleware: [oauthBody(DeviceAuthorizationRequestSchema)],
      request: { body: oauthRequestBody('DeviceAuthorizationRequest') },
      responses: { 200: json(DeviceAuthorizationResponseSchema), ...oauthErrorResponses },
    })),
    async (c) => {
      const deps = c.get('deps');
      await rateLimit(deps.db, deps.clock.now(), `device:${clientSource(c)}`, deps.settings.authRateLimit);
      const body = c.get('oauthRequest') as z.infer<typeof DeviceAuthorizationRequestSchema>;
      const now = deps.clock.now();
      const deviceCode = deps.ids.secret('tnl_dc');
      const userCode = deps.ids.userCode();
      await deps.db.insert(deviceCodes).values({
        id: deps.ids.id('dev'),
        deviceCodeHash: hashSecret(deviceCode),
        userCode,
        clientName: body.client_name ?? null,
        requesterAddress: clientAddress(c),
        status: 'pending',
        intervalSeconds: deps.settings.devicePollInterval,
        createdAt: now,
        expiresAt: new Date(now.getTime() + deps.settings.deviceCodeTtl * 1000),
      });
      const uri = `${deps.settings.issuer}/device`;
      c.header('cache-control', 'no-store');
      return c.json(
        {
          device_code: deviceCode,
          user_code: userCode,
          verification_uri: uri,
          verification_uri_complete: `${uri}?user_code=${encodeURIComponent(userCode)}`,
          expires_in: deps.settings.deviceCodeTtl,
          interval: deps.settings.devicePollInterval,
        },
        200,
      );
    },
  );

  app.openapi(
    createRoute(guarded('auth.token', {
      method: 'post',
      path: '/v1/auth/token',
      tags: ['auth'],
      summary: 'Exchange a device code, refresh token, password or service token for tokens',
      description:
        'Errors carry the RFC 6749/8628 `error` member (authorization_pending, slow_down, access_denied, expired_token, invalid_grant, unsupported_grant_type).',
      extraMiddleware: [oauthBody(TokenRequestSchema, rejectUnknownGrant)],
      request: { body: oauthRequestBody('TokenRequest') },
      responses: { 200: json(TokenResponseSchema), ...oauthErrorResponses },
    })),
    async (c) => {
      const deps = c.get('deps');
      const body = c.get('oauthRequest') as TokenRequest;
      const now = deps.clock.now();
      // RFC 6749 §5.1
      c.header('cache-control', 'no-store');
      c.header('pragma', 'no-cache');
      switch (body.grant_type) {
        case GRANT_DEVICE_CODE: {
          // Unknown device codes and refresh tokens cost a lookup each: counted per source (http/miss-throttle.ts).
          const user = await throttledLookup(deps.credentialMisses, clientSource(c), now, isInvalidGrant, () => pollDeviceCode(deps, body.device_code));
          const denied = () => new AppError('ACCESS_DENIED', 'the approving user is disabled', { oauthError: 'access_denied' });
          return c.json(await startSession(deps, user, 'device', denied), 200);
        }
        case 'refresh_token':
          return c.json(await throttledLookup(deps.credentialMisses, clientSource(c), now, isInvalidGrant, () => rotateRefreshToken(deps, body.refresh_token)), 200);
        case 'password': {
          const user = await checkPassword(deps, {
            source: clientSource(c),
            username: body.username,
            password: body.password,
            method: 'password',
          });
          const wrong = () => new AppError('INVALID_CREDENTIALS', 'wrong user name or password', { oauthError: 'invalid_grant' });
          if (!user) throw wrong();
          return c.json(await startSession(deps, user, 'password', wrong, body.client_id), 200);
        }
        case GRANT_SERVICE_TOKEN: {
          await rateLimit(deps.db, now, `service:${clientSource(c)}`, deps.settings.authRateLimit * 4);
          const [st] = await deps.db
            .select()
            .from(serviceTokens)
            .where(eq(serviceTokens.tokenHash, hashSecret(body.service_token)))
            .limit(1);
          const [user] = st ? await deps.db.select().from(users).where(eq(users.id, st.userId)).limit(1) : [];
          if (!st || !user || user.disabled || st.revokedAt || (st.expiresAt && st.expiresAt <= now)) {
            throw new AppError('INVALID_GRANT', 'service token is not valid (revoked, expired or unknown)', {
              oauthError: 'invalid_grant',
            });
          }
          const at = await mintAccessToken(deps, user, { id: st.id, scopes: st.scopes });
          return c.json(
            { access_token: at.token, token_type: 'Bearer' as const, expires_in: at.expiresIn, scope: st.scopes.join(' ') },
            200,
          );
        }
      }
    },
  );

  app.openapi(
    createRoute(guarded('self.read', {
      method: 'get',
      path: '/v1/me',
      tags: ['auth'],
      summary: 'Who the access token belongs to',
      security: bearerSecurity,
      responses: { 200: json(MeSchema), ...errorResponses },
    })),
    (c) => {
      const p = c.get('user');
      return c.json({ id: p.userId, name: p.name, role: p.role, ...(p.scopes ? { scopes: p.scopes.map(formatScope) } : {}) }, 200);
    },
  );

  app.openapi(
    createRoute(guarded('self.logout', {
      method: 'post',
      path: '/v1/auth/logout',
      tags: ['auth'],
      summary: 'End a login session (revokes the refresh token family and the leases issued through it)',
      description:
        'Ends the session the access token belongs to, and the one whose `refresh_token` is given if it is the same ' +
        "user's (holding a refresh token is the authority to revoke it, RFC 7009; another user's is ignored). A service " +
        'token has no login session and cannot end one: 403 SCOPE_DENIED.',
      security: bearerSecurity,
      request: { body: { required: false, content: { 'application/json': { schema: LogoutRequestSchema } } } },
      responses: { 204: { description: 'Logged out' }, ...errorResponses },
    })),
    async (c) => {
      const deps = c.get('deps');
      const p = c.get('user');
      const body = (await c.req.json().catch(() => ({}))) as { refresh_token?: unknown };
      const parsed = LogoutRequestSchema.safeParse(body ?? {});
      const now = deps.clock.now();
      // One transaction: the session ends with its leases, or nothing changes.
      await revoking(deps, async (tx, revoke) => {
        // The user's row first, as every other write to its sessions (a rotation, a disable, a
        // login): a disable revokes all its refresh rows, this only a family's, and without the
        // row the two locked the same rows in different orders and could deadlock.
        await lockLiveOwner(tx, { id: p.userId });
        // The access token names its session: logging out ends it even without the refresh token.
        if (p.sessionId) await endSession(tx, revoke, p.sessionId, now, p.userId, 'logout');
        if (parsed.success && parsed.data.refresh_token) {
          const [row] = await tx
            .select()
            .from(refreshTokens)
            .where(and(eq(refreshTokens.tokenHash, hashSecret(parsed.data.refresh_token)), eq(refreshTokens.userId, p.userId)))
            .limit(1);
          if (row && row.familyId !== p.sessionId) await endSession(tx, revoke, row.familyId, now, p.userId, 'logout');
        }
        await audit(tx, now, { type: 'auth.logout', actor: p.userId });
      });
      return c.body(null, 204);
    },
  );

  app.openapi(
    createRoute(guarded('setup.admin', {
      method: 'post',
      path: '/v1/setup',
      tags: ['auth'],
      summary: 'Create the first admin with the one-time setup code printed at first start',
      request: { body: jsonBody(SetupRequestSchema) },
      responses: { 201: json(UserSchema, 'Admin created'), ...errorResponses },
    })),
    async (c) => {
      const deps = c.get('deps');
      const now = deps.clock.now();
      await rateLimit(deps.db, now, `setup:${clientSource(c)}`, deps.settings.authRateLimit);
      const body = c.req.valid('json');
      if (!(await setupCodeUsable(deps.db, body.setup_code, now))) throw new AppError('INVALID_CREDENTIALS', 'setup code is wrong or was already used');
      // Hashed before the transaction, so it holds its locks only for the inserts.
      const passwordHash = await deps.passwords.hash(body.password);
      const user = await deps.db.transaction(async (tx) => {
        if (!(await consumeSetupCode(tx, body.setup_code, now))) {
          throw new AppError('INVALID_CREDENTIALS', 'setup code is wrong or was already used');
        }
        return createUser(deps, tx, { name: body.name, role: 'admin', passwordHash }, { actor: null, event: 'setup.admin_created' });
      });
      return c.json(userView(user), 201);
    },
  );
}
